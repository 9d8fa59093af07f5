package wire

import "time"

// BackupReport answers POST /api/v1/admin/backup: the copy the server wrote
// in its backup directory, what it holds and what checking it found.
type BackupReport struct {
	Path    string          `json:"path"`
	Summary DatabaseSummary `json:"summary"`
	Check   CopyCheck       `json:"check"`
}

// DatabaseSummary is what a database holds.
type DatabaseSummary struct {
	SchemaVersion int64          `json:"schema_version"` // the last migration applied
	Bytes         int64          `json:"bytes"`          // the size of the file
	Tenants       int64          `json:"tenants"`        // tenants with at least one run
	Definitions   int64          `json:"definitions"`    // definition versions, all tenants
	Runs          map[string]int `json:"runs"`           // runs by state
	Events        int64          `json:"events"`
	LastEventID   int64          `json:"last_event_id"`
	Checkpoints   int64          `json:"checkpoints"`
}

// CopyCheck is what checking a copy found: SQLite's integrity check and the
// verification of every run.
type CopyCheck struct {
	OK          bool         `json:"ok"`
	Integrity   []string     `json:"integrity,omitempty"` // integrity_check's problems
	RunsChecked int          `json:"runs_checked"`
	RunsDiffer  []RunProblem `json:"runs_differ,omitempty"`
}

// RunProblem is a run whose rows or log do not verify, and why.
type RunProblem struct {
	RunID   string `json:"run_id"`
	Problem string `json:"problem"`
}

// Checkpoint is a signed checkpoint of the head of a tenant's log. Heads
// are in the export only (GET /api/v1/admin/checkpoints/export), where each
// line is one checkpoint as `orchestrator checkpoints verify` reads it.
type Checkpoint struct {
	TenantID    string    `json:"tenant_id"`
	Seq         int64     `json:"seq"`
	At          time.Time `json:"at"`
	FromEventID int64     `json:"from_event_id"`
	HeadEventID int64     `json:"head_event_id"`
	Events      int64     `json:"events"`
	Runs        int64     `json:"runs"`
	Heads       []RunHead `json:"heads,omitempty"`
	HeadsDigest string    `json:"heads_digest"`
	PrevDigest  string    `json:"prev_digest"`
	Digest      string    `json:"digest"`
	PublicKey   string    `json:"public_key"`
	Signature   string    `json:"signature"`
}

// RunHead is the last event of a run as a checkpoint saw it.
type RunHead struct {
	RunID string `json:"run_id"`
	Seq   int64  `json:"seq"`
	Hash  string `json:"hash"`
}

// Checkpoints answers GET and POST /api/v1/admin/checkpoints: the key that
// signs this server's checkpoints and the checkpoints listed (each tenant's
// latest) or just signed, without their heads.
type Checkpoints struct {
	PublicKey   string       `json:"public_key"`
	Checkpoints []Checkpoint `json:"checkpoints"`
}
