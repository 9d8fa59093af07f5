package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

const tenant = "default"

// patience bounds every wait of these tests; reaching it is a failure.
const patience = 20 * time.Second

// startEngineWith starts an engine with cfg (Store set to db) and stops it at cleanup.
func startEngineWith(t testing.TB, db engine.Store, cfg engine.Config, handlers map[string]engine.Handler) *engine.Engine {
	t.Helper()
	cfg.Store = db
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	for typ, h := range handlers {
		if err := e.Register(typ, h); err != nil {
			t.Fatalf("register %s: %v", typ, err)
		}
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("start engine: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Stop(ctx)
	})
	return e
}

// waitFor polls cond until it holds; it fails the test after patience.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv receives from ch or fails the test after patience.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// send sends on ch or fails the test after patience.
func send(t testing.TB, ch chan<- struct{}, what string) {
	t.Helper()
	select {
	case ch <- struct{}{}:
	case <-time.After(patience):
		t.Fatalf("timed out: %s", what)
	}
}

// register stores a definition for the default tenant.
func register(t testing.TB, e *engine.Engine, def string) {
	t.Helper()
	if _, _, err := e.RegisterDefinition(context.Background(), tenant, []byte(def)); err != nil {
		t.Fatalf("register definition: %v", err)
	}
}

// start starts a run of workflow for the default tenant.
func start(t testing.TB, e *engine.Engine, workflow string) *engine.Run {
	t.Helper()
	run, err := e.StartRun(context.Background(), engine.StartRequest{TenantID: tenant, Workflow: workflow})
	if err != nil {
		t.Fatalf("start run of %s: %v", workflow, err)
	}
	return run
}

// task returns the stored row of one task.
func task(t testing.TB, db *store.DB, runID, taskID string) engine.Task {
	t.Helper()
	_, tasks, err := db.LoadRun(context.Background(), tenant, runID)
	if err != nil {
		t.Fatalf("load run %s: %v", runID, err)
	}
	for _, tk := range tasks {
		if tk.TaskID == taskID {
			return tk
		}
	}
	t.Fatalf("run %s has no task %s", runID, taskID)
	return engine.Task{}
}

// taskIn reports whether a task is stored in state s.
func taskIn(t testing.TB, db *store.DB, runID, taskID string, s engine.TaskState) func() bool {
	return func() bool { return task(t, db, runID, taskID).State == s }
}

// history returns a run's events.
func history(t testing.TB, db *store.DB, runID string) []engine.Event {
	t.Helper()
	events, err := db.RunEvents(context.Background(), tenant, runID, 0, 0)
	if err != nil {
		t.Fatalf("events of %s: %v", runID, err)
	}
	return events
}

// filter returns the events of a type, for a task ("" = any).
func filter(events []engine.Event, typ engine.EventType, taskID string) []engine.Event {
	var out []engine.Event
	for _, ev := range events {
		if ev.Type == typ && (taskID == "" || ev.TaskID == taskID) {
			out = append(out, ev)
		}
	}
	return out
}

// data decodes an event's payload.
func data(t testing.TB, ev engine.Event) engine.EventData {
	t.Helper()
	var d engine.EventData
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatalf("event %d data %s: %v", ev.Seq, ev.Data, err)
		}
	}
	return d
}

// verify checks that every run's projection is the fold of its hash-chained events.
func verify(t testing.TB, db *store.DB, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := engine.VerifyRun(context.Background(), db, tenant, id); err != nil {
			t.Errorf("verify run %s: %v", id, err)
		}
	}
}

