package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
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

// count returns how many records at level or above have msg ("" = any).
func (r *logRecorder) count(level slog.Level, msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.Level >= level && (msg == "" || rec.Message == msg) {
			n++
		}
	}
	return n
}

// roomless is a handler whose attempts wait until it opens, then return an
// output a full database has no room for.
type roomless struct {
	open    chan struct{}
	started chan string
	calls   atomic.Int32
}

var roomlessOutput = json.RawMessage(`{"pad":"` + strings.Repeat("x", 32<<10) + `"}`)

func (h *roomless) Run(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
	h.calls.Add(1)
	h.started <- a.RunID
	select {
	case <-h.open:
		return roomlessOutput, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fullWindow is how long the test keeps the database full while it counts
// log lines: an unbounded retry loop shows by the thousands in it.
const fullWindow = 1500 * time.Millisecond

// health is the body of GET /health.
type health struct {
	Status, Database, Storage, Reason, Since string
}

func TestAPI_StorageUnavailable(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	rec := &logRecorder{}
	log := slog.New(rec)
	set := metrics.NewSet()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "full.db"), store.Options{Metrics: set, Logger: log})
	is.NoErr(err) // open store
	t.Cleanup(func() { db.Close() })
	eng, err := engine.New(engine.Config{Store: db, ExternalTypes: true, Metrics: set, Logger: log})
	is.NoErr(err) // new engine
	h := &roomless{open: make(chan struct{}), started: make(chan string, 1024)}
	is.NoErr(eng.Register("roomless", h)) // register the handler
	is.NoErr(eng.Start(ctx))              // start the engine
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Stop(ctx)
	})
	ts := serve(t, (&api.Server{Engine: eng, Metrics: set, Logger: log}).Handler(), db, eng)
	ts.register(t, `{"name":"fill","tasks":[{"id":"a","type":"roomless"},{"id":"b","type":"noop","depends_on":["a"]}]}`)

	const runs = 3
	var acked []string // runs the API answered 201 for
	for range runs {
		acked = append(acked, ts.startRun(t, `{"workflow":"fill","input":{"n":1}}`).ID)
		select {
		case <-h.started:
		case <-time.After(waitTimeout):
			t.Fatal("timed out waiting for a to start")
		}
	}
	for _, id := range acked {
		ts.waitTask(t, id, "a", engine.TaskRunning, 1)
	}
	_, err = db.LimitPages(ctx, 1)
	is.NoErr(err) // no room from now on
	close(h.open) // the running attempts end with outputs there is no room for

	big := `{"workflow":"fill","input":{"pad":"` + strings.Repeat("y", 64<<10) + `"}}`
	r := ts.postJSON(t, "/v1/run", big)
	p := problemOf(t, r, http.StatusServiceUnavailable, wire.CodeStorageUnavailable)
	is.Equal(r.Header.Get("Retry-After"), "5")                   // when to try again
	is.True(!strings.Contains(strings.ToLower(p.Detail), "sql")) // no storage text reaches the client
	is.True(!strings.Contains(string(r.Body), "(13)"))           // nor the driver's code
	is.Equal(ts.countRows(t, "runs"), runs)                      // and nothing was written

	var hb health
	ts.getJSON(t, "/health", &hb)
	is.Equal(hb.Status, "degraded")                 // reads answer, writes do not
	is.Equal(hb.Storage, "unavailable")             // the storage is the trouble
	is.Equal(hb.Reason, "database or disk is full") // and why
	_, err = time.Parse(time.RFC3339Nano, hb.Since)
	is.NoErr(err) // since when

	<-time.After(fullWindow) // the window in which the log lines are counted
	lines := rec.count(slog.LevelDebug, "")
	errorLines := rec.count(slog.LevelError, "")
	reloads := rec.count(slog.LevelDebug, "commit failed: storage unavailable; reloading run")
	t.Logf("while full for %v: %d log lines, %d at error, %d reloads, %d attempts", fullWindow, lines, errorLines, reloads, h.calls.Load())
	is.True(lines <= 20*runs)               // a few lines per run, not thousands a second
	is.Equal(errorLines, 1)                 // one said the storage failed
	is.True(reloads >= runs)                // each run's lost completion reloaded it, after a backoff
	is.True(int(h.calls.Load()) <= 16*runs) // and the tasks did not rerun in a loop

	_, err = db.LimitPages(ctx, 1<<30)
	is.NoErr(err) // room again
	for _, id := range acked {
		run := ts.waitState(t, id, engine.RunCompleted) // every acknowledged run completes by itself
		is.Equal(string(run.task("a").Output), string(roomlessOutput))
		is.NoErr(engine.VerifyRun(ctx, db, "default", id)) // its history is whole
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		ts.getJSON(t, "/health", &hb)
		if hb.Status == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health still %+v after %v", hb, waitTimeout)
		}
		time.Sleep(pollInterval)
	}
	is.Equal(hb.Storage, "ok")                                        // writes succeed again
	is.Equal(rec.count(slog.LevelInfo, "storage available again"), 1) // and one line said so
	ts.startRun(t, big)                                               // the refused start goes through now
}
