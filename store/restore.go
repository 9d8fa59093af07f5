package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/orchestrator/orchestrator/engine"
)

// Restore puts a copy of the database file from in place of the database
// at to, after checking the copy (the migrations this binary knows are
// applied to the copy, never to from, and then CheckFile). It refuses when a check
// fails (ErrCheckFailed, with the report saying why) and when another
// connection has to open (ErrInUse): it asks SQLite for an exclusive lock on
// to, which a server, a verify or a replication tool holding the database
// open prevents. The database that was at to, with its write-ahead log, is
// moved aside, not deleted; the report names where. Restore cannot stop a
// server from opening to while it runs: stop the servers first.
func Restore(ctx context.Context, from, to string) (*engine.BackupReport, error) {
	if err := checkRestorable(from, to); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	tmp, err := tempBeside(to, "restore")
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer removeDB(tmp) // after the rename to to, nothing is left under this name
	if err := copyFile(from, tmp); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := checkBackupSchema(ctx, tmp); err != nil {
		return nil, fmt.Errorf("restore: %s: %w", from, err)
	}
	if err := Migrate(ctx, tmp); err != nil { // a backup of an older binary's database
		return nil, fmt.Errorf("restore: %s: %w", from, err)
	}
	report, err := CheckFile(ctx, tmp)
	if err != nil {
		return nil, fmt.Errorf("restore: check %s: %w", from, err)
	}
	if !report.Check.OK() {
		report.Path = from
		return report, fmt.Errorf("restore: %s: %w", from, ErrCheckFailed)
	}
	if err := lockProbe(ctx, to); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if fi, err := os.Stat(to); err == nil {
		if err := os.Chmod(tmp, fi.Mode().Perm()); err != nil { // the replaced file's readers keep their access
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	aside, err := moveAside(to)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(tmp, to); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(filepath.Dir(to)); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	report.Path, report.Replaced = to, aside
	return report, nil
}

// sqliteHeader starts every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// checkRestorable refuses a file that is not a SQLite database, one that
// still has a write-ahead log beside it (what a plain copy of it would
// miss), and restoring a database onto itself.
func checkRestorable(from, to string) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	head := make([]byte, len(sqliteHeader))
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || !bytes.Equal(head, sqliteHeader) {
		return fmt.Errorf("%s is not a SQLite database", from)
	}
	if fi, err := os.Stat(from + "-wal"); err == nil && fi.Size() > 0 {
		return fmt.Errorf("%s has a write-ahead log beside it (%s-wal): it is open, or was not closed; take a copy with orchestrator backup", from, from)
	}
	a, errA := os.Stat(from)
	b, errB := os.Stat(to)
	if errA == nil && errB == nil && os.SameFile(a, b) {
		return fmt.Errorf("%s is the database to restore to", from)
	}
	return nil
}

// checkBackupSchema refuses a SQLite file that is not an orchestrator
// database, or one written by a newer binary than this one, before anything
// migrates it.
func checkBackupSchema(ctx context.Context, path string) error {
	raw, err := sql.Open("sqlite", "file:"+uriPath(path)+"?mode=rw&_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer raw.Close()
	var tables int
	err = raw.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table'
		AND name IN ('goose_db_version', 'workflows', 'runs', 'tasks', 'events')`).Scan(&tables)
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	if tables != 5 {
		return errors.New("not an orchestrator database: it lacks the workflows, runs, tasks and events tables")
	}
	var v int64
	err = raw.QueryRowContext(ctx, `SELECT COALESCE(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if latest := LatestSchemaVersion(); v > latest {
		return fmt.Errorf("schema version %d is newer than this binary's %d: restore it with the orchestrator that wrote it", v, latest)
	}
	return nil
}

// lockProbe returns ErrInUse when a connection anywhere holds the database
// at path open. A connection in exclusive locking mode takes an exclusive
// lock on the file at its first read, which any other connection's shared
// lock refuses; a WAL connection keeps its shared lock for as long as it is
// open, idle or not. When the probe closes, as the last connection, SQLite
// checkpoints the WAL into the file and removes it. A file that is not a
// database is not in use as one.
func lockProbe(ctx context.Context, path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	l, err := sql.Open("sqlite", "file:"+uriPath(path)+"?mode=rw&_pragma=locking_mode(EXCLUSIVE)")
	if err != nil {
		return err
	}
	l.SetMaxOpenConns(1)
	var n int
	err = l.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&n)
	cerr := l.Close()
	var se *sqlite.Error
	switch {
	case err == nil:
		return cerr
	case errors.As(err, &se) && (se.Code()&0xff == sqlite3.SQLITE_BUSY || se.Code()&0xff == sqlite3.SQLITE_LOCKED):
		return fmt.Errorf("%s is open in another process (a server, a verify, a replication tool): stop it first: %w", path, ErrInUse)
	case errors.As(err, &se) && (se.Code()&0xff == sqlite3.SQLITE_NOTADB || se.Code()&0xff == sqlite3.SQLITE_CORRUPT):
		return nil
	}
	return fmt.Errorf("lock %s: %w", path, err)
}

// moveAside renames the database at path and what SQLite keeps beside it to
// path.replaced-TIME and returns that name ("" when there was no database).
// The shared-memory index is only a cache of the log: it is removed.
func moveAside(path string) (string, error) {
	aside := path + ".replaced-" + time.Now().UTC().Format("20060102T150405.000000Z")
	moved := ""
	for _, suffix := range []string{"", "-wal", "-journal"} {
		err := os.Rename(path+suffix, aside+suffix)
		switch {
		case err == nil && suffix == "":
			moved = aside
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return "", err
		}
	}
	if err := os.Remove(path + "-shm"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return moved, nil
}

// copyFile copies from to the existing file to and syncs it.
func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("copy %s: %w", from, err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return fmt.Errorf("sync %s: %w", to, err)
	}
	return dst.Close()
}
