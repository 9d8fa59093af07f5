package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/store"
)

func runTasks(t testing.TB, db *store.DB, runID string) (*engine.Run, map[string]engine.Task) {
	t.Helper()
	run, tasks, err := db.LoadRun(context.Background(), "default", runID)
	if err != nil {
		t.Fatalf("load run %s: %v", runID, err)
	}
	m := map[string]engine.Task{}
	for _, tk := range tasks {
		m[tk.TaskID] = tk
	}
	return run, m
}

// TestEngine_RetryTaskBehindFailedUpstream: RetryTask resets the named task
// and its non-completed descendants to pending, but nothing skips a reset task
// whose other upstream is still failed. Such a task stays pending forever, so
// the retried run stays "running" with nothing left to run: Wait never
// returns, the run never ends (until a restart, where activate's
// skipFailedUpstream finally skips it and the run fails).
func TestEngine_RetryTaskBehindFailedUpstream(t *testing.T) {
	t.Parallel()
	var failA atomic.Bool
	failA.Store(true)
	boom := engine.HandlerFunc(func(_ context.Context, a *engine.Attempt) (json.RawMessage, error) {
		if a.TaskID == "a" && !failA.Load() {
			return json.RawMessage(`"ok"`), nil
		}
		return nil, engine.Permanent(errors.New("boom"))
	})

	t.Run("retrying a skipped task whose upstream failed", func(t *testing.T) {
		t.Parallel()
		db := openTestStore(t)
		e := startEngineWith(t, db, engine.Config{}, map[string]engine.Handler{"boom": boom})
		register(t, e, `{"name":"chain","tasks":[{"id":"x","type":"boom"},{"id":"y","type":"noop","depends_on":["x"]}]}`)
		run := start(t, e, "chain")
		if got := waitRun(t, db, run.ID); got.State != engine.RunFailed {
			t.Fatalf("run state %s, want failed", got.State)
		}
		_, err := e.RetryTask(context.Background(), "default", run.ID, "y", engine.By("tester"))
		got, tasks := runTasks(t, db, run.ID)
		if err == nil && !got.State.Terminal() {
			t.Fatalf("RetryTask(y) succeeded and left the run %s with x %s and y %s: nothing can ever run, the run never ends",
				got.State, tasks["x"].State, tasks["y"].State)
		}
	})

	t.Run("retrying one failed branch of a join whose other branch failed", func(t *testing.T) {
		t.Parallel()
		db := openTestStore(t)
		e := startEngineWith(t, db, engine.Config{}, map[string]engine.Handler{"boom": boom})
		register(t, e, `{"name":"join","tasks":[{"id":"a","type":"boom"},{"id":"b","type":"boom"},
			{"id":"c","type":"noop","depends_on":["a","b"]}]}`)
		run := start(t, e, "join")
		if got := waitRun(t, db, run.ID); got.State != engine.RunFailed {
			t.Fatalf("run state %s, want failed", got.State)
		}
		failA.Store(false) // a succeeds from now on; b still fails
		if _, err := e.RetryTask(context.Background(), "default", run.ID, "a", engine.By("tester")); err != nil {
			t.Fatalf("retry task a: %v", err)
		}
		waitFor(t, "a to complete", func() bool {
			_, tasks := runTasks(t, db, run.ID)
			return tasks["a"].State == engine.TaskCompleted
		})
		// a's completion and any settling of the run are in one commit.
		got, tasks := runTasks(t, db, run.ID)
		if !got.State.Terminal() {
			t.Fatalf("after a completed the run is %s with b %s and c %s: c can never run, the run never ends",
				got.State, tasks["b"].State, tasks["c"].State)
		}
	})
}

// TestEngine_StartRunWithInvalidInput: newRun ignores b.add's result. Input
// that is not valid JSON makes the run.created event fail to encode; the
// following run.started is then refused too, the batch is empty, commit calls
// done(nil) at once, and StartRun reports success with a run that has no id
// and was never written, while a runState stays in e.runs forever.
func TestEngine_StartRunWithInvalidInput(t *testing.T) {
	t.Parallel()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{}, nil)
	register(t, e, `{"name":"one","tasks":[{"id":"a","type":"noop"}]}`)
	run, err := e.StartRun(context.Background(), engine.StartRequest{TenantID: "default", Workflow: "one",
		Input: json.RawMessage(`{"x":`)})
	if err == nil {
		t.Errorf("StartRun with invalid JSON input succeeded: run id %q, state %q", run.ID, run.State)
	}
	if n := e.Active(); n != 0 {
		t.Errorf("runs held in memory after a refused start: %d, want 0 (runs_active never returns to 0)", n)
	}
}

