package engine

import "context"

// DatabaseSummary is what a database holds, as a backup or a restore reports
// it to the operator who must decide whether it is the copy they want.
type DatabaseSummary struct {
	SchemaVersion int64            `json:"schema_version"` // the last migration applied
	Bytes         int64            `json:"bytes"`          // the size of the database file
	Tenants       int64            `json:"tenants"`        // tenants with at least one run
	Definitions   int64            `json:"definitions"`    // definition versions, all tenants
	Runs          map[RunState]int `json:"runs"`           // runs by state
	Events        int64            `json:"events"`
	LastEventID   int64            `json:"last_event_id"`
	Checkpoints   int64            `json:"checkpoints"`
}

// TotalRuns is the number of runs of every state.
func (s *DatabaseSummary) TotalRuns() int {
	n := 0
	for _, c := range s.Runs {
		n += c
	}
	return n
}

// RunProblem is a run whose rows or log do not verify, and why.
type RunProblem struct {
	RunID   string `json:"run_id"`
	Problem string `json:"problem"`
}

// CopyCheck is what checking a copy of a database found: SQLite's own
// integrity check and the verification of every run (events chain and fold
// to the stored rows).
type CopyCheck struct {
	Integrity   []string     `json:"integrity,omitempty"` // PRAGMA integrity_check's problems; none is ok
	RunsChecked int          `json:"runs_checked"`
	RunsDiffer  []RunProblem `json:"runs_differ,omitempty"`
}

// OK reports whether the copy passed every check.
func (c *CopyCheck) OK() bool { return len(c.Integrity) == 0 && len(c.RunsDiffer) == 0 }

// BackupReport is a copy of a database that was written and checked.
type BackupReport struct {
	Path    string          `json:"path"`
	Summary DatabaseSummary `json:"summary"`
	Check   CopyCheck       `json:"check"`
	// Replaced is, after a restore, where the database that was in place
	// before was moved ("" when there was none).
	Replaced string `json:"replaced,omitempty"`
}

// Backuper is a store that copies itself while it serves. Backup writes a
// consistent snapshot to path, which must not exist, checks the copy and
// reports what it holds. A copy that does not pass its checks is still
// written (it is what the database holds) and the report says why; the
// error is for a copy that could not be made.
type Backuper interface {
	Backup(ctx context.Context, path string) (*BackupReport, error)
}
