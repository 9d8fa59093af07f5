package engine

import (
	"context"
	"encoding/json"
	"time"
)

// Store is the persistence the engine needs. The store package implements it
// on SQLite; every method is safe for concurrent use.
type Store interface {
	// Commit queues changes for the writer and calls done once they are durable,
	// or with the error that prevented it. Changes of one run are committed in
	// the order Commit is called. A change whose PrevSeq does not match the
	// stored run fails with ErrConflict and leaves nothing of itself written.
	// done never runs on the caller's goroutine (so the caller may hold a
	// lock that done takes) and must not block.
	Commit(changes []Change, done func(error))

	// PutDefinition stores a definition as the next version of its name, unless
	// it equals the latest version, which is returned with created false.
	PutDefinition(ctx context.Context, d *StoredDefinition) (stored *StoredDefinition, created bool, err error)

	// GetDefinition returns one version of a definition (0 = the latest), or ErrNotFound.
	GetDefinition(ctx context.Context, tenantID, name string, version int) (*StoredDefinition, error)

	// LoadRun returns a run and its tasks, or ErrNotFound.
	LoadRun(ctx context.Context, runID string) (*Run, []Task, error)

	// LoadActiveRuns calls fn for every run that is not in a terminal state.
	LoadActiveRuns(ctx context.Context, fn func(*Run, []Task) error) error

	// FindIdempotencyKey returns the run a tenant's idempotency key started
	// and the hash of the request that did, or ErrNotFound.
	FindIdempotencyKey(ctx context.Context, tenantID, key string) (runID, requestHash string, err error)
}

// Change is what one decision writes for one run: its new events and the
// projection rows they produce, committed together or not at all.
type Change struct {
	Run     Run   // the run row after Events
	Insert  bool  // a new run: insert Run and Tasks instead of updating them
	PrevSeq int64 // compare-and-set: the run's last seq before
	// PrevState is the run's state before Events; when it equals Run.State
	// the store need not touch the indexes on state.
	PrevState RunState
	Tasks     []Task // the task rows Events changed (all of them when Insert)
	Events    []Event
	// With Insert: the client's idempotency key, stored in the same
	// transaction; a key already stored fails the change with ErrConflict.
	IdempotencyKey string
	RequestHash    string
}

// StoredDefinition is a definition version as the store keeps it.
type StoredDefinition struct {
	TenantID   string          `json:"tenant_id"`
	Name       string          `json:"name"`
	Version    int             `json:"version"`
	Definition json.RawMessage `json:"definition"` // canonical JSON of a Definition
	Hash       string          `json:"hash"`       // sha256 of Definition
	CreatedAt  time.Time       `json:"created_at"`
}
