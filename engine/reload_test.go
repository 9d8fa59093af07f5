package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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

func TestEngine_IdempotentStartRaceLogsNoError(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	rec := &logRecorder{}
	log := slog.New(rec)
	set := metrics.NewSet()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "race.db"), store.Options{Metrics: set})
	is.NoErr(err) // open store
	t.Cleanup(func() { db.Close() })
	e := startEngineWith(t, db, engine.Config{Logger: log, Metrics: set}, nil)
	register(t, e, `{"name":"once","tasks":[{"id":"a","type":"noop"}]}`)

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
			wg.Go(func() {
				<-begin
				run, _, err := e.StartRunIdempotent(ctx, engine.StartRequest{TenantID: tenant, Workflow: "once",
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