// gateStore wraps the real store and, while held, keeps commits back in
// order, forwarding them when opened: a slow disk, nothing is faked.
type gateStore struct {
	*store.DB
	mu    sync.Mutex
	held  bool
	queue []gated
}

type gated struct {
	changes []engine.Change
	done    func(error)
}

func (g *gateStore) Commit(changes []engine.Change, done func(error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held {
		g.queue = append(g.queue, gated{changes, done})
		return
	}
	g.DB.Commit(changes, done)
}

func (g *gateStore) hold() { g.mu.Lock(); g.held = true; g.mu.Unlock() }

func (g *gateStore) queued() int { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) }

func (g *gateStore) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.queue {
		g.DB.Commit(c.changes, c.done)
	}
	g.queue, g.held = nil, false
}

// TestEngine_StaleAttemptLeavesNewAttempt: runState.cancels is keyed by task
// position only. A Retry that reaches a cancelled run before its cancel is
// acknowledged reuses the same runState; when the first attempt's handler
// finally returns, execute cancels and deletes cancels[pos], which is now the
// new attempt's: the new attempt is killed and recorded as a failure.
func TestEngine_StaleAttemptLeavesNewAttempt(t *testing.T) {
	t.Parallel()
	db := openTestStore(t)
	g := &gateStore{DB: db}
	firstCtxDone := make(chan struct{})
	letFirstGo := make(chan struct{})
	secondStarted := make(chan context.Context, 1)
	releaseSecond := make(chan struct{})
	slow := engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
		if a.Attempt == 1 {
			<-ctx.Done() // the run is cancelled
			close(firstCtxDone)
			<-letFirstGo // the handler takes a while to wind down
			return nil, ctx.Err()
		}
		secondStarted <- ctx
		select {
		case <-releaseSecond:
			return json.RawMessage(`"ok"`), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	e := startEngineWith(t, g, engine.Config{Workers: 2}, map[string]engine.Handler{"slow": slow})
	register(t, e, `{"name":"slow","tasks":[{"id":"s","type":"slow"}]}`)
	register(t, e, `{"name":"probe","tasks":[{"id":"p","type":"noop"}]}`)
	run := start(t, e, "slow")
	waitFor(t, "s to be running", func() bool {
		_, tasks := runTasks(t, db, run.ID)
		return tasks["s"].State == engine.TaskRunning
	})

	g.hold()
	cancelled := make(chan error, 1)
	go func() {
		_, err := e.Cancel(context.Background(), "default", run.ID, engine.By("tester"))
		cancelled <- err
	}()
	recv(t, firstCtxDone, "attempt 1's context to end")
	retried := make(chan error, 1)
	go func() {
		_, err := e.Retry(context.Background(), "default", run.ID, engine.By("tester"))
		retried <- err
	}()
	waitFor(t, "cancel and retry to be decided", func() bool { return g.queued() == 2 })
	g.open()
	if err := recv(t, cancelled, "cancel"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if err := recv(t, retried, "retry"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	ctx2 := recv(t, secondStarted, "attempt 2 to start")

	close(letFirstGo) // attempt 1's handler returns now
	// With two workers, a probe run can only run once attempt 1's worker has
	// finished execute: after that, whatever it did to attempt 2 is done.
	probe := start(t, e, "probe")
	waitRun(t, db, probe.ID)
	if err := ctx2.Err(); err != nil {
		t.Errorf("attempt 2's context ended (%v) because attempt 1's late return cancelled it", err)
	}
	close(releaseSecond)
	got := waitRun(t, db, run.ID)
	if got.State != engine.RunCompleted {
		_, tasks := runTasks(t, db, run.ID)
		t.Errorf("retried run ended %s (task s: %s, error %+v), want completed", got.State, tasks["s"].State, tasks["s"].Error)
	}
}

// TestEngine_HeartbeatsReplaceTimers: every Heartbeat arms one more attempt
// timer and none is removed; each stale one, when it fires while the attempt
// still runs, re-arms a fresh one. An attempt heartbeated n times keeps n+1
// timers alive (all firing, all re-arming) until it ends.
func TestEngine_HeartbeatsReplaceTimers(t *testing.T) {
	t.Parallel()
	db := openTestStore(t)
	var mu sync.Mutex
	now := time.Now().UTC()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, NowFunc: clock}, nil)
	register(t, e, `{"name":"ext","tasks":[{"id":"x","type":"remote"}]}`)
	run := start(t, e, "ext")
	ctx := context.Background()
	lease, err := e.Poll(ctx, engine.PollRequest{TenantID: "default", Types: []string{"remote"}, WorkerID: "w",
		Lease: 30 * time.Second, Wait: patience})
	if err != nil || lease == nil {
		t.Fatalf("poll: %v %v", lease, err)
	}
	for i := 0; i < 120; i++ {
		advance(time.Second)
		if _, err := e.Heartbeat(ctx, "default", lease.ID, lease.Token, 30*time.Second, engine.Caller{}); err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
		e.FireTimers()
	}
	_, tasks := runTasks(t, db, run.ID)
	if tasks["x"].State != engine.TaskRunning {
		t.Fatalf("task x is %s, want running (heartbeats kept the lease)", tasks["x"].State)
	}
	if n := e.RunTimers(run.ID); n > 2 {
		t.Errorf("one leased attempt after 120 heartbeats has %d timers armed, want at most 2", n)
	}
}

// TestEngine_TimersReleaseFinishedRuns: timers are never removed, so every
// finished run stays referenced from the timer heap until its deadline (or
// attempt timer) comes: a run timeout of 1h keeps each finished run's whole
// runState in memory for an hour. At steady throughput the heap and the
// memory it pins grow with rate x timeout.
func TestEngine_TimersReleaseFinishedRuns(t *testing.T) {
	t.Parallel()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{}, nil)
	register(t, e, `{"name":"quick","timeout":"1h","tasks":[{"id":"a","type":"noop"}]}`)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		run := start(t, e, "quick")
		if got, err := e.Wait(ctx, "default", run.ID); err != nil || got.State != engine.RunCompleted {
			t.Fatalf("wait run %d: %v %v", i, got, err)
		}
	}
	if n := e.Active(); n != 0 {
		t.Fatalf("%d runs still active", n)
	}
	if total, stale := e.Timers(); stale > 0 {
		t.Errorf("no run is active but %d of %d timers still pin a finished run's state", stale, total)
	}
}

