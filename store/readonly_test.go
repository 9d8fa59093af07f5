package store_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/matryer/is"
	"github.com/pressly/goose/v3"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/schema"
	"github.com/orchestrator/orchestrator/store"
)

// fileState is what a write to a database would change: the main file's
// bytes and time, and the size of its write-ahead log.
type fileState struct {
	sum     [32]byte
	modTime int64
	walSize int64
}

func stateOf(t testing.TB, path string) fileState {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fileState{sum: sha256.Sum256(data), modTime: fi.ModTime().UnixNano()}
	if wal, err := os.Stat(path + "-wal"); err == nil {
		st.walSize = wal.Size()
	}
	return st
}

// migrateTo creates a database at path with the migrations up to version.
func migrateTo(t testing.TB, path string, version int64) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	p, err := goose.NewProvider(goose.DialectSQLite3, raw, schema.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), version); err != nil {
		t.Fatalf("migrate to %d: %v", version, err)
	}
}

func TestStore_OpenReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("it reads a database and refuses every write", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		path := filepath.Join(t.TempDir(), "s.db")
		rw := openAt(t, path, store.Options{})
		sd, _ := putDefinition(t, rw, "acme", wfJSON)
		is.NoErr(rw.Close()) // the database as a stopped server leaves it
		is.NoErr(os.Chmod(path, 0o444))
		before := stateOf(t, path)

		db, err := store.Open(ctx, path, store.Options{ReadOnly: true})
		is.NoErr(err) // opens a read-only file
		got, err := db.GetDefinition(ctx, "acme", "wf", 0)
		is.NoErr(err)                 // reads
		is.Equal(got.Hash, sd.Hash)   // what was stored
		is.NoErr(db.Ping(ctx))        // answers pings
		is.True(db.Health().Writable) // reports no storage failure
		_, _, err = db.PutDefinition(ctx, &engine.StoredDefinition{TenantID: "acme", Name: "other", Definition: sd.Definition, Hash: "h"})
		is.True(errors.Is(err, engine.ErrClosed)) // a write fails
		is.NoErr(db.Close())
		is.NoErr(db.Close())               // Close is idempotent
		is.Equal(stateOf(t, path), before) // and nothing was written
	})

	t.Run("a database that needs migrations is reported and left as it is", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		path := filepath.Join(t.TempDir(), "old.db")
		vs := migrationVersions(t)
		older := int64(vs[len(vs)-2])
		migrateTo(t, path, older)
		before := stateOf(t, path)
		_, err := store.Open(ctx, path, store.Options{ReadOnly: true})
		is.True(errors.Is(err, store.ErrSchemaMismatch)) // refused
		t.Log(err)
		is.Equal(stateOf(t, path), before) // unchanged
		raw := rawDB(t, path)
		is.Equal(count(t, raw, `SELECT max(version_id) FROM goose_db_version`), int(older)) // still at the older version
	})

	t.Run("a file without the schema is refused", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		path := filepath.Join(t.TempDir(), "empty.db")
		raw := rawDB(t, path)
		_, err := raw.Exec(`CREATE TABLE other (x)`)
		is.NoErr(err)
		_, err = store.Open(ctx, path, store.Options{ReadOnly: true})
		is.True(errors.Is(err, store.ErrSchemaMismatch))                                                 // refused
		is.Equal(count(t, raw, `SELECT count(*) FROM sqlite_master WHERE name = 'goose_db_version'`), 0) // no version table made
	})

	t.Run("a missing file is not created", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		path := filepath.Join(t.TempDir(), "missing.db")
		_, err := store.Open(ctx, path, store.Options{ReadOnly: true})
		is.True(errors.Is(err, os.ErrNotExist)) // refused
		_, err = os.Stat(path)
		is.True(errors.Is(err, os.ErrNotExist)) // and still missing
	})
}
