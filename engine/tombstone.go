package engine

import (
	"context"
	"errors"
	"time"
)

// Tombstone is what a run removed by retention leaves in the live
// database: what it was, how long its log was and its final hash, and the
// archive that holds it with the SHA-256 of its record there. The skeleton
// of its log (each event's id, seq and hash) stays too, so that signed
// checkpoints still verify.
type Tombstone struct {
	TenantID     string    `json:"tenant_id"`
	RunID        string    `json:"run_id"`
	Workflow     string    `json:"workflow"`
	Version      int       `json:"version"`
	State        RunState  `json:"state"`
	CreatedAt    time.Time `json:"created_at"`
	EndedAt      time.Time `json:"ended_at"`
	Events       int64     `json:"events"`
	FinalHash    string    `json:"final_hash"`
	Archive      string    `json:"archive"`       // the archive file, relative to the archive directory
	RecordSHA256 string    `json:"record_sha256"` // of the run's line in it
	RemovedAt    time.Time `json:"removed_at"`
}

// ErrArchived: the run was removed by retention; its tombstone says where
// it went.
var ErrArchived = errors.New("run archived")

// ArchivedError is a run that retention removed: its tombstone.
type ArchivedError struct{ Tombstone *Tombstone }

func (e *ArchivedError) Error() string {
	return "run " + e.Tombstone.RunID + " was archived to " + e.Tombstone.Archive + " at " + FormatTime(e.Tombstone.RemovedAt)
}

func (e *ArchivedError) Unwrap() error { return ErrArchived }

// RetentionStore is what retention reads and removes.
type RetentionStore interface {
	// LogTenants calls fn for every tenant with events, by id.
	LogTenants(ctx context.Context, fn func(tenantID string) error) error

	// ExpiredRuns returns up to limit ids of a tenant's terminal runs that
	// ended before endedBefore, oldest first.
	ExpiredRuns(ctx context.Context, tenantID string, endedBefore time.Time, limit int) ([]string, error)

	// RemoveRuns records each tombstone and, in the same transaction,
	// copies its run's log skeleton and deletes the run's events, tasks,
	// idempotency keys and row. A run that moved on since its tombstone
	// was made (another last seq or final hash, or not terminal) is left
	// as it is and not counted. It returns how many runs it removed.
	RemoveRuns(ctx context.Context, tombstones []Tombstone) (int, error)

	// GetTombstone returns a tenant's tombstone of a run, or ErrNotFound.
	GetTombstone(ctx context.Context, tenantID, runID string) (*Tombstone, error)
}

// Archived returns the tombstone of a tenant's run removed by retention as
// an *ArchivedError, or ErrNotFound when there is none (or the store keeps
// no tombstones).
func (e *Engine) Archived(ctx context.Context, tenantID, runID string) error {
	rs, ok := e.store.(RetentionStore)
	if !ok {
		return ErrNotFound
	}
	ts, err := rs.GetTombstone(ctx, tenantID, runID)
	if err != nil {
		return err
	}
	return &ArchivedError{Tombstone: ts}
}
