package store

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"
	"modernc.org/sqlite"

	"github.com/orchestrator/orchestrator/engine"
)

// scratchDB opens a plain SQLite file with one table of each constraint kind,
// for real driver errors.
func scratchDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "scratch.db")+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1) // max_page_count is per connection
	for _, q := range []string{
		`CREATE TABLE parent (id TEXT PRIMARY KEY)`,
		`CREATE TABLE child (id TEXT PRIMARY KEY, name TEXT UNIQUE, n INTEGER CHECK (n >= 0),
			note TEXT NOT NULL DEFAULT '', parent TEXT REFERENCES parent (id))`,
		`CREATE TRIGGER child_no_delete BEFORE DELETE ON child BEGIN SELECT RAISE(ABORT, 'child rows stay'); END`,
		`INSERT INTO parent VALUES ('p')`,
		`INSERT INTO child (id, name, n, parent) VALUES ('c1', 'one', 1, 'p')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return db
}

// failing runs q, which must fail, and returns its error.
func failing(t *testing.T, db *sql.DB, q string, args ...any) error {
	t.Helper()
	_, err := db.Exec(q, args...)
	if err == nil {
		t.Fatalf("%s: succeeded, want an error", q)
	}
	return err
}

func TestConstraintErr(t *testing.T) {
	t.Parallel()
	db := scratchDB(t)

	conflicts := []struct{ name, q string }{
		{"a primary key taken", `INSERT INTO child (id, name, n) VALUES ('c1', 'other', 1)`},
		{"a unique key taken", `INSERT INTO child (id, name, n) VALUES ('c2', 'one', 1)`},
		{"a missing referenced row", `INSERT INTO child (id, name, n, parent) VALUES ('c3', 'three', 1, 'nobody')`},
	}
	for _, tc := range conflicts {
		t.Run(tc.name+" is a conflict without the driver's text", func(t *testing.T) {
			is := is.New(t)
			raw := failing(t, db, tc.q)
			err := constraintErr("insert child", raw)
			is.True(errors.Is(err, engine.ErrConflict))                  // a race left it: conflict
			is.True(!strings.Contains(err.Error(), "constraint failed")) // no SQLite text in the message
			is.True(!strings.Contains(err.Error(), "child.id"))          // nor the schema's names
			is.True(strings.HasPrefix(err.Error(), "insert child: "))    // it names the write
			var se *sqlite.Error
			is.True(errors.As(err, &se)) // the driver's error is still reachable
		})
	}

	refused := []struct{ name, q string }{
		{"a CHECK", `INSERT INTO child (id, name, n) VALUES ('c4', 'four', -1)`},
		{"a NOT NULL", `INSERT INTO child (id, name, n, note) VALUES ('c5', 'five', 1, NULL)`},
		{"a trigger", `DELETE FROM child WHERE id = 'c1'`},
	}
	for _, tc := range refused {
		t.Run(tc.name+" refusal is an error, not a conflict", func(t *testing.T) {
			is := is.New(t)
			err := constraintErr("write child", failing(t, db, tc.q))
			is.True(!errors.Is(err, engine.ErrConflict))                    // trying again cannot help
			is.True(!errors.Is(err, engine.ErrStorageUnavailable))          // nor is the storage at fault
			is.True(strings.Contains(err.Error(), "refused by the schema")) // it says what happened
		})
	}

	t.Run("an error that only mentions a constraint is not one", func(t *testing.T) {
		is := is.New(t)
		err := constraintErr("insert child", errors.New("UNIQUE constraint failed: child.id"))
		is.True(!errors.Is(err, engine.ErrConflict)) // classified by the driver's code, not by text
	})
}

func TestStorageReason(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := scratchDB(t)
	var pages int64
	is.NoErr(db.QueryRow(`PRAGMA max_page_count = 1`).Scan(&pages)) // cap the file at the pages in use
	full := failing(t, db, `INSERT INTO child (id, name, n) VALUES ('big', ?, 1)`, strings.Repeat("x", 64<<10))

	reason, ok := storageReason(full)
	is.True(ok)                                  // a full database is the storage's fault
	is.Equal(reason, "database or disk is full") // in words of our own
	_, ok = storageReason(failing(t, db, `INSERT INTO child (id, name, n) VALUES ('c1', 'x', 1)`))
	is.True(!ok) // a constraint is not
	_, ok = storageReason(errors.New("database or disk is full (13)"))
	is.True(!ok) // nor is text that looks like it
	err := unavailable(reason, full)
	is.True(errors.Is(err, engine.ErrStorageUnavailable)) // marked for the engine and the API
	var se *sqlite.Error
	is.True(errors.As(err, &se)) // with the driver's error kept for the log
}
