// Package triggertest holds what the tests of stream triggers share: a
// real store and engine in a temporary directory, the runs a trigger
// started, and waiting on a condition with a deadline.
package triggertest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// Definition is the workflow World registers: one noop task.
const Definition = `{"name":"onmsg","tasks":[{"id":"a","type":"noop"}]}`

// IdleDefinition is a workflow whose runs wait an hour once started:
// benchmarks of starts register it, so that running the runs does not
// compete with starting them.
const IdleDefinition = `{"name":"idle","tasks":[{"id":"a","type":"sleep","config":{"duration":"1h"}}]}`

// World is a store in t.TempDir(), an engine on it and its triggers, with
// Definition registered in tenant default; all closed at cleanup.
type World struct {
	DB       *store.DB
	Engine   *engine.Engine
	Triggers *engine.Triggers
}

// NewWorld makes a World.
func NewWorld(t testing.TB) *World {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "t.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	eng, err := engine.New(engine.Config{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Stop(context.Background()) })
	if _, _, err := eng.RegisterDefinition(ctx, engine.DefaultTenantID, []byte(Definition)); err != nil {
		t.Fatal(err)
	}
	return &World{DB: db, Engine: eng, Triggers: &engine.Triggers{Store: db, Engine: eng}}
}

// Runs returns the run ids a trigger of tenant default started, by their
// origin's ref; a ref with two runs fails the test.
func Runs(t testing.TB, s engine.Querier, kind engine.OriginKind, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	f := engine.RunFilter{TenantID: engine.DefaultTenantID, OriginKind: kind, OriginID: name, Limit: engine.MaxPage}
	for {
		page, next, err := s.ListRuns(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			if _, dup := out[r.Origin.Ref]; dup {
				t.Errorf("two runs of message %s", r.Origin.Ref)
			}
			out[r.Origin.Ref] = r.ID
		}
		if next == nil {
			return out
		}
		f.Cursor = next
	}
}

// WaitFor polls cond until it holds, failing the test after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