// barrier returns once every commit queued before it has been acknowledged:
// the store's writer commits in order and runs each batch's callbacks (the
// engine's follow-up decisions, under its lock) before it takes the next.
func barrier(t testing.TB, db *store.DB) {
	t.Helper()
	_, _, err := db.PutDefinition(context.Background(), &engine.StoredDefinition{TenantID: "barrier",
		Name: "barrier", Definition: json.RawMessage(`{}`), Hash: "barrier", CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("barrier: %v", err)
	}
}

// holder is a handler that reports each attempt it starts and holds it until
// released or until its context ends.
type holder struct {
	started chan string           // task ids, as attempts start
	release chan struct{}         // one send lets one attempt complete
	ctxErr  chan error            // why a context ended an attempt
	calls   atomic.Int32          // attempts started
	onStart func(*engine.Attempt) // optional, called first
}

func newHolder() *holder {
	return &holder{started: make(chan string, 128), release: make(chan struct{}), ctxErr: make(chan error, 128)}
}

func (h *holder) Run(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
	h.calls.Add(1)
	if h.onStart != nil {
		h.onStart(a)
	}
	h.started <- a.TaskID
	select {
	case <-h.release:
		return json.RawMessage(fmt.Sprintf(`{"task":%q,"attempt":%d}`, a.TaskID, a.Attempt)), nil
	case <-ctx.Done():
		h.ctxErr <- ctx.Err()
		return nil, ctx.Err()
	}
}

func TestEngine_Retry(t *testing.T) {
	t.Parallel()
	// flaky fails its first two attempts.
	flaky := engine.HandlerFunc(func(_ context.Context, a *engine.Attempt) (json.RawMessage, error) {
		if a.Attempt < 3 {
			return nil, fmt.Errorf("attempt %d fails", a.Attempt)
		}
		return json.RawMessage(`{"ok":true}`), nil
	})
	def := func(name string, attempts int) string {
		return fmt.Sprintf(`{"name":%q,"tasks":[
			{"id":"flaky","type":"flaky","retry":{"max_attempts":%d,"initial_interval":"10ms"}},
			{"id":"after","type":"noop","depends_on":["flaky"]},
			{"id":"last","type":"noop","depends_on":["after"]}]}`, name, attempts)
	}

	t.Run("a task failing twice completes on its third attempt", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		e := startEngine(t, db, map[string]engine.Handler{"flaky": flaky})
		register(t, e, def("retry3", 3))
		run := start(t, e, "retry3")
		got := waitRun(t, db, run.ID)
		is.Equal(got.State, engine.RunCompleted) // the run completes
		fl := task(t, db, run.ID, "flaky")
		is.Equal(fl.Attempt, 3)  // three attempts
		is.True(fl.Error == nil) // no error left on a completed task
		is.Equal(string(fl.Output), `{"ok":true}`)
		events := history(t, db, run.ID)
		failed := filter(events, engine.EventTaskAttemptFailed, "flaky")
		is.Equal(len(failed), 2) // two failed attempts recorded
		for i, ev := range failed {
			d := data(t, ev)
			is.Equal(ev.Attempt, i+1)                  // attempts 1 and 2 failed
			is.Equal(d.Reason, engine.ReasonError)     // because the handler returned an error
			is.Equal(d.Error.Code, "error")            // with code error
			is.True(!d.NotBefore.IsZero())             // and a backoff
			wantWait := 10 * time.Millisecond << i     // 10ms, then 20ms (backoff 2)
			is.Equal(d.NotBefore.Sub(ev.At), wantWait) // the backoff of the policy
		}
		starts := filter(events, engine.EventTaskStarted, "flaky")
		is.Equal(len(starts), 3) // three starts
		for i := 1; i < 3; i++ {
			nb := data(t, failed[i-1]).NotBefore
			is.True(!starts[i].At.Before(nb.Truncate(time.Microsecond))) // no attempt starts before its backoff is over
		}
		verify(t, db, run.ID)
	})

	t.Run("a task out of attempts fails its run and skips its dependents", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		e := startEngine(t, db, map[string]engine.Handler{"flaky": flaky})
		register(t, e, def("retry2", 2))
		run := start(t, e, "retry2")
		got := waitRun(t, db, run.ID)
		is.Equal(got.State, engine.RunFailed)                           // the run fails
		is.True(got.Error != nil)                                       // with an error
		is.Equal(got.Error.Code, "task_failed")                         // a task failed
		is.True(strings.Contains(got.Error.Message, `"flaky"`))         // naming the task
		is.True(strings.Contains(got.Error.Message, "attempt 2 fails")) // and its last error
		fl := task(t, db, run.ID, "flaky")
		is.Equal(fl.State, engine.TaskFailed) // the task failed
		is.Equal(fl.Attempt, 2)               // after two attempts
		for _, id := range []string{"after", "last"} {
			tk := task(t, db, run.ID, id)
			is.Equal(tk.State, engine.TaskSkipped)               // dependents skipped
			is.Equal(tk.Attempt, 0)                              // and never started
			is.Equal(tk.Error.Code, engine.ReasonUpstreamFailed) // because upstream failed
		}
		events := history(t, db, run.ID)
		is.Equal(len(filter(events, engine.EventTaskAttemptFailed, "flaky")), 1) // one retried attempt
		final := filter(events, engine.EventTaskFailed, "flaky")
		is.Equal(len(final), 1)       // one final failure
		is.Equal(final[0].Attempt, 2) // on attempt 2
		is.Equal(data(t, final[0]).Reason, engine.ReasonError)
		verify(t, db, run.ID)
	})
}

func TestEngine_TaskTimeout(t *testing.T) {
	t.Parallel()
	t.Run("a handler blocking past its timeout times the task out and fails the run", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		ctxErr := make(chan error, 1)
		block := engine.HandlerFunc(func(ctx context.Context, _ *engine.Attempt) (json.RawMessage, error) {
			<-ctx.Done()
			ctxErr <- ctx.Err()
			return nil, ctx.Err()
		})
		e := startEngine(t, db, map[string]engine.Handler{"block": block})
		register(t, e, `{"name":"tto","tasks":[{"id":"stuck","type":"block","timeout":"50ms"},
			{"id":"after","type":"noop","depends_on":["stuck"]}]}`)
		run := start(t, e, "tto")
		is.True(errors.Is(recv(t, ctxErr, "the handler's context to end"), context.DeadlineExceeded)) // the timeout ended the context
		got := waitRun(t, db, run.ID)
		is.Equal(got.State, engine.RunFailed)      // the run failed
		is.Equal(got.Error.Code, "task_timed_out") // because a task timed out
		stuck := task(t, db, run.ID, "stuck")
		is.Equal(stuck.State, engine.TaskTimedOut)                         // the task timed out
		is.True(stuck.EndedAt.Sub(stuck.StartedAt) >= 50*time.Millisecond) // not before its timeout
		is.Equal(task(t, db, run.ID, "after").State, engine.TaskSkipped)   // its dependent skipped
		timedOut := filter(history(t, db, run.ID), engine.EventTaskTimedOut, "stuck")
		is.Equal(len(timedOut), 1)                                  // one task.timed_out event
		is.Equal(data(t, timedOut[0]).Reason, engine.ReasonTimeout) // reason timeout
		is.Equal(data(t, timedOut[0]).Error.Code, "timeout")        // code timeout
		verify(t, db, run.ID)
	})
}

