package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// ParseURL treats file://localhost/PATH as the local file /PATH but
// sqlite://localhost/PATH as the relative path "localhost/PATH", and takes any
// other host of sqlite://HOST/PATH silently as a relative directory instead of
// refusing it as file://HOST/ is refused.
func TestReviewParseURLSqliteHost(t *testing.T) {
	got, err := store.ParseURL("sqlite://localhost/var/lib/orchestrator.db")
	if err != nil || got != "/var/lib/orchestrator.db" {
		t.Errorf("sqlite://localhost/var/lib/orchestrator.db -> %q, %v; want /var/lib/orchestrator.db (as file://localhost/... gives)", got, err)
	}
	if got, err := store.ParseURL("sqlite://dbhost/var/lib/orchestrator.db"); err == nil {
		t.Errorf("sqlite://dbhost/var/lib/orchestrator.db -> %q; want an error naming the remote host (file://dbhost/... is refused)", got)
	}
}

// DATABASE_URL=sqlite::memory: (or :memory:, file::memory:) is accepted, but
// the writer connection and every reader connection each open their own
// private in-memory database: what is committed is never visible to reads.
func TestReviewParseURLMemoryDatabase(t *testing.T) {
	path, err := store.ParseURL("sqlite::memory:")
	if err != nil {
		return // refused: fine
	}
	ctx := context.Background()
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		return // refused: fine
	}
	defer db.Close()
	if _, _, err := db.PutDefinition(ctx, &engine.StoredDefinition{TenantID: "t", Name: "wf",
		Definition: []byte(`{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`), Hash: "h", CreatedAt: time.Now()}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if _, err := db.GetDefinition(ctx, "t", "wf", 0); err != nil {
		t.Errorf("DATABASE_URL sqlite::memory: is accepted and a committed definition cannot be read back: %v", err)
	}
}
