package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/orchestrator/orchestrator/schema"
)

// ErrSchemaMismatch is returned by a read-only Open of a database whose
// schema is not the one this binary's migrations make: older (run
// migrate), newer, or none at all.
var ErrSchemaMismatch = errors.New("the database schema is not this binary's")

// openReadOnly opens the existing database at path with read connections
// only (mode=ro, query_only): it never creates, migrates or writes the
// database, so offline commands can read a database that a server is
// serving, or one on a read-only file. SQLite may still create the -wal and
// -shm files next to a WAL database, with nothing in them. A schema other
// than this binary's is refused with ErrSchemaMismatch and left as it is.
func openReadOnly(ctx context.Context, path string, opts Options) (*DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if opts.Readers <= 0 {
		opts.Readers = max(2, runtime.NumCPU())
	}
	r, err := sql.Open("sqlite", "file:"+uriPath(path)+"?mode=ro&_pragma=busy_timeout(5000)&_pragma=query_only(1)&_pragma=mmap_size(268435456)")
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	r.SetConnMaxIdleTime(0)
	if err := checkSchema(ctx, r); err != nil {
		r.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// closed: every write fails at once with engine.ErrClosed.
	return &DB{path: path, r: r, closed: true, closedCh: make(chan struct{}), kick: make(chan struct{}, 1),
		health: health{log: opts.Logger, now: time.Now}}, nil
}

// checkSchema refuses, without changing anything, a database whose applied
// migrations are not exactly this binary's.
func checkSchema(ctx context.Context, db *sql.DB) error {
	var tables int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'goose_db_version'`).Scan(&tables)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if tables == 0 {
		return fmt.Errorf("%w: it has none (not a database of this program, or never migrated)", ErrSchemaMismatch)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, schema.FS)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	current, target, err := p.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case current > target:
		return fmt.Errorf("%w: it is at version %d, newer than this binary's %d", ErrSchemaMismatch, current, target)
	case pending:
		return fmt.Errorf("%w: it is at version %d and needs migrations up to %d: run orchestrator migrate", ErrSchemaMismatch, current, target)
	}
	return nil
}