func TestEngine_RunTimeout(t *testing.T) {
	t.Parallel()
	t.Run("a run past its timeout times out and cancels its sleeping task", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		e := startEngine(t, db, nil)
		register(t, e, `{"name":"slow","timeout":"100ms","tasks":[
			{"id":"nap","type":"sleep","config":{"duration":"1h"}},
			{"id":"after","type":"noop","depends_on":["nap"]}]}`)
		run := start(t, e, "slow")
		is.True(!run.Deadline.IsZero()) // the deadline is recorded at start
		got := waitRun(t, db, run.ID)
		is.Equal(got.State, engine.RunTimedOut)    // the run timed out
		is.Equal(got.Error.Code, "run_timed_out")  // with its error
		is.True(!got.EndedAt.Before(got.Deadline)) // not before its deadline
		nap := task(t, db, run.ID, "nap")
		is.Equal(nap.State, engine.TaskCancelled)                          // the sleep was cancelled
		is.Equal(nap.Attempt, 1)                                           // during its one attempt
		is.Equal(task(t, db, run.ID, "after").State, engine.TaskCancelled) // the pending task too
		events := history(t, db, run.ID)
		is.Equal(len(filter(events, engine.EventRunTimedOut, "")), 1) // one run.timed_out
		for _, ev := range filter(events, engine.EventTaskCancelled, "") {
			is.Equal(data(t, ev).Reason, engine.ReasonRunTimedOut) // cancelled because the run timed out
		}
		is.Equal(events[len(events)-1].Type, engine.EventRunTimedOut) // the last event
		verify(t, db, run.ID)
	})
}

func TestEngine_HandlerPanic(t *testing.T) {
	t.Parallel()
	t.Run("a panic fails the attempt with code panic and the engine carries on", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		boom := engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
			panic("kaboom")
		})
		e := startEngine(t, db, map[string]engine.Handler{"boom": boom})
		register(t, e, `{"name":"boom","tasks":[{"id":"bang","type":"boom","retry":{"max_attempts":2,"initial_interval":"1ms"}}]}`)
		register(t, e, string(chainDef("calm", 3, "noop")))
		run := start(t, e, "boom")
		got := waitRun(t, db, run.ID)
		is.Equal(got.State, engine.RunFailed) // the run failed
		bang := task(t, db, run.ID, "bang")
		is.Equal(bang.State, engine.TaskFailed)                 // the task failed
		is.Equal(bang.Attempt, 2)                               // after both attempts panicked
		is.Equal(bang.Error.Code, "panic")                      // with code panic
		is.True(strings.Contains(bang.Error.Message, "kaboom")) // and the panic value
		events := history(t, db, run.ID)
		retried := filter(events, engine.EventTaskAttemptFailed, "bang")
		is.Equal(len(retried), 1)                                // the first panic was a failed attempt
		is.Equal(data(t, retried[0]).Error.Code, "panic")        // code panic
		is.Equal(data(t, retried[0]).Reason, engine.ReasonPanic) // reason panic
		final := filter(events, engine.EventTaskFailed, "bang")
		is.Equal(len(final), 1)                                // the second ended the task
		is.Equal(data(t, final[0]).Reason, engine.ReasonPanic) // reason panic

		calm := start(t, e, "calm")
		is.Equal(waitRun(t, db, calm.ID).State, engine.RunCompleted) // the engine still runs other runs
		verify(t, db, run.ID, calm.ID)
	})
}

func TestEngine_Pause(t *testing.T) {
	t.Parallel()
	t.Run("a paused run finishes its running task, starts no other, and completes once resumed", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ctx := context.Background()
		db := openTestStore(t)
		h := newHolder()
		e := startEngine(t, db, map[string]engine.Handler{"hold": h})
		register(t, e, `{"name":"pausable","tasks":[{"id":"a","type":"hold"},{"id":"b","type":"hold","depends_on":["a"]}]}`)
		run := start(t, e, "pausable")
		is.Equal(recv(t, h.started, "a to start"), "a") // a runs

		paused, err := e.Pause(ctx, tenant, run.ID, engine.By("alice"))
		is.NoErr(err)                                                              // pause
		is.Equal(paused.State, engine.RunPaused)                                   // reported paused
		is.Equal(waitRun(t, db, run.ID, engine.RunPaused).State, engine.RunPaused) // durable

		send(t, h.release, "release a")
		waitFor(t, "a to complete while paused", taskIn(t, db, run.ID, "a", engine.TaskCompleted))
		barrier(t, db)                                                             // a's completion and what follows from it are processed
		is.Equal(task(t, db, run.ID, "b").State, engine.TaskReady)                 // b is ready
		is.Equal(waitRun(t, db, run.ID, engine.RunPaused).State, engine.RunPaused) // and the run still paused
		select {
		case id := <-h.started:
			t.Fatalf("task %s started while the run was paused", id)
		default:
		}

		resumed, err := e.Resume(ctx, tenant, run.ID, engine.By("bob"))
		is.NoErr(err)                                   // resume
		is.Equal(resumed.State, engine.RunRunning)      // reported running
		is.Equal(recv(t, h.started, "b to start"), "b") // b starts once resumed
		send(t, h.release, "release b")
		is.Equal(waitRun(t, db, run.ID).State, engine.RunCompleted) // the run completes

		events := history(t, db, run.ID)
		pausedAt := filter(events, engine.EventRunPaused, "")
		resumedAt := filter(events, engine.EventRunResumed, "")
		is.Equal(len(pausedAt), 1)           // one pause
		is.Equal(len(resumedAt), 1)          // one resume
		is.Equal(pausedAt[0].Actor, "alice") // who paused
		is.Equal(resumedAt[0].Actor, "bob")  // who resumed
		aDone := filter(events, engine.EventTaskCompleted, "a")[0]
		is.True(aDone.Seq > pausedAt[0].Seq && aDone.Seq < resumedAt[0].Seq) // a completed while paused, and it is recorded
		for _, ev := range filter(events, engine.EventTaskStarted, "") {
			is.True(ev.Seq < pausedAt[0].Seq || ev.Seq > resumedAt[0].Seq) // no task started while paused
		}
		is.True(filter(events, engine.EventTaskStarted, "b")[0].Seq > resumedAt[0].Seq) // b started after the resume
		verify(t, db, run.ID)
	})
}

