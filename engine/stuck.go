package engine

import (
	"context"
	"time"
)

// Stuck detection: a periodic check records run.stalled, once, for each
// running run that went StuckAfter without an event while nothing it waits
// for will move it (explain says so: the same logic as GET .../explain).
// The run's state does not change; the next event of the run clears the
// mark.

// stuckCheckInterval is how often runs are checked for being stuck when
// Config.StuckCheckInterval is not set: StuckAfter/4, so that a run is
// marked at most a quarter of StuckAfter late, but at most a minute (a
// long StuckAfter is still noticed within a minute of its end) and at
// least a second (a tiny one does not spin the loop).
func stuckCheckInterval(stuckAfter time.Duration) time.Duration {
	return min(max(stuckAfter/4, time.Second), time.Minute)
}

// stuckLoop checks for stuck runs every stuckEvery until Stop.
func (e *Engine) stuckLoop() {
	t := time.NewTicker(e.stuckEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			e.checkStuck(e.hctx)
		case <-e.quit:
			return
		}
	}
}

// stuckCandidate is a run that looked stalled, at its last seq then.
type stuckCandidate struct {
	rs  *runState
	seq int64
}

// checkStuck records run.stalled for every run that is stalled and not
// marked yet, updates the stalled gauge, and returns how many it recorded.
func (e *Engine) checkStuck(ctx context.Context) int {
	if e.stuckAfter <= 0 {
		return 0
	}
	e.mu.Lock()
	now := e.now()
	facts := map[string]*waitFacts{}
	var cands []stuckCandidate
	marked := 0
	for _, rs := range e.runs {
		r := &rs.view.Run
		switch {
		case rs.broken || r.State != RunRunning:
			continue
		case rs.stalledSeq == r.LastSeq:
			marked++
			continue
		case now.Sub(r.UpdatedAt) < e.stuckAfter || rs.view.Count(TaskRunning) > 0:
			continue
		}
		f := facts[rs.tenant]
		if f == nil {
			f = e.waitFactsLocked(rs.tenant)
			facts[rs.tenant] = f
		}
		if explain(rs.view, f).Stalled {
			cands = append(cands, stuckCandidate{rs, r.LastSeq})
		}
	}
	e.m.stalled = marked
	e.mu.Unlock()

	recorded := 0
	for _, c := range cands {
		// Marked before this process started? The mark is the run's last event.
		marked, err := e.lastIsStalled(ctx, c.rs.tenant, c.rs.id, c.seq)
		if err != nil {
			e.log.Warn("stuck check: read the last event", logRun, c.rs.id, logErr, err)
			continue
		}
		e.mu.Lock()
		if e.recordStalled(c, marked) {
			recorded++
		}
		e.mu.Unlock()
	}
	return recorded
}

// lastIsStalled reports whether a run's event seq, its last, is a
// run.stalled: the mark of a stalled run, which may predate this process.
func (e *Engine) lastIsStalled(ctx context.Context, tenantID, runID string, seq int64) (bool, error) {
	last, err := e.store.RunEvents(ctx, tenantID, runID, seq-1, 1)
	if err != nil {
		return false, err
	}
	return len(last) == 1 && last[0].Type == EventRunStalled, nil
}

// recordStalled marks a candidate stalled, recording run.stalled unless its
// last event is one (marked); it reports whether it recorded one. Called
// with Engine.mu held.
func (e *Engine) recordStalled(c stuckCandidate, marked bool) bool {
	rs := c.rs
	if e.stopping || rs.broken || e.runs[rs.id] != rs || rs.view.Run.LastSeq != c.seq {
		return false // it moved meanwhile
	}
	if marked {
		rs.stalledSeq = c.seq
		e.m.stalled++
		return false
	}
	x := explain(rs.view, e.waitFactsLocked(rs.tenant))
	if !x.Stalled {
		return false
	}
	waiting := x.Waiting[:min(len(x.Waiting), maxStalledReasons)]
	b := e.newBatch(rs, ActorEngine)
	if !b.add(EventRunStalled, -1, 0, &EventData{Waiting: waiting}) {
		b.commit(nil)
		return false
	}
	rs.stalledSeq = rs.view.Run.LastSeq
	e.m.stalled++
	e.m.set.GetOrCreateCounter(`orchestrator_runs_stalled_total`).Inc()
	e.log.Warn("run stalled: it cannot progress without outside help", logRun, rs.id, logTenant, rs.tenant,
		"idle", e.now().Sub(rs.view.Run.UpdatedAt).String())
	b.commit(nil)
	return true
}
