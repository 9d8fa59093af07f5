package store

import (
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/orchestrator/orchestrator/engine"
)

// constraintErr turns a statement's error into the engine's terms by the
// driver's result code, never by its text. A key already taken or a row a
// key refers to missing is what a race leaves (two starts with one
// idempotency key, a change computed from a stale run): ErrConflict, with
// SQLite's text kept out of the message so that logs and answers do not
// carry it. Any other constraint (CHECK, NOT NULL, the triggers that keep
// the log append-only) is a row the schema refuses: an error, not a
// conflict, since trying again cannot help.
func constraintErr(what string, err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_CONSTRAINT {
		return fmt.Errorf("%s: %w", what, err)
	}
	var taken string
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_ROWID:
		taken = "primary key already taken"
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		taken = "unique key already taken"
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		taken = "the row it refers to does not exist"
	default:
		return fmt.Errorf("%s: refused by the schema: %w", what, err)
	}
	return &conflictError{what: what, reason: taken, err: err}
}

// conflictError is a constraint failure a race causes. Its text names the
// write and the kind of constraint only; the driver's error stays reachable
// through errors.As.
type conflictError struct {
	what, reason string
	err          error
}

func (e *conflictError) Error() string {
	return e.what + ": " + e.reason + ": " + engine.ErrConflict.Error()
}

func (e *conflictError) Unwrap() []error { return []error{engine.ErrConflict, e.err} }

// storageReason says, in words of our own, why a write failed when the
// driver's result code means the storage under the database failed rather
// than the request: the disk is full, the file cannot be written or opened,
// another process holds the lock past the busy timeout. Trying the same
// write again later can succeed.
func storageReason(err error) (string, bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return "", false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL:
		return "database or disk is full", true
	case sqlite3.SQLITE_IOERR:
		return "disk I/O error", true
	case sqlite3.SQLITE_CANTOPEN:
		return "the database file cannot be opened", true
	case sqlite3.SQLITE_READONLY:
		return "the database file cannot be written", true
	case sqlite3.SQLITE_BUSY:
		return "the database is locked by another process", true
	}
	return "", false
}

// unavailable marks a write that failed for the storage's sake with
// engine.ErrStorageUnavailable; the driver's error stays wrapped for the log.
func unavailable(reason string, err error) error {
	return fmt.Errorf("%w (%s): %w", engine.ErrStorageUnavailable, reason, err)
}