func TestEngine_PauseEdges(t *testing.T) {
	t.Parallel()

	t.Run("resuming a run whose tasks all finished while paused completes it", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ctx := context.Background()
		db := openTestStore(t)
		h := newHolder()
		e := startEngine(t, db, map[string]engine.Handler{"hold": h})
		register(t, e, `{"name":"one","tasks":[{"id":"a","type":"hold"}]}`)
		run := start(t, e, "one")
		recv(t, h.started, "a to start")
		_, err := e.Pause(ctx, tenant, run.ID, engine.Caller{})
		is.NoErr(err) // pause
		send(t, h.release, "release a")
		waitFor(t, "a to complete", taskIn(t, db, run.ID, "a", engine.TaskCompleted))
		barrier(t, db)
		is.Equal(waitRun(t, db, run.ID, engine.RunPaused).State, engine.RunPaused) // a paused run does not complete by itself
		got, err := e.Resume(ctx, tenant, run.ID, engine.Caller{})
		is.NoErr(err)                                               // resume
		is.Equal(got.State, engine.RunCompleted)                    // completes in the same decision
		is.Equal(waitRun(t, db, run.ID).State, engine.RunCompleted) // durable
		verify(t, db, run.ID)
	})

	t.Run("a run paused past its deadline times out when resumed", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ctx := context.Background()
		db := openTestStore(t)
		h := newHolder()
		e := startEngine(t, db, map[string]engine.Handler{"hold": h})
		register(t, e, `{"name":"late","timeout":"100ms","tasks":[{"id":"a","type":"hold"}]}`)
		run := start(t, e, "late")
		recv(t, h.started, "a to start")
		_, err := e.Pause(ctx, tenant, run.ID, engine.Caller{})
		is.NoErr(err) // pause
		waitFor(t, "the deadline to pass", func() bool { return time.Now().After(run.Deadline) })
		barrier(t, db)
		is.Equal(waitRun(t, db, run.ID, engine.RunPaused).State, engine.RunPaused) // a paused run does not time out
		got, err := e.Resume(ctx, tenant, run.ID, engine.Caller{})
		is.NoErr(err)                                                                 // resume
		is.Equal(got.State, engine.RunTimedOut)                                       // the deadline applies at once
		is.True(errors.Is(recv(t, h.ctxErr, "a's context to end"), context.Canceled)) // the held attempt is cancelled
		is.Equal(task(t, db, run.ID, "a").State, engine.TaskCancelled)                // and recorded so
		verify(t, db, run.ID)
	})

	t.Run("a paused run stays paused across a restart", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ctx := context.Background()
		db := openTestStore(t)
		h := newHolder()
		e1 := startEngine(t, db, map[string]engine.Handler{"hold": h})
		register(t, e1, `{"name":"keep","tasks":[{"id":"a","type":"hold"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
		run := start(t, e1, "keep")
		recv(t, h.started, "a to start")
		_, err := e1.Pause(ctx, tenant, run.ID, engine.Caller{})
		is.NoErr(err) // pause
		expired, cancel := context.WithCancel(ctx)
		cancel()
		is.NoErr(e1.Stop(expired))                                 // interrupts a
		is.Equal(task(t, db, run.ID, "a").State, engine.TaskReady) // a is ready again

		h2 := newHolder()
		e2 := startEngine(t, db, map[string]engine.Handler{"hold": h2})
		barrier(t, db)
		is.Equal(waitRun(t, db, run.ID, engine.RunPaused).State, engine.RunPaused) // still paused
		is.Equal(task(t, db, run.ID, "a").State, engine.TaskReady)                 // and a not started
		_, err = e2.Resume(ctx, tenant, run.ID, engine.Caller{})
		is.NoErr(err) // resume under the second engine
		recv(t, h2.started, "a to start again")
		send(t, h2.release, "release a")
		is.Equal(waitRun(t, db, run.ID).State, engine.RunCompleted) // completes
		is.Equal(task(t, db, run.ID, "a").Attempt, 2)               // a's second attempt
		verify(t, db, run.ID)
	})
}

func TestEngine_Cancel(t *testing.T) {
	t.Parallel()
	t.Run("cancelling ends the handler's context and every unfinished task", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ctx := context.Background()
		db := openTestStore(t)
		h := newHolder()
		e := startEngine(t, db, map[string]engine.Handler{"hold": h})
		register(t, e, `{"name":"cancellable","tasks":[{"id":"a","type":"hold"},{"id":"b","type":"noop","depends_on":["a"]},
			{"id":"c","type":"noop","depends_on":["b"]}]}`)
		run := start(t, e, "cancellable")
		is.Equal(recv(t, h.started, "a to start"), "a") // a runs

		got, err := e.Cancel(ctx, tenant, run.ID, engine.By("carol"))
		is.NoErr(err)                                                                 // cancel
		is.Equal(got.State, engine.RunCancelled)                                      // reported cancelled
		is.True(errors.Is(recv(t, h.ctxErr, "a's context to end"), context.Canceled)) // the handler saw its context cancelled
		stored := waitRun(t, db, run.ID)
		is.Equal(stored.State, engine.RunCancelled) // durable
		is.True(!stored.EndedAt.IsZero())           // ended
		for _, id := range []string{"a", "b", "c"} {
			is.Equal(task(t, db, run.ID, id).State, engine.TaskCancelled) // every unfinished task cancelled
		}
		barrier(t, db) // the handler's late report, if any, is processed
		events := history(t, db, run.ID)
		cancelled := filter(events, engine.EventTaskCancelled, "a")
		is.Equal(len(cancelled), 1)                                          // a cancelled once
		is.Equal(cancelled[0].Attempt, 1)                                    // during attempt 1
		is.Equal(data(t, cancelled[0]).Reason, engine.ReasonRunCancelled)    // because the run was
		is.Equal(len(filter(events, engine.EventTaskAttemptFailed, "a")), 0) // the aborted handler's error is not recorded
		runCancelled := filter(events, engine.EventRunCancelled, "")
		is.Equal(len(runCancelled), 1)                                 // one run.cancelled
		is.Equal(runCancelled[0].Actor, "carol")                       // by carol
		is.Equal(events[len(events)-1].Type, engine.EventRunCancelled) // last
		verify(t, db, run.ID)
	})
}

func TestEngine_RetryRun(t *testing.T) {
	t.Parallel()
	t.Run("retrying a failed run resets its failed and skipped tasks and carries attempt numbers on", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ctx := context.Background()
		db := openTestStore(t)
		var failing atomic.Bool
		failing.Store(true)
		toggle := engine.HandlerFunc(func(_ context.Context, a *engine.Attempt) (json.RawMessage, error) {
			if failing.Load() {
				return nil, &engine.TaskError{Code: "down", Message: "the service is down"}
			}
			return json.RawMessage(fmt.Sprintf(`{"attempt":%d}`, a.Attempt)), nil
		})
		e := startEngine(t, db, map[string]engine.Handler{"toggle": toggle})
		register(t, e, `{"name":"again","tasks":[{"id":"first","type":"noop"},{"id":"a","type":"toggle","depends_on":["first"]},
			{"id":"b","type":"noop","depends_on":["a"],"input":{"k":1}}]}`)
		run := start(t, e, "again")
		failed := waitRun(t, db, run.ID)
		is.Equal(failed.State, engine.RunFailed)                     // the run fails
		is.Equal(task(t, db, run.ID, "a").Error.Code, "down")        // a keeps its handler's code
		is.Equal(task(t, db, run.ID, "b").State, engine.TaskSkipped) // b skipped

		failing.Store(false)
		got, err := e.Retry(ctx, tenant, run.ID, engine.By("ops"))
		is.NoErr(err)                          // retry
		is.Equal(got.State, engine.RunRunning) // reported running
		is.True(got.Error == nil)              // the old error is cleared
		done := waitRun(t, db, run.ID)
		is.Equal(done.State, engine.RunCompleted)         // the run completes
		is.Equal(string(done.Output), `{"b":{"k":1}}`)    // the output of the sink task
		is.Equal(task(t, db, run.ID, "first").Attempt, 1) // the completed task is not run again
		is.Equal(task(t, db, run.ID, "a").Attempt, 2)     // a's attempts carry on
		is.Equal(task(t, db, run.ID, "b").Attempt, 1)     // b ran once

		events := history(t, db, run.ID)
		retried := filter(events, engine.EventRunRetried, "")
		is.Equal(len(retried), 1)                                   // one run.retried
		is.Equal(retried[0].Actor, "ops")                           // by ops
		is.Equal(data(t, retried[0]).Tasks, []string{"a", "b"})     // naming the tasks put back
		is.Equal(len(filter(events, engine.EventTaskReset, "")), 2) // two resets
		var attempts []int
		for _, ev := range filter(events, engine.EventTaskStarted, "a") {
			attempts = append(attempts, ev.Attempt)
		}
		is.Equal(attempts, []int{1, 2}) // attempt 2 after 1
		verify(t, db, run.ID)
	})
}

// transitionFrom asserts err is a *engine.TransitionError from state from.
func transitionFrom(t *testing.T, err error, from engine.RunState) {
	t.Helper()
	is := is.NewRelaxed(t)
	var te *engine.TransitionError
	is.True(errors.As(err, &te))                         // a *TransitionError
	is.True(errors.Is(err, engine.ErrInvalidTransition)) // wrapping ErrInvalidTransition
	if te != nil {
		is.Equal(te.From, string(from)) // From is the current state
	}
}

func TestEngine_Control(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestStore(t)
	h := newHolder()
	e := startEngine(t, db, map[string]engine.Handler{"hold": h})
	register(t, e, `{"name":"held","tasks":[{"id":"a","type":"hold"}]}`)
	register(t, e, string(chainDef("quick", 2, "noop")))
	done := start(t, e, "quick")
	waitRun(t, db, done.ID)
	live := start(t, e, "held")
	is.New(t).Equal(recv(t, h.started, "a to start"), "a") // the live run is running
	verbs := map[string]func(context.Context, string, string, engine.Caller) (*engine.Run, error){
		"pause": e.Pause, "resume": e.Resume, "cancel": e.Cancel, "retry": e.Retry,
	}

	t.Run("every verb is refused on a completed run", func(t *testing.T) {
		for name, verb := range verbs {
			_, err := verb(ctx, tenant, done.ID, engine.By("x"))
			t.Run(name, func(t *testing.T) { transitionFrom(t, err, engine.RunCompleted) })
		}
	})

	t.Run("verbs a running run does not allow are refused", func(t *testing.T) {
		_, err := e.Resume(ctx, tenant, live.ID, engine.By("x"))
		transitionFrom(t, err, engine.RunRunning)
		_, err = e.Retry(ctx, tenant, live.ID, engine.By("x"))
		transitionFrom(t, err, engine.RunRunning)
	})

	t.Run("an unknown run is not found", func(t *testing.T) {
		is := is.New(t)
		for _, verb := range verbs {
			_, err := verb(ctx, tenant, "0190a0a0-0000-7000-8000-000000000000", engine.By("x"))
			is.True(errors.Is(err, engine.ErrNotFound)) // not found
		}
	})

	t.Run("another tenant's run is not found", func(t *testing.T) {
		is := is.New(t)
		for _, id := range []string{done.ID, live.ID} {
			for _, verb := range verbs {
				_, err := verb(ctx, "intruder", id, engine.By("x"))
				is.True(errors.Is(err, engine.ErrNotFound)) // not found for another tenant
			}
		}
		is.Equal(waitRun(t, db, live.ID, engine.RunRunning).State, engine.RunRunning) // the live run is untouched
	})

	t.Run("a paused run refuses pause and retry, then a cancelled one all but retry", func(t *testing.T) {
		is := is.New(t)
		_, err := e.Pause(ctx, tenant, live.ID, engine.By("x"))
		is.NoErr(err) // pause
		_, err = e.Pause(ctx, tenant, live.ID, engine.By("x"))
		transitionFrom(t, err, engine.RunPaused)
		_, err = e.Retry(ctx, tenant, live.ID, engine.By("x"))
		transitionFrom(t, err, engine.RunPaused)
		_, err = e.Cancel(ctx, tenant, live.ID, engine.By("x"))
		is.NoErr(err) // a paused run can be cancelled
		waitRun(t, db, live.ID)
		for _, verb := range []string{"pause", "resume", "cancel"} {
			_, err := verbs[verb](ctx, tenant, live.ID, engine.By("x"))
			transitionFrom(t, err, engine.RunCancelled)
		}
	})

	verify(t, db, done.ID, live.ID)
}

func TestEngine_MaxParallel(t *testing.T) {
	t.Parallel()
	t.Run("a fan-out of ten runs at most max_parallel tasks at once", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		var mu sync.Mutex
		cur, peak := 0, 0
		h := newHolder()
		h.onStart = func(*engine.Attempt) {
			mu.Lock()
			cur++
			peak = max(peak, cur)
			mu.Unlock()
		}
		par := engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
			out, err := h.Run(ctx, a)
			mu.Lock()
			cur--
			mu.Unlock()
			return out, err
		})
		e := startEngineWith(t, db, engine.Config{Workers: 8}, map[string]engine.Handler{"par": par})
		var tasks []string
		for i := 0; i < 10; i++ {
			tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","type":"par"}`, i))
		}
		register(t, e, fmt.Sprintf(`{"name":"fan","max_parallel":2,"tasks":[%s]}`, strings.Join(tasks, ",")))
		run := start(t, e, "fan")
		// Keep two attempts held at every moment: each release lets one more in.
		for i := 1; i <= 10; i++ {
			recv(t, h.started, fmt.Sprintf("attempt %d to start", i))
			if i >= 2 {
				send(t, h.release, "release one")
			}
		}
		send(t, h.release, "release the last")
		is.Equal(waitRun(t, db, run.ID).State, engine.RunCompleted) // the run completes
		mu.Lock()
		defer mu.Unlock()
		is.Equal(peak, 2)                   // never more than max_parallel at once, and the cap was reached
		is.Equal(h.calls.Load(), int32(10)) // each task ran once
		verify(t, db, run.ID)
	})
}

