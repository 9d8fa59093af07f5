package wire

import (
	"encoding/json"
	"time"
)

// The external worker protocol: poll for a ready task of some types, keep
// its lease with heartbeats, report completion or failure with the lease
// token. Durations are Go duration strings ("30s").

// PollRequest is the body of POST .../tasks/poll.
type PollRequest struct {
	Types    []string `json:"types"`           // task types this worker runs
	WorkerID string   `json:"worker_id"`       // names the worker in the task's events
	Lease    string   `json:"lease,omitempty"` // how long the attempt is held without a heartbeat
	Wait     string   `json:"wait,omitempty"`  // how long the server may hold the poll for a task
}

// Lease is a leased attempt: the answer of a poll that found a task.
type Lease struct {
	ID        string          `json:"id"` // names the attempt in heartbeat, complete and fail
	TenantID  string          `json:"tenant_id"`
	RunID     string          `json:"run_id"`
	TaskID    string          `json:"task_id"`
	Type      string          `json:"type"`
	Attempt   int             `json:"attempt"`
	Input     json.RawMessage `json:"input"`
	Config    json.RawMessage `json:"config,omitempty"`
	Token     string          `json:"lease_token"`
	ExpiresAt time.Time       `json:"lease_expires_at"`
}

// HeartbeatRequest is the body of POST .../tasks/{id}/heartbeat.
type HeartbeatRequest struct {
	LeaseToken string `json:"lease_token"`
	Lease      string `json:"lease,omitempty"`
}

// CompleteRequest is the body of POST .../tasks/{id}/complete.
type CompleteRequest struct {
	LeaseToken string          `json:"lease_token"`
	Output     json.RawMessage `json:"output,omitempty"`
}

// FailRequest is the body of POST .../tasks/{id}/fail. Retryable false fails
// the task at once; absent or true lets its retry policy decide.
type FailRequest struct {
	LeaseToken string     `json:"lease_token"`
	Error      *TaskError `json:"error"`
	Retryable  *bool      `json:"retryable,omitempty"`
}

// LeaseStatus is the answer of heartbeat, complete and fail.
type LeaseStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"` // "extended", "completed" or "failed"
	// LeaseExpiresAt is the new expiry after a heartbeat.
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`
}
