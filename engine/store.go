package engine

import (
	"context"
	"encoding/json"
	"time"
)

// Store is everything the engine, the API and the operator commands ask of
// their storage: what a backend implements, and what the conformance suite
// in store/storetest holds it to. The store package implements it on SQLite.
//
// Every method is safe for concurrent use. Times come back in UTC, truncated
// to the microsecond. Tenant data is read through the tenant: a run, event or
// key of another tenant is not found, never returned.
type Store interface {
	Writer
	Reader
	Querier
	Auditor

	// Ping checks that the store answers a read.
	Ping(ctx context.Context) error

	// Health reports whether writes succeed, as the last writes found it.
	Health() StorageHealth
}

// Writer is the write side of a Store.
type Writer interface {
	// Commit queues changes for the writer and calls done once they are
	// durable, or with the error that prevented it. The changes of one call
	// are written all together or not at all; changes of one run are
	// committed in the order Commit is called. A change whose PrevSeq does
	// not match the stored run, that inserts a run that exists, that repeats
	// a stored seq, that names a definition version not stored, that stores
	// (Change.Definition) a definition version taken already, whose rows a
	// state machine could not have produced (a terminal state without
	// ended_at), or whose idempotency key is stored already fails with
	// ErrConflict; one that updates a task row not stored fails with
	// ErrNotFound; after the store is closed, Commit fails with ErrClosed. A
	// change that fails writes nothing and fails alone: other calls' changes
	// committed in the same transaction are unaffected. done never runs on
	// the caller's goroutine (so the caller may hold a lock that done takes)
	// and must not block.
	Commit(changes []Change, done func(error))

	// PutDefinition stores a definition as the next version of its name,
	// unless it has the hash of the latest version, which is returned with
	// created false. Concurrent puts of one name get distinct versions.
	PutDefinition(ctx context.Context, d *StoredDefinition) (stored *StoredDefinition, created bool, err error)
}

// Reader is what the engine reads to run: definitions, runs to recover or
// load again, and idempotency keys.
type Reader interface {
	// GetDefinition returns one version of a definition (0 = the latest), or ErrNotFound.
	GetDefinition(ctx context.Context, tenantID, name string, version int) (*StoredDefinition, error)

	// LoadRun returns a run of a tenant and its tasks in topological order
	// (by Pos), or ErrNotFound.
	LoadRun(ctx context.Context, tenantID, runID string) (*Run, []Task, error)

	// LoadActiveRuns calls fn for every run of every tenant that is not in a
	// terminal state, with all its tasks, and stops at fn's first error,
	// which it returns. fn may write to the store.
	LoadActiveRuns(ctx context.Context, fn func(*Run, []Task) error) error

	// FindIdempotencyKey returns the run a tenant's idempotency key started
	// and the hash of the request that did, or ErrNotFound.
	FindIdempotencyKey(ctx context.Context, tenantID, key string) (runID, requestHash string, err error)
}

// Querier is what the API reads to answer: lists, pages and histories.
type Querier interface {
	// ListDefinitions returns the latest version of every definition of a
	// tenant, by name; Definition may be left empty.
	ListDefinitions(ctx context.Context, tenantID string) ([]StoredDefinition, error)

	// GetRunRow returns a run of a tenant without its tasks, or ErrNotFound:
	// for callers that need only the run, so that a run of thousands of tasks
	// is not read for each page of its history.
	GetRunRow(ctx context.Context, tenantID, runID string) (*Run, error)

	// RunEvents returns up to limit events of a tenant's run with seq >
	// afterSeq, in seq order (limit <= 0: all). A run it does not hold has
	// no events.
	RunEvents(ctx context.Context, tenantID, runID string, afterSeq int64, limit int) ([]Event, error)

	// ListRuns returns one page of run summaries, runs without Input and
	// Output (a payload may be a megabyte; LoadRun has them), and the cursor
	// of the next page (nil on the last). A filter Validate refuses is an
	// error.
	ListRuns(ctx context.Context, f RunFilter) ([]Run, *RunCursor, error)

	// ListEvents returns up to f.Limit events matching f, in the filter's
	// order. A filter Validate(true) refuses is an error.
	ListEvents(ctx context.Context, f EventFilter) ([]Event, error)

	// StreamEvents calls fn for every event matching f, in the filter's
	// order, up to f.Limit when it is positive, and stops at fn's first
	// error, which it returns. It holds no read open for long, whatever
	// the number of events. A filter Validate(false) refuses is an error.
	StreamEvents(ctx context.Context, f EventFilter, fn func(*Event) error) error
}

// Auditor is what verification and the operator commands read: every run of
// every tenant, with its rows and its log (see Verify).
type Auditor interface {
	// EachRun calls fn with the tenant and id of every run, by id, and stops
	// at fn's first error, which it returns. fn may read the store.
	EachRun(ctx context.Context, fn func(tenantID, runID string) error) error

	// RunTenant returns the tenant of a run, or ErrNotFound: for operators
	// who name a run by its id alone.
	RunTenant(ctx context.Context, runID string) (string, error)

	GetDefinition(ctx context.Context, tenantID, name string, version int) (*StoredDefinition, error)
	LoadRun(ctx context.Context, tenantID, runID string) (*Run, []Task, error)
	RunEvents(ctx context.Context, tenantID, runID string, afterSeq int64, limit int) ([]Event, error)
}

// StorageHealth is whether a store can write, as its writes last found it.
type StorageHealth struct {
	Writable bool
	// Since is when writes began to fail for the storage's sake; zero
	// while writable.
	Since time.Time
	// Reason says why in words of the store's own (never a driver's
	// text): "database or disk is full", "disk I/O error", ...
	Reason string
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
	// With Insert: a definition version to store in the same transaction (a
	// run started with an inline definition); a version already stored
	// under its name fails the change with ErrConflict.
	Definition *StoredDefinition
	// With Insert: a schedule's change written in the same transaction (a
	// slot recorded as fired by this run), under the rules of
	// ScheduleStore.WriteSchedule: a conflict fails the whole change.
	Schedule *ScheduleChange
}

// StoredDefinition is a definition version as the store keeps it.
type StoredDefinition struct {
	TenantID   string          `json:"tenant_id"`
	Name       string          `json:"name"`
	Version    int             `json:"version"`
	Definition json.RawMessage `json:"definition"` // canonical JSON of a Definition
	Hash       string          `json:"hash"`       // sha256 of Definition
	CreatedAt  time.Time       `json:"created_at"`
	// CreatedBy is who registered this version (an API key's actor, the
	// engine's "" for versions stored before it was recorded), OnBehalf
	// whom they acted for, and Policy the decision that allowed it.
	CreatedBy string          `json:"created_by,omitempty"`
	OnBehalf  string          `json:"on_behalf,omitempty"`
	Policy    *PolicyDecision `json:"policy,omitempty"`
}