// Regression: workers used to be woken only when a run entered the ready
// heap, and none after a worker took a task; the other ready tasks of a run
// already in the heap waited for the busy worker, so one run's tasks never ran
// in parallel (and TestEngine_MaxParallel never saw 2 at once).
func TestEngine_Concurrency(t *testing.T) {
	t.Parallel()
	t.Run("independent ready tasks of one run run at once", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		h := newHolder()
		e := startEngineWith(t, db, engine.Config{Workers: 4}, map[string]engine.Handler{"hold": h})
		register(t, e, `{"name":"trio","tasks":[{"id":"a","type":"hold"},{"id":"b","type":"hold"},{"id":"c","type":"hold"}]}`)
		run := start(t, e, "trio")
		seen := map[string]bool{}
		for i := 0; i < 3; i++ {
			seen[recv(t, h.started, "the three tasks to be running together")] = true // none is released yet
		}
		is.Equal(len(seen), 3) // a, b and c run at once on four workers
		for i := 0; i < 3; i++ {
			send(t, h.release, "release")
		}
		is.Equal(waitRun(t, db, run.ID).State, engine.RunCompleted) // completes
		verify(t, db, run.ID)
	})
}

func TestEngine_ReadyOrder(t *testing.T) {
	t.Parallel()
	t.Run("ready tasks start by priority, then topological position, then id", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ctx := context.Background()
		db := openTestStore(t)
		var mu sync.Mutex
		var order []string
		gate := newHolder()
		rec := engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
			mu.Lock()
			order = append(order, a.TaskID)
			mu.Unlock()
			if a.TaskID == "start" {
				return gate.Run(ctx, a)
			}
			return nil, nil
		})
		e := startEngineWith(t, db, engine.Config{Workers: 1}, map[string]engine.Handler{"rec": rec})
		// Level 0: start (priority 100) and zeta; level 1: everything else, below start.
		register(t, e, `{"name":"order","tasks":[
			{"id":"start","type":"rec","priority":100},
			{"id":"zeta","type":"rec"},
			{"id":"alpha","type":"rec","depends_on":["start"]},
			{"id":"beta","type":"rec","priority":5,"depends_on":["start"]},
			{"id":"b2","type":"rec","priority":5,"depends_on":["start"]},
			{"id":"a2","type":"rec","priority":5,"depends_on":["start"]},
			{"id":"gamma","type":"rec","priority":-1,"depends_on":["start"]},
			{"id":"omega","type":"rec","priority":7,"depends_on":["start"]}]}`)
		run := start(t, e, "order")
		is.Equal(recv(t, gate.started, "start to start"), "start") // the highest priority goes first
		// Pause so that everything is ready at once when the run resumes.
		_, err := e.Pause(ctx, tenant, run.ID, engine.Caller{})
		is.NoErr(err) // pause
		send(t, gate.release, "release start")
		waitFor(t, "start to complete", taskIn(t, db, run.ID, "start", engine.TaskCompleted))
		barrier(t, db) // the dependents of start are queued
		_, err = e.Resume(ctx, tenant, run.ID, engine.Caller{})
		is.NoErr(err)                                               // resume
		is.Equal(waitRun(t, db, run.ID).State, engine.RunCompleted) // the run completes
		mu.Lock()
		defer mu.Unlock()
		is.Equal(order, []string{"start", "omega", "a2", "b2", "beta", "zeta", "alpha", "gamma"}) // priority desc, then position (level, id)
		verify(t, db, run.ID)
	})
}

