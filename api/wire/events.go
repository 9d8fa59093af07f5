package wire

import (
	"encoding/json"
	"time"
)

// Event is one fact of a run's history. Seq numbers a run's events 1..n
// without gaps; Hash chains each event to the previous one of its run.
type Event struct {
	ID       int64     `json:"id,omitempty"` // position in the whole log
	TenantID string    `json:"tenant_id"`
	RunID    string    `json:"run_id"`
	Seq      int64     `json:"seq"`
	Type     EventType `json:"type"`
	TaskID   string    `json:"task_id,omitempty"`
	Attempt  int       `json:"attempt,omitempty"`
	Actor    string    `json:"actor"` // who caused it: an API key (key:<id>:<name>), "local", "engine", a worker id (a worker without a key)
	// OnBehalf is whom the actor acted for: the X-Actor its key named, or
	// the worker id of a worker's call.
	OnBehalf string          `json:"on_behalf,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	At       time.Time       `json:"at"`
	Hash     string          `json:"hash"`
}

// EventData is the Data of every event type; each type uses some fields.
type EventData struct {
	Workflow  string          `json:"workflow,omitempty"`
	Version   int             `json:"version,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	Output    json.RawMessage `json:"output,omitempty"`
	Error     *TaskError      `json:"error,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	NotBefore time.Time       `json:"not_before,omitzero"`
	Deadline  time.Time       `json:"deadline,omitzero"`
	WakeAt    time.Time       `json:"wake_at,omitzero"`
	Tasks     []string        `json:"tasks,omitempty"` // run.retried: the tasks put back to pending
	// External attempts: who holds the lease, until when, and the SHA-256 of
	// its token (the token itself is never stored).
	WorkerID       string    `json:"worker_id,omitempty"`
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`
	LeaseHash      string    `json:"lease_hash,omitempty"`
	// Policy is the decision of the policy that allowed the call causing
	// the event, on the first event of the call, when a policy is in force.
	Policy *PolicyDecision `json:"policy,omitempty"`
	// Waiting is why each task waited, on run.stalled (as explain says).
	Waiting []WaitingTask `json:"waiting,omitempty"`
}

// RunEventsPage is one page of a run's history in seq order:
// GET .../workflows/{id}/events and GET /v1/runs/{id}/events. It holds at
// most the limit asked for and ends early, with a NextAfter, once it passes
// the server's byte bound. E is the type of an event, as in RunsPage.
type RunEventsPage[E any] struct {
	RunID  string `json:"run_id"`
	Events []E    `json:"events"`
	// NextAfter is the ?after= of the next page; 0 on the last page.
	NextAfter int64 `json:"next_after,omitempty"`
	// Verified answers ?verify=true: whether the run's whole history chains.
	Verified    *bool  `json:"verified,omitempty"`
	VerifyError string `json:"verify_error,omitempty"`
}

// TenantEventsPage is one page of a tenant's events across runs, in log
// order: GET .../events, the audit query. It is bounded like RunEventsPage.
type TenantEventsPage[E any] struct {
	Events []E `json:"events"`
	// NextPageToken continues the list; empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}
