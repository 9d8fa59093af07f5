package engine_test

import (
	"context"
	"encoding/json"
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
