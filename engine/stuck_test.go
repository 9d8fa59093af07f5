package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// stalledMark returns the run.stalled event of a run, or nil.
func stalledMark(t *testing.T, db *store.DB, runID string) *engine.Event {
	t.Helper()
	barrier(t, db) // what the checks recorded is durable
	if evs := filter(history(t, db, runID), engine.EventRunStalled, ""); len(evs) > 0 {
		return &evs[0]
	}
	return nil
}

// lastEventAt is when a run's last event was recorded.
func lastEventAt(t *testing.T, db *store.DB, runID string) time.Time {
	t.Helper()
	evs := history(t, db, runID)
	return evs[len(evs)-1].At
}

// TestStuck_MarkedWithinAQuarterOfStuckAfter: the check runs every
// StuckAfter/4 (at most a minute), so a run idle for StuckAfter is marked
// at most a quarter of StuckAfter later, and never before. The engine's
// clock is driven one check interval at a time, in the worst phase: a
// check falls just before the run has been idle for StuckAfter.
func TestStuck_MarkedWithinAQuarterOfStuckAfter(t *testing.T) {
	t.Parallel()
	for _, after := range []time.Duration{2 * time.Minute, time.Hour} {
		t.Run(after.String(), func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			db := openTestStore(t)
			clock := newClock()
			e := startEngineWith(t, db, engine.Config{ExternalTypes: true, NowFunc: clock.Now, StuckAfter: after}, nil)
			every := e.StuckCheckEvery()
			is.True(every <= after/4)     // a quarter of STUCK_AFTER
			is.True(every <= time.Minute) // at most a minute
			register(t, e, `{"name":"stuck","tasks":[{"id":"a","type":"nobody"}]}`)
			run := start(t, e, "stuck")
			waitFor(t, "a ready", taskIn(t, db, run.ID, "a", engine.TaskReady))
			idleSince := lastEventAt(t, db, run.ID)

			// The checks fall at idleSince + phase + k*every; one of them
			// 1ms short of STUCK_AFTER.
			at := idleSince.Add((after - time.Millisecond) % every)
			var mark *engine.Event
			for ; mark == nil && at.Sub(idleSince) <= 2*after; at = at.Add(every) {
				clock.Add(at.Sub(clock.Now()))
				e.CheckStuck()
				mark = stalledMark(t, db, run.ID)
			}
			is.True(mark != nil) // the run was marked
			idle := mark.At.Sub(idleSince)
			t.Logf("STUCK_AFTER %v, checked every %v: marked after %v idle", after, every, idle)
			is.True(idle >= after)         // not before STUCK_AFTER
			is.True(idle <= after+after/4) // and no more than a quarter of it late
		})
	}
}

// TestStuck_LoopMarksInTime: left to its own ticker, the engine marks a
// run idle for STUCK_AFTER within STUCK_AFTER/4 of it (4s: checked every
// second), plus the slack of a loaded machine.
func TestStuck_LoopMarksInTime(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	const after, slack = 4 * time.Second, 500 * time.Millisecond
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, StuckAfter: after}, nil)
	register(t, e, `{"name":"stuck","tasks":[{"id":"a","type":"nobody"}]}`)
	run := start(t, e, "stuck")
	sub := e.Subscribe(tenant, run.ID, 0)
	defer sub.Close()
	waitFor(t, "a ready", taskIn(t, db, run.ID, "a", engine.TaskReady))
	idleSince := lastEventAt(t, db, run.ID)
	var mark *engine.Event
	for mark == nil {
		recv(t, sub.C(), "a commit of the run") // each commit, run.stalled among them
		mark = stalledMark(t, db, run.ID)
	}
	idle := mark.At.Sub(idleSince)
	t.Logf("STUCK_AFTER %v: marked after %v idle", after, idle)
	is.True(idle >= after)               // not before STUCK_AFTER
	is.True(idle <= after+after/4+slack) // by the next check
}

// TestStuck_AtMost100Reasons: a run.stalled event records the reasons of
// the first 100 waiting tasks, however many wait.
func TestStuck_AtMost100Reasons(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	clock := newClock()
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, NowFunc: clock.Now, StuckAfter: time.Minute,
		StuckCheckInterval: time.Hour}, nil)
	const tasks = 130
	defs := make([]string, tasks)
	for i := range defs {
		defs[i] = fmt.Sprintf(`{"id":"t%03d","type":"nobody"}`, i)
	}
	register(t, e, `{"name":"wide","tasks":[`+strings.Join(defs, ",")+`]}`)
	run := start(t, e, "wide")
	waitFor(t, "every task ready", taskIn(t, db, run.ID, fmt.Sprintf("t%03d", tasks-1), engine.TaskReady))
	x, err := e.Explain(context.Background(), tenant, run.ID)
	is.NoErr(err)
	is.Equal(len(x.Waiting), tasks) // explain gives every reason

	clock.Add(2 * time.Minute)
	is.Equal(e.CheckStuck(), 1) // the run is marked
	mark := stalledMark(t, db, run.ID)
	is.True(mark != nil)
	w := data(t, *mark).Waiting
	is.Equal(len(w), 100) // with 100 reasons, not 130
	for i, tw := range w {
		is.Equal(tw.Task, fmt.Sprintf("t%03d", i)) // the first 100, in the run's order
		is.Equal(tw.Reason, engine.WaitNoWorker)
	}
	verify(t, db, run.ID) // and the fold accepts it
}
