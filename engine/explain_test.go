package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// explainTask returns the explanation of one task, failing when it has none.
func explainTask(t *testing.T, e *engine.Engine, runID, task string) engine.TaskWait {
	t.Helper()
	x, err := e.Explain(context.Background(), tenant, runID)
	if err != nil {
		t.Fatalf("explain %s: %v", runID, err)
	}
	for _, w := range x.Waiting {
		if w.Task == task {
			return w
		}
	}
	t.Fatalf("explain %s: no reason for task %s in %+v", runID, task, x.Waiting)
	return engine.TaskWait{}
}

// waitReason waits until explain gives task the reason.
func waitReason(t *testing.T, e *engine.Engine, runID, task, reason string) engine.TaskWait {
	t.Helper()
	var w engine.TaskWait
	waitFor(t, "task "+task+" waiting for "+reason, func() bool {
		x, err := e.Explain(context.Background(), tenant, runID)
		if err != nil {
			t.Fatal(err)
		}
		for _, tw := range x.Waiting {
			if tw.Task == task && tw.Reason == reason {
				w = tw
				return true
			}
		}
		return false
	})
	return w
}

func TestExplain_Reasons(t *testing.T) {
	t.Parallel()
	db := openTestStore(t)
	hold := newHolder()
	failing := engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
		return nil, errors.New("flaky")
	})
	open := engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
		return nil, engine.Deferred(engine.ReasonCircuitOpen, time.Hour,
			&engine.TaskError{Code: engine.ReasonCircuitOpen, Message: "the circuit breaker of task type open is open"})
	})
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, Workers: 1},
		map[string]engine.Handler{"hold": hold, "fail": failing, "open": open})
	ctx := context.Background()

	t.Run("waiting on named dependencies, and no worker for an external type", func(t *testing.T) {
		is := is.New(t)
		register(t, e, `{"name":"chain","tasks":[{"id":"a","type":"ext"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
		run := start(t, e, "chain")
		w := waitReason(t, e, run.ID, "b", engine.WaitDependencies)
		is.Equal(w.State, engine.TaskPending)
		is.Equal(w.Dependencies, []engine.DependencyState{{Task: "a", State: engine.TaskReady}}) // which, in which state
		is.True(strings.Contains(w.Detail, "a (ready)"))                                         // in words too
		a := waitReason(t, e, run.ID, "a", engine.WaitNoWorker)
		is.True(strings.Contains(a.Detail, "no worker has polled type ext")) // and never did
		is.True(!a.Since.IsZero())                                           // ready since
	})

	t.Run("waiting for a worker that polls, with when it last did", func(t *testing.T) {
		is := is.New(t)
		register(t, e, `{"name":"two","tasks":[{"id":"a","type":"ext2"},{"id":"b","type":"ext2"}]}`)
		run := start(t, e, "two")
		waitFor(t, "both ready", taskIn(t, db, run.ID, "b", engine.TaskReady))
		lease, err := e.Poll(ctx, engine.PollRequest{TenantID: tenant, Types: []string{"ext2"}, WorkerID: "w1"})
		is.NoErr(err)
		is.True(lease != nil) // one leased
		other := "b"
		if lease.TaskID == "b" {
			other = "a"
		}
		w := explainTask(t, e, run.ID, other)
		is.Equal(w.Reason, engine.WaitWorker)                  // a worker polls this type
		is.True(strings.Contains(w.Detail, "one last polled")) // and when
	})

	t.Run("run paused, by whom", func(t *testing.T) {
		is := is.New(t)
		register(t, e, `{"name":"p","tasks":[{"id":"a","type":"ext3"}]}`)
		run := start(t, e, "p")
		waitFor(t, "a ready", taskIn(t, db, run.ID, "a", engine.TaskReady))
		_, err := e.Pause(ctx, tenant, run.ID, engine.Caller{Actor: "key:1:alice"})
		is.NoErr(err)
		x, err := e.Explain(ctx, tenant, run.ID)
		is.NoErr(err)
		is.Equal(x.Run.Reason, engine.WaitPaused)                          // the run waits: paused
		is.True(strings.Contains(x.Run.Detail, "key:1:alice"))             // by whom
		is.Equal(explainTask(t, e, run.ID, "a").Reason, engine.WaitPaused) // and so does its ready task
		is.True(!x.Stalled)                                                // paused is not stalled
	})

	t.Run("backoff until the next attempt", func(t *testing.T) {
		is := is.New(t)
		register(t, e, `{"name":"b","tasks":[{"id":"a","type":"fail","retry":{"max_attempts":3,"initial_interval":"1h"}}]}`)
		run := start(t, e, "b")
		w := waitReason(t, e, run.ID, "a", engine.WaitBackoff)
		is.True(w.Until.After(time.Now().Add(50 * time.Minute))) // until about an hour from now
		is.True(strings.Contains(w.Detail, "attempt 1 failed"))
	})

	t.Run("circuit breaker open until", func(t *testing.T) {
		is := is.New(t)
		register(t, e, `{"name":"c","tasks":[{"id":"a","type":"open"}]}`)
		run := start(t, e, "c")
		w := waitReason(t, e, run.ID, "a", engine.WaitCircuitOpen)
		is.True(w.Until.After(time.Now().Add(50 * time.Minute))) // held back for the breaker's time
		is.True(strings.Contains(w.Detail, "circuit breaker"))
	})

	t.Run("sleep until", func(t *testing.T) {
		is := is.New(t)
		register(t, e, `{"name":"s","tasks":[{"id":"z","type":"sleep","config":{"duration":"1h"}}]}`)
		run := start(t, e, "s")
		w := waitReason(t, e, run.ID, "z", engine.WaitSleep)
		is.Equal(w.State, engine.TaskRunning)
		is.True(w.Until.After(time.Now().Add(50 * time.Minute))) // wakes in about an hour
	})

	t.Run("max_parallel reached, then the worker pool busy", func(t *testing.T) {
		is := is.New(t)
		register(t, e, `{"name":"m","max_parallel":1,"tasks":[{"id":"a","type":"hold"},{"id":"b","type":"hold"}]}`)
		run := start(t, e, "m")
		first := recv(t, hold.started, "an attempt of m")
		other := map[string]string{"a": "b", "b": "a"}[first]
		w := waitReason(t, e, run.ID, other, engine.WaitMaxParallel)
		is.True(strings.Contains(w.Detail, "max_parallel (1)"))

		register(t, e, `{"name":"q","tasks":[{"id":"x","type":"hold"}]}`)
		queued := start(t, e, "q") // the one worker holds m's task
		waitReason(t, e, queued.ID, "x", engine.WaitPoolBusy)
		send(t, hold.release, "release m's first task")
		recv(t, hold.started, "the next attempt")
		send(t, hold.release, "release the next")
		recv(t, hold.started, "the last attempt")
		send(t, hold.release, "release the last")
		is.Equal(waitRun(t, db, queued.ID).State, engine.RunCompleted)
	})

	t.Run("a finished run waits for nothing", func(t *testing.T) {
		is := is.New(t)
		register(t, e, `{"name":"done","tasks":[{"id":"a","type":"noop"}]}`)
		run := start(t, e, "done")
		waitRun(t, db, run.ID)
		x, err := e.Explain(ctx, tenant, run.ID)
		is.NoErr(err)
		is.Equal(len(x.Waiting), 0) // nothing waits
		is.Equal(x.Run.State, engine.RunCompleted)
	})

	t.Run("an unknown run", func(t *testing.T) {
		_, err := e.Explain(ctx, tenant, "nope")
		is.New(t).True(errors.Is(err, engine.ErrNotFound))
	})
}

// metricLine returns the value of a metric in the set's Prometheus text.
func metricLine(set *metrics.Set, name string) string {
	var b strings.Builder
	set.WritePrometheus(&b)
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

func TestStuck_RecordsRunStalledOnceAndVerifies(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	clock := newClock()
	set := metrics.NewSet()
	cfg := engine.Config{ExternalTypes: true, NowFunc: clock.Now, StuckAfter: time.Minute, StuckCheckInterval: time.Hour, Metrics: set}
	e := startEngineWith(t, db, cfg, nil)
	register(t, e, `{"name":"stuck","tasks":[{"id":"a","type":"nobody"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
	register(t, e, `{"name":"polled","tasks":[{"id":"a","type":"polled"},{"id":"b","type":"polled"}]}`)
	register(t, e, `{"name":"sleepy","tasks":[{"id":"z","type":"sleep","config":{"duration":"1h"}}]}`)
	stuck := start(t, e, "stuck")
	polled := start(t, e, "polled")
	sleepy := start(t, e, "sleepy")
	paused := start(t, e, "stuck")
	ctx := context.Background()
	_, err := e.Pause(ctx, tenant, paused.ID, engine.Caller{})
	is.NoErr(err)
	waitFor(t, "the sleep started", taskIn(t, db, sleepy.ID, "z", engine.TaskRunning))
	waitFor(t, "polled ready", taskIn(t, db, polled.ID, "b", engine.TaskReady))

	is.Equal(e.CheckStuck(), 0) // nobody is stuck before STUCK_AFTER
	clock.Add(2 * time.Minute)
	// A worker polls "polled" now (and takes one of its tasks): its run waits for it.
	_, err = e.Poll(ctx, engine.PollRequest{TenantID: tenant, Types: []string{"polled"}, WorkerID: "w"})
	is.NoErr(err)
	barrier(t, db)
	is.Equal(e.CheckStuck(), 1) // the run waiting for a type nobody polls, alone
	barrier(t, db)

	evs := history(t, db, stuck.ID)
	last := evs[len(evs)-1]
	is.Equal(last.Type, engine.EventRunStalled) // recorded as a fact
	is.Equal(last.Actor, engine.ActorEngine)    // by the engine
	d := data(t, last)
	is.Equal(len(d.Waiting), 2)                        // with the reasons
	is.Equal(d.Waiting[0].Reason, engine.WaitNoWorker) // a: no worker
	is.Equal(d.Waiting[1].Reason, engine.WaitDependencies)
	is.Equal(len(filter(history(t, db, polled.ID), engine.EventRunStalled, "")), 0) // a polled type is not stuck
	is.Equal(len(filter(history(t, db, sleepy.ID), engine.EventRunStalled, "")), 0) // nor a sleep
	is.Equal(len(filter(history(t, db, paused.ID), engine.EventRunStalled, "")), 0) // nor a paused run
	run, err := db.GetRunRow(ctx, tenant, stuck.ID)
	is.NoErr(err)
	is.Equal(run.State, engine.RunRunning) // the state did not change
	verify(t, db, stuck.ID)                // and the fold still matches the projection

	x, err := e.Explain(ctx, tenant, stuck.ID)
	is.NoErr(err)
	is.True(x.Stalled) // explain says so too: the same logic
	clock.Add(2 * time.Minute)
	is.Equal(e.CheckStuck(), 0)                                 // once: not again while it stays stuck
	is.Equal(metricLine(set, "orchestrator_runs_stalled"), "1") // the gauge counts it
	is.Equal(metricLine(set, "orchestrator_runs_stalled_total"), "1")

	t.Run("a restarted engine does not record it again", func(t *testing.T) {
		is := is.New(t)
		stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		is.NoErr(e.Stop(stopCtx))
		e2 := startEngineWith(t, db, engine.Config{ExternalTypes: true, NowFunc: clock.Now, StuckAfter: time.Minute,
			StuckCheckInterval: time.Hour}, nil)
		clock.Add(2 * time.Minute)
		// The polled run may be marked now: its worker's lease expired, and
		// no worker polled its type since the restart. Whether its
		// task.failed came before or after the restart depends on when the
		// first engine's timer loop woke, so only the stuck run is counted.
		e2.CheckStuck()
		barrier(t, db)
		is.Equal(len(filter(history(t, db, stuck.ID), engine.EventRunStalled, "")), 1) // its last event is run.stalled already

		// The run moves again: the mark clears.
		_, err := e2.Poll(ctx, engine.PollRequest{TenantID: tenant, Types: []string{"nobody"}, WorkerID: "w"})
		is.NoErr(err)
		barrier(t, db)
		x, err := e2.Explain(ctx, tenant, stuck.ID)
		is.NoErr(err)
		is.True(!x.Stalled) // a task runs: not stalled
		verify(t, db, stuck.ID)
	})
}

func TestStuck_Off(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	clock := newClock()
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, NowFunc: clock.Now, StuckAfter: -1}, nil)
	register(t, e, `{"name":"stuck","tasks":[{"id":"a","type":"nobody"}]}`)
	run := start(t, e, "stuck")
	clock.Add(24 * time.Hour)
	is.Equal(e.CheckStuck(), 0) // STUCK_AFTER 0: never
	x, err := e.Explain(context.Background(), tenant, run.ID)
	is.NoErr(err)
	is.True(!x.Stalled)
}

// A run paused more than a page of times (MaxPage run.paused events) is
// explained as paused by whoever paused it last, not by the last pause of
// the first page.
func TestExplain_PausedByTheLastOfManyPauses(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, Workers: 1}, nil)
	ctx := context.Background()
	register(t, e, `{"name":"p","tasks":[{"id":"a","type":"ext"}]}`)
	run := start(t, e, "p")
	for range engine.MaxPage {
		_, err := e.Pause(ctx, tenant, run.ID, engine.Caller{Actor: "key:1:early"})
		is.NoErr(err)
		_, err = e.Resume(ctx, tenant, run.ID, engine.Caller{Actor: "key:1:early"})
		is.NoErr(err)
	}
	_, err := e.Pause(ctx, tenant, run.ID, engine.Caller{Actor: "key:2:late"})
	is.NoErr(err)
	x, err := e.Explain(ctx, tenant, run.ID)
	is.NoErr(err)
	is.Equal(x.Run.Reason, engine.WaitPaused)
	is.True(strings.Contains(x.Run.Detail, "key:2:late")) // the pause in force, the 1,001st
}
