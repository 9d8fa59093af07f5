package client

import (
	"encoding/json"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// ExecuteRequest starts a run (ExecuteWorkflow, Run): of a registered definition
// by Workflow (and Version, 0 for the latest), or of Definition given inline
// (registered first, as a new version when it changed). Give one of the two.
type ExecuteRequest struct {
	Workflow string `json:"workflow,omitempty"`
	Version  int    `json:"version,omitempty"`
	// Definition is the definition's JSON, e.g. json.Marshal of an
	// definition.Definition.
	Definition json.RawMessage `json:"definition,omitempty"`
	// Input is the run's input, readable by tasks as ${workflow.input...}.
	Input json.RawMessage `json:"input,omitempty"`
	// IdempotencyKey, when set, is sent as the Idempotency-Key header: the
	// same key with the same request returns the run the first one started;
	// with a different request the server answers 422.
	IdempotencyKey string `json:"-"`
}

// Execution is the run ExecuteWorkflow started or, for a repeated
// Idempotency-Key, found.
type Execution struct {
	engine.Run
	// Replayed is true when the server answered a repeated Idempotency-Key
	// with the run a previous request started.
	Replayed bool `json:"-"`
	// Location is the run's URL path: on the tenant API for
	// ExecuteWorkflow, on the short API for Run.
	Location string `json:"-"`
}

// RunDetails is a run with its progress and every task, in the topological
// order of its definition.
type RunDetails struct {
	engine.Run
	Progress Progress      `json:"progress"`
	Tasks    []engine.Task `json:"tasks"`
}

// Task returns the task with the given id, or nil.
func (d *RunDetails) Task(id string) *engine.Task {
	for i := range d.Tasks {
		if d.Tasks[i].TaskID == id {
			return &d.Tasks[i]
		}
	}
	return nil
}

// Progress counts a run's tasks per state.
type Progress struct {
	Total   int                      `json:"total"`
	Done    int                      `json:"done"`    // tasks in a terminal state
	Percent float64                  `json:"percent"` // Done of Total, one decimal
	States  map[engine.TaskState]int `json:"states"`  // every task state, zero counts included
}

// RunFilter selects runs for ListWorkflows; zero fields do not filter.
type RunFilter struct {
	Status        engine.RunState
	Workflow      string
	CreatedAfter  time.Time // exclusive
	CreatedBefore time.Time // exclusive
	Limit         int       // page size, 1..1000; 0: the server's default (50)
	PageToken     string    // NextPageToken of the previous page
}

// RunsPage is one page of runs, newest first. The runs are summaries:
// their Input and Output are empty (GetWorkflow has them). A page holds at
// most Limit runs and ends early, with a NextPageToken, once it passes the
// server's byte bound (1 MiB).
type RunsPage struct {
	Runs []engine.Run `json:"runs"`
	// NextPageToken continues the list; empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// EventsQuery selects a run's events for WorkflowEvents and RunEvents; zero
// fields do not filter.
type EventsQuery struct {
	After  int64 // events with a larger seq: NextAfter of the previous page
	Limit  int   // page size, 1..1000; 0: the server's default (1000)
	TaskID string
	Type   engine.EventType
	// Verify asks the server to check the run's whole hash chain.
	Verify bool
}

// EventsPage is one page of a run's history in seq order. It holds at
// most Limit events and ends early, with a NextAfter, once it passes the
// server's byte bound (1 MiB).
type EventsPage struct {
	RunID  string         `json:"run_id"`
	Events []engine.Event `json:"events"`
	// NextAfter is the After of the next page; 0 on the last page.
	NextAfter int64 `json:"next_after,omitempty"`
	// Verified answers Verify: whether the run's whole history chains.
	Verified    *bool  `json:"verified,omitempty"`
	VerifyError string `json:"verify_error,omitempty"`
}

// EventFilter selects a tenant's events for TenantEvents and
// StreamTenantEvents; zero fields do not filter.
type EventFilter struct {
	Type      engine.EventType
	Run       string // a run id
	TaskID    string
	Actor     string    // who caused the event: "api", "engine", an X-Actor, a worker id
	Since     time.Time // inclusive
	Until     time.Time // exclusive
	Limit     int       // page size 1..1000 (default 100); when streaming, the most events sent
	PageToken string    // NextPageToken of the previous page
}

// TenantEventsPage is one page of a tenant's events in log order, bounded
// like EventsPage.
type TenantEventsPage struct {
	Events []engine.Event `json:"events"`
	// NextPageToken continues the list; empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// DefinitionVersion is a stored version of a definition.
type DefinitionVersion struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	// Created is true when a registration stored a new version, false when
	// the definition was unchanged; always false in answers of reads.
	Created   bool      `json:"created"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
	// Definition is the stored JSON; empty in lists.
	Definition json.RawMessage `json:"definition,omitempty"`
}

// Validation is the verdict of ValidateDAG.
type Validation struct {
	Valid  bool                 `json:"valid"`
	Errors []definition.Problem `json:"errors"`
	// Levels are the topological levels of a valid DAG, ids sorted within
	// a level.
	Levels [][]string `json:"levels"`
}

// Health is the answer of GET /health.
type Health struct {
	Status   string `json:"status"`   // "ok"
	Database string `json:"database"` // "ok"
}

// PollRequest asks for one ready task of the given types.
type PollRequest struct {
	Types    []string // task types this worker runs: 1 to 64; required
	WorkerID string   // names the worker in the task's events; required
	// Lease is how long the attempt is held without a heartbeat; 0: the
	// server's default (30s).
	Lease time.Duration
	// Wait is how long the server may hold the poll for a task (at most
	// 60s); 0: answer at once.
	Wait time.Duration
}

// LeaseStatus is the answer of Heartbeat, Complete and Fail.
type LeaseStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"` // "extended", "completed" or "failed"
	// LeaseExpiresAt is the new expiry after a heartbeat.
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`
}
