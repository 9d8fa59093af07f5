package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
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

// count returns how many records at level or above have msg.
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

// bigStart is the first change of a run whose input needs new pages.
func bigStart(t *testing.T, plan *definition.Plan, id string) engine.Change {
	input, err := json.Marshal(map[string]string{"pad": strings.Repeat("x", 64<<10)})
	if err != nil {
		t.Fatal(err)
	}
	return newHistory(t, plan, "default", id).next(ev{typ: engine.EventRunCreated,
		data: &engine.EventData{Workflow: "wf", Version: 1, Input: input}}, evStarted)
}

func TestStore_StorageUnavailable(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	rec := &logRecorder{}
	set := metrics.NewSet()
	db := openTestStoreWith(t, store.Options{Logger: slog.New(rec), Metrics: set})
	_, plan := putDefinition(t, db, "default", wfJSON)
	is.True(db.Health().Writable) // a fresh store writes

	_, err := db.LimitPages(ctx, 0)
	is.True(err != nil) // a cap below one page is refused
	pages, err := db.LimitPages(ctx, 1)
	is.NoErr(err)      // cap the file
	is.True(pages > 1) // at the pages in use, not below
	for i := range 3 {
		err := commit(t, db, bigStart(t, plan, fmt.Sprintf("full-%d", i)))
		is.True(errors.Is(err, engine.ErrStorageUnavailable)) // no room: storage unavailable
		is.True(!errors.Is(err, engine.ErrConflict))          // not a conflict
		_, _, err = db.LoadRun(ctx, "default", fmt.Sprintf("full-%d", i))
		is.True(errors.Is(err, engine.ErrNotFound)) // and nothing of it was written
	}
	h := db.Health()
	is.True(!h.Writable)                                                   // the store says so
	is.Equal(h.Reason, "database or disk is full")                         // and why
	is.True(!h.Since.IsZero())                                             // since when
	is.Equal(metricValue(t, set, "orchestrator_storage_unavailable"), 1.0) // and the gauge
	is.Equal(rec.count(slog.LevelError, ""), 1)                            // one line for three failed commits
	is.Equal(rec.count(slog.LevelInfo, "storage unavailable: writes fail until it recovers"), 1)

	_, err = db.LimitPages(ctx, 1<<30)
	is.NoErr(err)                                       // room again
	is.NoErr(commit(t, db, bigStart(t, plan, "roomy"))) // as large a write lands now
	deadline := time.Now().Add(patience)
	for !db.Health().Writable {
		if time.Now().After(deadline) {
			t.Fatalf("storage still reported unavailable after %v", patience)
		}
		time.Sleep(10 * time.Millisecond)
	}
	is.Equal(db.Health(), engine.StorageHealth{Writable: true})            // back, with no reason left
	is.Equal(metricValue(t, set, "orchestrator_storage_unavailable"), 0.0) // the gauge too
	is.Equal(rec.count(slog.LevelInfo, "storage available again"), 1)      // one line for the recovery
	is.Equal(rec.count(slog.LevelError, ""), 1)                            // and no other error
}
