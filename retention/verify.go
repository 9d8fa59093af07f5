package retention

import (
	"context"
	"errors"
	"fmt"

	"github.com/orchestrator/orchestrator/engine"
)

// Tombstones is what checking an archive against a database reads.
type Tombstones interface {
	GetTombstone(ctx context.Context, tenantID, runID string) (*engine.Tombstone, error)
	GetRunRow(ctx context.Context, tenantID, runID string) (*engine.Run, error)
}

// Problem is a record of an archive that does not check, and why.
type Problem struct {
	Line    int    `json:"line"`
	RunID   string `json:"run_id"`
	Problem string `json:"problem"`
}

// VerifyReport is what checking an archive found.
type VerifyReport struct {
	Records  int       `json:"records"`
	Matched  int       `json:"matched"` // records whose tombstone names them: hash, count and record digest
	Live     int       `json:"live"`    // runs archived but still live (their removal did not happen)
	Problems []Problem `json:"problems,omitempty"`
}

// VerifyArchive checks every record of an archive on its own (Record.Check)
// and, when db is set, against the database: a removed run's tombstone
// must hold the record's final hash, event count and digest. An error is
// an archive that cannot be read.
func VerifyArchive(ctx context.Context, path string, db Tombstones) (*VerifyReport, error) {
	rep := &VerifyReport{}
	err := ReadArchive(path, func(n int, l *Line) error {
		rep.Records++
		r := l.Record
		bad := func(format string, args ...any) {
			rep.Problems = append(rep.Problems, Problem{Line: n, RunID: r.Run.ID, Problem: fmt.Sprintf(format, args...)})
		}
		if err := r.Check(); err != nil {
			bad("%v", err)
			return nil
		}
		if db == nil {
			return nil
		}
		ts, err := db.GetTombstone(ctx, r.Run.TenantID, r.Run.ID)
		switch {
		case errors.Is(err, engine.ErrNotFound):
			if _, err := db.GetRunRow(ctx, r.Run.TenantID, r.Run.ID); err == nil {
				rep.Live++ // archived by a pass that stopped before removing it
				return nil
			}
			bad("the database has neither the run nor its tombstone")
		case err != nil:
			return err
		case ts.Events != r.Run.LastSeq || ts.FinalHash != r.LastHash:
			bad("the tombstone says %d events ending in %.12s, the archive %d ending in %.12s", ts.Events, ts.FinalHash,
				r.Run.LastSeq, r.LastHash)
		case ts.RecordSHA256 != l.SHA256:
			bad("the record's digest %.12s is not the tombstone's %.12s", l.SHA256, ts.RecordSHA256)
		default:
			// The tombstone may name another archive: a pass that stopped
			// between archiving and removing left a first copy, the same
			// record.
			rep.Matched++
		}
		return nil
	})
	return rep, err
}