func TestEngine_ReadyOrderAcrossRuns(t *testing.T) {
	t.Parallel()
	t.Run("tasks of several runs start by priority, then the older run first", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		var mu sync.Mutex
		var order []string
		gate := newHolder()
		rec := engine.HandlerFunc(func(_ context.Context, a *engine.Attempt) (json.RawMessage, error) {
			mu.Lock()
			order = append(order, a.RunID)
			mu.Unlock()
			return nil, nil
		})
		e := startEngineWith(t, db, engine.Config{Workers: 1}, map[string]engine.Handler{"rec": rec, "hold": gate})
		register(t, e, `{"name":"gate","tasks":[{"id":"g","type":"hold"}]}`)
		register(t, e, `{"name":"low","tasks":[{"id":"t","type":"rec"}]}`)
		register(t, e, `{"name":"high","tasks":[{"id":"t","type":"rec","priority":5}]}`)
		g := start(t, e, "gate")
		recv(t, gate.started, "the gate to hold the only worker")
		low1 := start(t, e, "low")
		high := start(t, e, "high")
		low2 := start(t, e, "low")
		send(t, gate.release, "release the worker")
		for _, r := range []*engine.Run{g, low1, high, low2} {
			is.Equal(waitRun(t, db, r.ID).State, engine.RunCompleted) // every run completes
		}
		mu.Lock()
		defer mu.Unlock()
		is.Equal(order, []string{high.ID, low1.ID, low2.ID}) // priority first, then the older run
		verify(t, db, g.ID, low1.ID, high.ID, low2.ID)
	})
}

