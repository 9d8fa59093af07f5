package wire

import "time"

// Health is the answer of GET /health: 200 with Status "ok", or "degraded"
// while writes fail for the storage's sake (Reason, Since) or while the
// server is overloaded and refuses new runs (Overloaded); 503 with Status
// "unavailable" when the database does not answer.
type Health struct {
	Status   string    `json:"status"`            // "ok", "degraded" or "unavailable"
	Database string    `json:"database"`          // "ok" or "unreachable"
	Storage  string    `json:"storage,omitempty"` // "ok" or "unavailable"
	Reason   string    `json:"reason,omitempty"`  // why the storage is unavailable
	Since    time.Time `json:"since,omitzero"`    // since when
	// Overloaded is present exactly while new runs are refused with 503
	// overloaded: a gateway that sheds start traffic reads this field.
	Overloaded *Overload `json:"overloaded,omitempty"`
}

// Overload says since when a server refuses new runs and which of its
// saturation signals are over their mark.
type Overload struct {
	Since             time.Time        `json:"since"`
	Reasons           []OverloadReason `json:"reasons"`
	RetryAfterSeconds int              `json:"retry_after_seconds"`
}

// OverloadReason is one saturation signal: writer_queue (events waiting for
// the database writer), commit_latency (seconds), ready_tasks, active_runs,
// active_bytes; its value now and its limit.
type OverloadReason struct {
	Signal string  `json:"signal"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
}