// TestEngine_WaitReleasesWaiters: a Wait that ends by its context leaves its
// channel in e.waiters; polling a long or paused run with short Waits grows
// the slice without bound until the run ends.
func TestEngine_WaitReleasesWaiters(t *testing.T) {
	t.Parallel()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{}, nil)
	register(t, e, `{"name":"nap","tasks":[{"id":"z","type":"sleep","config":{"duration":"1h"}}]}`)
	run := start(t, e, "nap")
	for i := 0; i < 100; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := e.Wait(ctx, "default", run.ID); !errors.Is(err, context.Canceled) {
			t.Fatalf("wait %d: %v", i, err)
		}
	}
	if n := e.Waiters(run.ID); n > 0 {
		t.Errorf("%d Wait channels left registered by Waits that already returned", n)
	}
}

// TestEngine_PollSeveralTypesClosesWaiters: Poll registers one channel in
// the lane of every type it asks for, but when a lane wakes it (closing the
// channel) Poll loops without removing it from the other lanes. The closed
// channel stays in those lanes; see TestEngine_PollSeveralTypesConcurrently for
// what happens when one of them gets work.
func TestEngine_PollSeveralTypesClosesWaiters(t *testing.T) {
	t.Parallel()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true}, nil)
	register(t, e, `{"name":"ta","tasks":[{"id":"a","type":"ta"}]}`)
	got := make(chan *engine.Lease, 1)
	go func() {
		l, _ := e.Poll(context.Background(), engine.PollRequest{TenantID: "default", Types: []string{"ta", "tb"},
			WorkerID: "w", Wait: patience})
		got <- l
	}()
	waitFor(t, "the poll to wait in lane tb", func() bool { n, _ := e.LaneWaiters("default", "tb"); return n == 1 })
	start(t, e, "ta")
	if l := recv(t, got, "the poll to lease ta"); l == nil || l.Type != "ta" {
		t.Fatalf("poll returned %+v, want a lease of ta", l)
	}
	if n, closed := e.LaneWaiters("default", "tb"); n > 0 {
		t.Errorf("the poll returned, but lane tb still holds %d of its channels (%d closed)", n, closed)
	}
}

