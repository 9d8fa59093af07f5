package wire

import "time"

// Health is the answer of GET /health: 200 with Status "ok", or "degraded"
// while writes fail for the storage's sake (Reason, Since); 503 with Status
// "unavailable" when the database does not answer.
type Health struct {
	Status   string    `json:"status"`            // "ok", "degraded" or "unavailable"
	Database string    `json:"database"`          // "ok" or "unreachable"
	Storage  string    `json:"storage,omitempty"` // "ok" or "unavailable"
	Reason   string    `json:"reason,omitempty"`  // why the storage is unavailable
	Since    time.Time `json:"since,omitzero"`    // since when
}