func TestEngine_DurableSleep(t *testing.T) {
	t.Parallel()
	t.Run("a sleep survives a restart without starting again", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		e1 := startEngine(t, db, nil)
		// Long enough that the first engine surely stops before the wake time,
		// even under -race on a loaded machine.
		register(t, e1, `{"name":"nap","tasks":[{"id":"nap","type":"sleep","config":{"duration":"1s"}},
			{"id":"after","type":"noop","depends_on":["nap"]}]}`)
		run := start(t, e1, "nap")
		waitFor(t, "the sleep to start", taskIn(t, db, run.ID, "nap", engine.TaskRunning))
		wakeAt := task(t, db, run.ID, "nap").WakeAt
		is.True(!wakeAt.IsZero()) // the wake time is stored
		started := filter(history(t, db, run.ID), engine.EventTaskStarted, "nap")
		is.Equal(len(started), 1)                         // one start
		is.True(data(t, started[0]).WakeAt.Equal(wakeAt)) // the event carries the same wake time
		stopCtx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		is.NoErr(e1.Stop(stopCtx)) // stop the first engine
		if !time.Now().Before(wakeAt) {
			t.Fatal("the first engine stopped after the wake time: the test proves nothing on a machine this slow")
		}
		is.Equal(task(t, db, run.ID, "nap").State, engine.TaskRunning) // stopping does not end a sleep

		startEngine(t, db, nil)
		got := waitRun(t, db, run.ID)
		is.Equal(got.State, engine.RunCompleted) // the run completes under the second engine
		nap := task(t, db, run.ID, "nap")
		is.Equal(nap.Attempt, 1)             // the sleep was not restarted
		is.True(!nap.EndedAt.Before(wakeAt)) // and did not end before its wake time
		events := history(t, db, run.ID)
		is.Equal(len(filter(events, engine.EventTaskStarted, "nap")), 1)       // one start in all
		is.Equal(len(filter(events, engine.EventTaskAttemptFailed, "nap")), 0) // nothing abandoned
		verify(t, db, run.ID)
	})
}

// crashStore stops writing anything once crashed, as if the process had died:
// commits fail (asynchronously, as the Store contract asks) and nothing is written.
type crashStore struct {
	*store.DB
	crashed atomic.Bool
}

func (s *crashStore) Commit(changes []engine.Change, done func(error)) {
	if s.crashed.Load() {
		go done(errors.New("simulated crash: nothing written"))
		return
	}
	s.DB.Commit(changes, done)
}

