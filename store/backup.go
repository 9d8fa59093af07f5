package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"modernc.org/sqlite"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/schema"
)

var _ engine.Backuper = (*DB)(nil)

// Errors of Backup and Restore.
var (
	// ErrInUse: another connection, in this process or another (a server,
	// a replication tool), has the database open.
	ErrInUse = errors.New("database in use")
	// ErrCheckFailed: a copy does not pass its integrity check or a run in
	// it does not verify.
	ErrCheckFailed = errors.New("the copy does not pass its checks")
)

// Backup writes a consistent snapshot of the database to path while the
// writer goes on committing: SQLite's online backup copies every page of one
// read transaction's snapshot through a read connection, in one step (a
// copy made in several steps would start over at each commit of the
// writer). The copy is written beside path, synced, checked (CheckFile) and
// only then linked to path, so path is never a partial copy; path must not
// exist. A copy that does not pass its checks is still put at path, since it
// is what the database holds, and the report says why. The snapshot holds a
// read transaction for as long as the copy takes, which keeps the WAL from
// being checkpointed past it meanwhile.
func (db *DB) Backup(ctx context.Context, path string) (*engine.BackupReport, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("backup: %s exists: choose a new file", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup: %w", err)
	}
	tmp, err := tempBeside(path, "backup")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer removeDB(tmp) // after a link to path, only the temporary name goes
	if err := db.snapshot(ctx, tmp); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	report, err := CheckFile(ctx, tmp)
	if err != nil {
		return nil, fmt.Errorf("backup: check the copy: %w", err)
	}
	// A link, not a rename: it fails rather than replace a file created at
	// path meanwhile.
	if err := os.Link(tmp, path); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	report.Path = path
	return report, nil
}

// snapshot copies the database to the empty file at path with SQLite's
// online backup, through one read connection.
func (db *DB) snapshot(ctx context.Context, path string) error {
	conn, err := db.r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		src, ok := dc.(interface {
			NewBackup(dstURI string) (*sqlite.Backup, error)
		})
		if !ok {
			return errors.New("snapshot: the sqlite driver has no online backup")
		}
		b, err := src.NewBackup("file:" + uriPath(path))
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		if _, err := b.Step(-1); err != nil {
			b.Finish()
			return fmt.Errorf("snapshot: %w", err)
		}
		if err := b.Finish(); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		return nil
	})
}

// CheckFile opens the database at path read-only (its schema must be this
// binary's), runs SQLite's integrity check and verifies every run, and says
// what it holds. It returns an error only when the checks could not run;
// what they found is in the report.
func CheckFile(ctx context.Context, path string) (*engine.BackupReport, error) {
	db, err := Open(ctx, path, Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	report, err := db.check(ctx)
	if cerr := db.Close(); err == nil && cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	report.Path = path
	return report, nil
}

// check runs the integrity check and verifies every run.
func (db *DB) check(ctx context.Context) (*engine.BackupReport, error) {
	var r engine.BackupReport
	problems, err := db.IntegrityCheck(ctx)
	if err != nil {
		return nil, err
	}
	r.Check.Integrity = problems
	n, err := engine.Verify(ctx, db, func(_, runID string, err error) {
		r.Check.RunsDiffer = append(r.Check.RunsDiffer, engine.RunProblem{RunID: runID, Problem: err.Error()})
	})
	if err != nil {
		return nil, err
	}
	r.Check.RunsChecked = n
	s, err := db.Summary(ctx)
	if err != nil {
		return nil, err
	}
	r.Summary = *s
	return &r, nil
}

// IntegrityCheck runs SQLite's PRAGMA integrity_check and returns the
// problems it names; none means the file is sound.
func (db *DB) IntegrityCheck(ctx context.Context) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return nil, fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("integrity check: %w", err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("integrity check: %w", err)
	}
	return problems, nil
}

// Summary says what the database holds, from one read transaction.
func (db *DB) Summary(ctx context.Context) (*engine.DatabaseSummary, error) {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	defer tx.Rollback()
	s := engine.DatabaseSummary{Runs: map[engine.RunState]int{}}
	var pages, pageSize int64
	for _, q := range []struct {
		sql string
		to  *int64
	}{
		{`SELECT COALESCE(max(version_id), 0) FROM goose_db_version WHERE is_applied`, &s.SchemaVersion},
		{`PRAGMA page_count`, &pages},
		{`PRAGMA page_size`, &pageSize},
		{`SELECT count(DISTINCT tenant_id) FROM runs`, &s.Tenants},
		{`SELECT count(*) FROM workflows`, &s.Definitions},
		{`SELECT count(*) FROM events`, &s.Events},
		{`SELECT COALESCE(max(id), 0) FROM events`, &s.LastEventID},
		{`SELECT count(*) FROM checkpoints`, &s.Checkpoints},
	} {
		if err := tx.QueryRowContext(ctx, q.sql).Scan(q.to); err != nil {
			return nil, fmt.Errorf("summary: %w", err)
		}
	}
	s.Bytes = pages * pageSize
	rows, err := tx.QueryContext(ctx, `SELECT state, count(*) FROM runs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("summary: %w", err)
		}
		s.Runs[engine.RunState(state)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	return &s, nil
}

// LatestSchemaVersion is the version of the last migration this binary has.
func LatestSchemaVersion() int64 {
	entries, _ := fs.ReadDir(schema.FS, ".")
	var v int64
	for _, e := range entries {
		n, err := strconv.ParseInt(strings.SplitN(e.Name(), "_", 2)[0], 10, 64)
		if err == nil && strings.HasSuffix(e.Name(), ".sql") {
			v = max(v, n)
		}
	}
	return v
}

// tempBeside creates an empty file in path's directory, under a hidden name
// that says what it is for, and returns its name.
func tempBeside(path, what string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"."+what+"-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// removeDB removes a database file and what SQLite may have left beside it.
func removeDB(path string) {
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		os.Remove(p)
	}
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// syncDir makes the names created in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