// TestEngine_PollSeveralTypesConcurrently runs the scenario above to its end in a
// child process: the next task of type tb makes fixLane close the stale,
// already closed channel, which panics on the store's writer goroutine (in a
// commit callback, under Engine.mu) and takes the whole server down.
func TestEngine_PollSeveralTypesConcurrently(t *testing.T) {
	if os.Getenv("ENGINE_POLL_CHILD") == "1" {
		pollChild(t)
		return
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*patience)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestEngine_PollSeveralTypesConcurrently$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "ENGINE_POLL_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 1500 {
			out = out[:1500]
		}
		t.Fatalf("the engine crashed when a task of the second polled type arrived: %v\n%s", err, out)
	}
}

func pollChild(t *testing.T) {
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true}, nil)
	register(t, e, `{"name":"ta","tasks":[{"id":"a","type":"ta"}]}`)
	register(t, e, `{"name":"tb","tasks":[{"id":"b","type":"tb"}]}`)
	got := make(chan *engine.Lease, 1)
	go func() {
		l, _ := e.Poll(context.Background(), engine.PollRequest{TenantID: "default", Types: []string{"ta", "tb"},
			WorkerID: "w", Wait: patience})
		got <- l
	}()
	waitFor(t, "the poll to wait in lane tb", func() bool { n, _ := e.LaneWaiters("default", "tb"); return n == 1 })
	start(t, e, "ta")
	recv(t, got, "the poll to lease ta")
	run := start(t, e, "tb") // its task.ready commit callback closes the stale channel
	l, err := e.Poll(context.Background(), engine.PollRequest{TenantID: "default", Types: []string{"tb"},
		WorkerID: "w", Wait: patience})
	if err != nil || l == nil || l.RunID != run.ID {
		t.Fatalf("poll tb: %+v %v", l, err)
	}
}

// TestEngine_PollTypesBoundLanes: Poll creates a lane for every (tenant, type)
// it is asked about and nothing ever deletes one; any worker (or any client
// with API access) can grow the map without bound with made-up type names.
func TestEngine_PollTypesBoundLanes(t *testing.T) {
	t.Parallel()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true}, nil)
	for i := 0; i < 200; i++ {
		if _, err := e.Poll(context.Background(), engine.PollRequest{TenantID: "default",
			Types: []string{fmt.Sprintf("made-up-%d", i)}, WorkerID: "w"}); err != nil {
			t.Fatalf("poll: %v", err)
		}
	}
	if n := e.Lanes(); n > 10 {
		t.Errorf("%d lanes kept for types no definition uses and no poller waits on", n)
	}
}

// TestEngine_RefusedDecisionAnswersAtOnce: a decision part of which the
// engine refused is never written; its done runs before commit returns, on
// the committing goroutine, instead of on a goroutine nobody waits for.
func TestEngine_RefusedDecisionAnswersAtOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{}, nil)
	_, plan, problems := definition.CompileJSON([]byte(`{"name":"one","tasks":[{"id":"a","type":"noop"}]}`), definition.ValidateOptions{})
	is.Equal(len(problems), 0) // compiled
	ran, err := e.CommitRefusedDecision("default", "refused-run", plan)
	is.True(ran)                                         // done ran before commit returned
	is.True(errors.Is(err, engine.ErrInvalidTransition)) // with the refusal
	is.Equal(e.Active(), 0)                              // and the run is not held
}