func TestEngine_InterruptedAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		crash bool // die instead of stopping: nothing about the attempt's end is recorded
		retry string
	}{
		{"an attempt interrupted by Stop is retried by the next engine", false, `,"retry":{"max_attempts":3,"initial_interval":"1h"}`},
		{"an interruption does not use up a budget of one attempt", false, ""},
		{"an attempt abandoned by a crash is retried by the next engine", true, `,"retry":{"max_attempts":3,"initial_interval":"1h"}`},
		{"an abandoned attempt does not use up a budget of one attempt", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			db := openTestStore(t)
			cs := &crashStore{DB: db}
			h := newHolder()
			e1 := startEngineWith(t, cs, engine.Config{}, map[string]engine.Handler{"work": h})
			register(t, e1, `{"name":"work","tasks":[{"id":"w","type":"work"`+tc.retry+`},{"id":"after","type":"noop","depends_on":["w"]}]}`)
			run := start(t, e1, "work")
			is.Equal(recv(t, h.started, "w to start"), "w") // the handler runs
			waitFor(t, "w to be running", taskIn(t, db, run.ID, "w", engine.TaskRunning))
			cs.crashed.Store(tc.crash)
			expired, cancel := context.WithCancel(context.Background())
			cancel()
			is.NoErr(e1.Stop(expired))                                                    // stop at once
			is.True(errors.Is(recv(t, h.ctxErr, "w's context to end"), context.Canceled)) // the handler was interrupted
			reason := engine.ReasonInterrupted
			if tc.crash {
				reason = engine.ReasonAbandoned
				is.Equal(task(t, db, run.ID, "w").State, engine.TaskRunning) // a crash records nothing
			} else {
				w := task(t, db, run.ID, "w")
				is.Equal(w.State, engine.TaskReady) // the interrupted attempt went back to ready
				is.True(w.NotBefore.IsZero())       // without a backoff
			}

			ok := engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
				return json.RawMessage(`"done"`), nil
			})
			startEngine(t, db, map[string]engine.Handler{"work": ok})
			got := waitRun(t, db, run.ID)
			is.Equal(got.State, engine.RunCompleted) // the run completes under the next engine
			w := task(t, db, run.ID, "w")
			is.Equal(w.Attempt, 2)               // a second attempt
			is.Equal(string(w.Output), `"done"`) // by the new handler
			failed := filter(history(t, db, run.ID), engine.EventTaskAttemptFailed, "w")
			is.Equal(len(failed), 1)                       // one failed attempt recorded
			is.Equal(failed[0].Attempt, 1)                 // the first
			is.Equal(data(t, failed[0]).Reason, reason)    // interrupted or abandoned
			is.True(data(t, failed[0]).NotBefore.IsZero()) // retried at once
			verify(t, db, run.ID)
		})
	}
}

// failOnce fails the next commit once it is armed, writing nothing, as a disk
// error would.
type failOnce struct {
	*store.DB
	armed atomic.Bool
}

func (s *failOnce) Commit(changes []engine.Change, done func(error)) {
	if s.armed.CompareAndSwap(true, false) {
		go done(errors.New("simulated disk I/O error"))
		return
	}
	s.DB.Commit(changes, done)
}

func TestEngine_CommitFailure(t *testing.T) {
	t.Parallel()
	t.Run("a run whose commit failed is reloaded from the store and carries on", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		fs := &failOnce{DB: db}
		h := newHolder()
		e := startEngineWith(t, fs, engine.Config{}, map[string]engine.Handler{"hold": h})
		register(t, e, `{"name":"fragile","tasks":[{"id":"a","type":"hold"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
		run := start(t, e, "fragile")
		recv(t, h.started, "a to start")
		waitFor(t, "a to be running", taskIn(t, db, run.ID, "a", engine.TaskRunning))
		fs.armed.Store(true)
		send(t, h.release, "release a")                       // its completion is lost
		is.Equal(recv(t, h.started, "a to start again"), "a") // the reloaded run retries the attempt it lost
		send(t, h.release, "release a again")
		is.Equal(waitRun(t, db, run.ID).State, engine.RunCompleted) // the run completes
		a := task(t, db, run.ID, "a")
		is.Equal(a.Attempt, 2) // the lost attempt and its retry
		failed := filter(history(t, db, run.ID), engine.EventTaskAttemptFailed, "a")
		is.Equal(len(failed), 1)                                    // one attempt recorded as failed
		is.Equal(data(t, failed[0]).Reason, engine.ReasonAbandoned) // abandoned, not charged
		verify(t, db, run.ID)
	})
}

func TestEngine_Stop(t *testing.T) {
	t.Parallel()

	t.Run("a stopped engine refuses new work", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ctx := context.Background()
		db := openTestStore(t)
		h := newHolder()
		e := startEngine(t, db, map[string]engine.Handler{"hold": h})
		register(t, e, `{"name":"held","tasks":[{"id":"a","type":"hold"}]}`)
		run := start(t, e, "held")
		recv(t, h.started, "a to start")
		expired, cancel := context.WithCancel(ctx)
		cancel()
		is.NoErr(e.Stop(expired)) // stop
		is.NoErr(e.Stop(ctx))     // twice is fine
		_, err := e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "held"})
		is.True(errors.Is(err, engine.ErrClosed)) // no new run
		_, err = e.Pause(ctx, tenant, run.ID, engine.By("x"))
		is.True(errors.Is(err, engine.ErrClosed)) // no control
		verify(t, db, run.ID)
	})

	// Regression: store.DB.Commit used to call done on the caller's goroutine
	// once the store was closed; the engine commits while holding its lock and
	// its done takes that lock again, so the engine deadlocked.
	t.Run("an engine outliving its store does not deadlock", func(t *testing.T) {
		t.Parallel()
		db := openTestStore(t)
		h := newHolder()
		e, err := engine.New(engine.Config{Store: db})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Register("hold", h); err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		register(t, e, `{"name":"held","tasks":[{"id":"a","type":"hold"}]}`)
		start(t, e, "held")
		recv(t, h.started, "a to start")
		db.Close()
		send(t, h.release, "release a") // its completion cannot be written
		stopped := make(chan struct{})
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			e.Stop(ctx)
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Error("Stop did not return: the engine deadlocked on a commit to a closed store")
		}
	})
}
