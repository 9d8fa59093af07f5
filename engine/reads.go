package engine

import "context"

// The engine's reads: what the API answers from. They go to the store
// through the engine so that the API depends on the engine alone, and every
// one is scoped to a tenant: another tenant's run, event or definition is
// ErrNotFound.

// GetDefinition returns one version of a tenant's definition (0 = the
// latest), or ErrNotFound.
func (e *Engine) GetDefinition(ctx context.Context, tenantID, name string, version int) (*StoredDefinition, error) {
	return e.store.GetDefinition(ctx, tenantID, name, version)
}

// ListDefinitions returns the latest version of each of a tenant's
// definitions, by name.
func (e *Engine) ListDefinitions(ctx context.Context, tenantID string) ([]StoredDefinition, error) {
	return e.store.ListDefinitions(ctx, tenantID)
}

// GetRun returns a tenant's run with its tasks in topological order, as it
// is durable, or ErrNotFound.
func (e *Engine) GetRun(ctx context.Context, tenantID, runID string) (*Run, []Task, error) {
	return e.store.LoadRun(ctx, tenantID, runID)
}

// GetRunRow returns a tenant's run without its tasks, or ErrNotFound.
func (e *Engine) GetRunRow(ctx context.Context, tenantID, runID string) (*Run, error) {
	return e.store.GetRunRow(ctx, tenantID, runID)
}

// ListRuns returns one page of a tenant's run summaries (no input or
// output) and the cursor of the next page, nil on the last.
func (e *Engine) ListRuns(ctx context.Context, f RunFilter) ([]Run, *RunCursor, error) {
	return e.store.ListRuns(ctx, f)
}

// RunEvents returns up to limit events of a tenant's run after afterSeq, in
// seq order (limit <= 0: all).
func (e *Engine) RunEvents(ctx context.Context, tenantID, runID string, afterSeq int64, limit int) ([]Event, error) {
	return e.store.RunEvents(ctx, tenantID, runID, afterSeq, limit)
}

// StreamEvents calls fn for every event of a tenant matching f, stopping at
// fn's first error, which it returns.
func (e *Engine) StreamEvents(ctx context.Context, f EventFilter, fn func(*Event) error) error {
	return e.store.StreamEvents(ctx, f, fn)
}

// Ping checks that the store answers a read.
func (e *Engine) Ping(ctx context.Context) error { return e.store.Ping(ctx) }

// StorageHealth reports whether the store's writes succeed.
func (e *Engine) StorageHealth() StorageHealth { return e.store.Health() }

// VerifyRun folds a tenant's run from its events and checks the result
// against its stored rows and its hash chain.
func (e *Engine) VerifyRun(ctx context.Context, tenantID, runID string) error {
	return VerifyRun(ctx, e.store, tenantID, runID)
}
