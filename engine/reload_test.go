package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// logRecorder is a slog handler that keeps every record, for tests to count.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

// matching returns the records at level or above whose message is msg ("" = any).
func (r *logRecorder) matching(level slog.Level, msg string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.records {
		if rec.Level >= level && (msg == "" || rec.Message == msg) {
			out = append(out, rec)
		}
	}
	return out
}

// attr returns the value of a record's attribute as text.
func attr(rec slog.Record, key string) string {
	var v string
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// gate is a handler whose attempts wait until it opens, then return an
// output too large for a database with no room left.
type gate struct {
	open    chan struct{}
	started chan string
	calls   atomic.Int32
}

func newGate() *gate { return &gate{open: make(chan struct{}), started: make(chan string, 1024)} }

var bigOutput = json.RawMessage(`{"pad":"` + strings.Repeat("x", 32<<10) + `"}`)

func (g *gate) Run(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
	g.calls.Add(1)
	g.started <- a.RunID
	select {
	case <-g.open:
		return bigOutput, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fullWindow is how long the tests keep a database full while they count
// what the engine does: long enough for an unbounded retry loop to show by
// the hundreds, while a backoff makes a handful of attempts.
const fullWindow = 1500 * time.Millisecond

func TestEngine_ReloadBacksOffWhileStorageIsFull(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	rec := &logRecorder{}
	log := slog.New(rec)
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "full.db"), store.Options{Logger: log})
	is.NoErr(err) // open store
	t.Cleanup(func() { db.Close() })
	g := newGate()
	e := startEngineWith(t, db, engine.Config{Logger: log}, map[string]engine.Handler{"gate": g})
	register(t, e, `{"name":"full","tasks":[{"id":"a","type":"gate"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
	const runs = 3
	var ids []string
	for range runs {
		ids = append(ids, start(t, e, "full").ID)
		recv(t, g.started, "a to start")
	}
	for _, id := range ids {
		waitFor(t, "a to be running", taskIn(t, db, id, "a", engine.TaskRunning))
	}

	_, err = db.LimitPages(ctx, 1)
	is.NoErr(err) // the database is full from now on
	close(g.open) // every attempt now ends with an output there is no room for
	waitFor(t, "a failed commit", func() bool { return !db.Health().Writable })
	<-time.After(fullWindow) // the window in which the attempts are counted

	lines := rec.matching(slog.LevelDebug, "")
	reloads := rec.matching(slog.LevelDebug, "commit failed: storage unavailable; reloading run")
	calls := int(g.calls.Load())
	t.Logf("while full for %v: %d log lines, %d reloads, %d attempts", fullWindow, len(lines), len(reloads), calls)
	is.True(len(lines) <= 16*runs)                      // a few lines per run, not thousands a second
	is.Equal(len(rec.matching(slog.LevelError, "")), 1) // one line said the storage failed
	is.True(calls <= 16*runs)                           // the handlers did not run in a loop either
	is.True(len(reloads) >= runs)                       // each run's lost completion reloaded it
	for _, r := range reloads {
		d, err := time.ParseDuration(attr(r, "delay"))
		is.NoErr(err)               // each reload says how long it waits
		is.True(d <= 5*time.Second) // within a bound
		t.Logf("%s failures=%s delay=%v", attr(r, "run_id"), attr(r, "failures"), d)
	}

	_, err = db.LimitPages(ctx, 1<<30)
	is.NoErr(err) // room again
	for _, id := range ids {
		run := waitRun(t, db, id)
		is.Equal(run.State, engine.RunCompleted) // every run completes by itself
		is.Equal(string(task(t, db, id, "a").Output), string(bigOutput))
		lost := filter(history(t, db, id), engine.EventTaskAttemptFailed, "a")
		is.True(len(lost) > 0) // the attempts whose completion found no room were recorded
		for _, ev := range lost {
			d := data(t, ev)
			is.Equal(d.Reason, engine.ReasonInterrupted)          // as lost with a commit, not abandoned by a dying process
			is.Equal(d.Error.Code, engine.CodeStorageUnavailable) // saying why
		}
		verify(t, db, id)
	}
}

func TestEngine_IdempotentStartRaceLogsNoError(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	rec := &logRecorder{}
	log := slog.New(rec)
	set := metrics.NewSet()
	path := filepath.Join(t.TempDir(), "race.db")
	db, err := store.Open(ctx, path, store.Options{Logger: log, Metrics: set})
	is.NoErr(err) // open store
	t.Cleanup(func() { db.Close() })
	e := startEngineWith(t, db, engine.Config{Logger: log, Metrics: set}, nil)
	register(t, e, `{"name":"once","tasks":[{"id":"a","type":"noop"}]}`)
	// A second server on the same file: one engine lets one start of a key
	// decide at a time, so only another server's start can race it in the
	// store.
	db2, err := store.Open(ctx, path, store.Options{Logger: log, Metrics: set})
	is.NoErr(err) // open the file again
	t.Cleanup(func() { db2.Close() })
	e2 := startEngineWith(t, db2, engine.Config{Logger: log, Metrics: set}, nil)

	// Starts race on one key until the store has refused one of them: the
	// loser's insert fails on the key and it answers with the winner's run.
	const racers = 8
	raced := false
	for round := 0; round < 50 && !raced; round++ {
		key := fmt.Sprintf("key-%d", round)
		ids := make([]string, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		begin := make(chan struct{})
		for i := range racers {
			on := []*engine.Engine{e, e2}[i%2]
			wg.Go(func() {
				<-begin
				run, _, err := on.StartRunIdempotent(ctx, engine.StartRequest{TenantID: tenant, Workflow: "once",
					IdempotencyKey: key, RequestHash: "h"})
				if err == nil {
					ids[i] = run.ID
				}
				errs[i] = err
			})
		}
		close(begin)
		wg.Wait()
		for i := range racers {
			is.NoErr(errs[i])        // every racer gets the run
			is.Equal(ids[i], ids[0]) // the same one
		}
		raced = set.GetOrCreateCounter("orchestrator_commit_errors_total").Get() > 0
	}
	is.True(raced) // the race happened: a commit failed
	for _, r := range rec.matching(slog.LevelWarn, "") {
		t.Errorf("logged at %v: %s %s", r.Level, r.Message, attr(r, "err"))
	}
	conflicts := rec.matching(slog.LevelDebug, "commit conflicted; reloading run")
	is.True(len(conflicts) > 0) // the lost race was logged at debug
	for _, r := range conflicts {
		is.True(!strings.Contains(attr(r, "err"), "constraint failed")) // without SQLite's text
	}
}

// waitKey marks the context of the Wait under test, so that reloadGate
// tells its loads from the engine's own.
type waitKey struct{}

// reloadGate wraps the real store: once armed, the next commit fails and
// writes nothing, as a disk error would; once stallNext is armed, the next
// commit is reported on stalled and waits until unstall is closed (then
// fails if armed to, else is written); while held, the loads the engine
// makes for itself (a reload's) wait until released; and each load of the
// marked Wait is reported on waitLoads.
type reloadGate struct {
	*store.DB
	failNext  atomic.Bool
	stallNext atomic.Bool
	stalled   chan struct{}
	unstall   chan struct{}
	hold      atomic.Bool
	held      chan struct{} // a load of the engine's is held
	release   chan struct{} // closed (once, by open): held loads go on
	opened    sync.Once
	waitLoads chan struct{}
}

// open stops holding loads and lets the held ones go on.
func (g *reloadGate) open() {
	g.hold.Store(false)
	g.opened.Do(func() { close(g.release) })
}

func (g *reloadGate) Commit(changes []engine.Change, done func(error)) {
	stall, fail := g.stallNext.CompareAndSwap(true, false), g.failNext.CompareAndSwap(true, false)
	if !stall && !fail {
		g.DB.Commit(changes, done)
		return
	}
	go func() {
		if stall {
			g.stalled <- struct{}{}
			<-g.unstall
		}
		if fail {
			done(errors.New("simulated disk I/O error"))
			return
		}
		g.DB.Commit(changes, done)
	}()
}

func (g *reloadGate) LoadRun(ctx context.Context, tenantID, runID string) (*engine.Run, []engine.Task, error) {
	if ctx.Value(waitKey{}) != nil {
		select {
		case g.waitLoads <- struct{}{}:
		default: // a Wait reading in a loop fills it: it failed already
		}
	} else if g.hold.Load() {
		g.held <- struct{}{}
		<-g.release
	}
	return g.DB.LoadRun(ctx, tenantID, runID)
}

// TestEngine_WaitDuringReload: a Wait on a run that is dropped from memory
// by a failed commit looks at the store once, waits until the reload puts
// the run back without looking again, and returns when the run completes.
func TestEngine_WaitDuringReload(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	g := &reloadGate{DB: db, held: make(chan struct{}, 1), release: make(chan struct{}), waitLoads: make(chan struct{}, 1024)}
	h := newHolder()
	e := startEngineWith(t, g, engine.Config{}, map[string]engine.Handler{"hold": h})
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), waitKey{}, true))
	t.Cleanup(func() { // before the engine stops, which waits for the reload
		cancel()
		g.open()
	})
	register(t, e, `{"name":"fragile","tasks":[{"id":"a","type":"hold"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
	run := start(t, e, "fragile")
	recv(t, h.started, "a to start")
	waitFor(t, "a to be running", taskIn(t, db, run.ID, "a", engine.TaskRunning))

	type result struct {
		run *engine.Run
		err error
	}
	waited := make(chan result, 1)
	go func() {
		r, err := e.Wait(ctx, tenant, run.ID)
		waited <- result{r, err}
	}()
	waitFor(t, "Wait to subscribe", func() bool { return e.Waiters(run.ID) == 1 })
	g.hold.Store(true)
	g.failNext.Store(true)
	send(t, h.release, "release a")                        // its completion is lost: the run is dropped and reloaded
	recv(t, g.held, "the reload to load the run")          // and the reload is held
	recv(t, g.waitLoads, "Wait to look at the store once") // Wait saw the run leave memory
	// While the reload is held, Wait waits to be told; one that looked
	// again and again would show here within a few milliseconds.
	select {
	case <-g.waitLoads:
		t.Fatal("Wait read the store again while the run was being reloaded")
	case <-time.After(200 * time.Millisecond):
	}

	g.open()                                              // the reload goes on
	is.Equal(recv(t, h.started, "a to start again"), "a") // the run is back and retries the attempt it lost
	send(t, h.release, "release a again")
	res := recv(t, waited, "Wait to return")
	is.NoErr(res.err)                            // Wait returns
	is.Equal(res.run.State, engine.RunCompleted) // with the run completed
	is.Equal(e.Waiters(run.ID), 0)               // and its subscription closed
}
