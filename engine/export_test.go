package engine

import (
	"context"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// PlanCacheStats returns how many compiled plans the engine keeps and their
// counted size, for the tests of the cache's bounds in package engine_test.
func (e *Engine) PlanCacheStats() (n int, bytes int64) { return e.plans.stats() }

// SetResolveHook makes every resolver call f before it renders a template.
// It must be called before Start.
func (e *Engine) SetResolveHook(f func()) { e.resolveHook = f }

// Timers returns how many timers are armed, and how many of them refer
// to a run the engine no longer holds (released or reloaded).
func (e *Engine) Timers() (total, stale int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.timers {
		if e.runs[t.rs.id] != t.rs {
			stale++
		}
	}
	return len(e.timers), stale
}

// RunTimers returns how many armed timers refer to runID.
func (e *Engine) RunTimers(runID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, t := range e.timers {
		if t.rs.id == runID {
			n++
		}
	}
	return n
}

// FireTimers fires every timer that is due by the engine's clock.
func (e *Engine) FireTimers() { e.fireTimers() }

// Waiters returns how many subscriptions (Wait callers among them) are
// open for runID.
func (e *Engine) Waiters(runID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs.byRun[runID])
}

// LaneWaiters returns how many poll channels wait in the lane of
// (tenant, typ), and how many of them are already closed.
func (e *Engine) LaneWaiters(tenant, typ string) (n, closed int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.lanes[laneKey(tenant, typ)]
	if l == nil {
		return 0, 0
	}
	for ch := range l.waiters {
		n++
		select {
		case <-ch:
			closed++
		default:
		}
	}
	return n, closed
}

// Lanes returns how many lanes the engine keeps.
func (e *Engine) Lanes() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.lanes)
}

// Active returns how many runs the engine holds in memory.
func (e *Engine) Active() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.runs)
}

// CommitRefusedDecision commits, for a run of plan the store does not hold,
// a decision part of which the engine refused, and reports whether done ran
// before the commit returned, and with what error.
func (e *Engine) CommitRefusedDecision(tenantID, runID string, plan *definition.Plan) (ranBefore bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rs := e.newRunState(tenantID, runID, NewRunView(plan))
	b := e.newBatch(rs, ActorEngine)
	b.failed = true
	ran := false
	b.commit(func(got error) { ran, err = true, got })
	return ran, err
}

// CheckStuck runs one stuck check and returns how many run.stalled it recorded.
func (e *Engine) CheckStuck() int { return e.checkStuck(context.Background()) }

// ValidateTriggerForTest exposes Trigger.validate to the fuzz test.
func ValidateTriggerForTest(t *Trigger) error { return t.validate() }

// StuckCheckEvery returns how often the engine checks for stuck runs.
func (e *Engine) StuckCheckEvery() time.Duration { return e.stuckEvery }

// CommitRefusedSupersede decides a start of the workflow of the run
// victimID, of the same concurrency key, that cancels victimID as
// cancel_in_progress does and part of which the engine refused, and
// commits both together as a start does. It returns done's error.
func (e *Engine) CommitRefusedSupersede(tenantID, victimID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	victim := e.runs[victimID]
	id := NewRunID(e.clock())
	rs := e.newRunState(tenantID, id, NewRunView(victim.plan))
	rs.view.Run.Workflow, rs.ckey = victim.view.Run.Workflow, victim.ckey
	b := e.newBatch(rs, ActorEngine)
	b.insert = true
	b.add(EventRunCreated, -1, 0, &EventData{Workflow: rs.view.Run.Workflow, Version: victim.view.Run.Version, ConcurrencyKey: rs.ckey})
	vb := e.supersede(victim, id)
	e.startRun(b, EventRunStarted)
	b.failed = true
	e.runs[id] = rs
	var err error
	commitTogether(func(got error) { err = got }, vb, b)
	return err
}

// AdmitOnce starts every waiting run a slot is free for, as the admission
// loop does when a slot frees.
func (e *Engine) AdmitOnce() { e.admitOnce(context.Background()) }

// KeyHolders returns the runs that hold a slot of a concurrency key.
func (e *Engine) KeyHolders(tenantID, workflow, key string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []string
	if ks := e.kslots[keyID{tenant: tenantID, workflow: workflow, key: key}]; ks != nil {
		for _, h := range ks.holders {
			ids = append(ids, h.id)
		}
	}
	return ids
}
