package client

import (
	"encoding/json"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
)

// The answers of the API, as package wire defines them.
type (
	// RunDetails is a run with its progress and every task, in the
	// topological order of its definition.
	RunDetails = wire.RunDetails
	// Progress counts a run's tasks per state.
	Progress = wire.Progress
	// RunsPage is one page of runs, newest first. The runs are summaries:
	// their Input and Output are empty (GetWorkflow has them). A page
	// holds at most Limit runs and ends early, with a NextPageToken, once
	// it passes the server's byte bound (1 MiB).
	RunsPage = wire.RunsPage[wire.Run]
	// EventsPage is one page of a run's history in seq order. It holds at
	// most Limit events and ends early, with a NextAfter, once it passes
	// the server's byte bound (1 MiB).
	EventsPage = wire.RunEventsPage[wire.Event]
	// TenantEventsPage is one page of a tenant's events in log order,
	// bounded like EventsPage.
	TenantEventsPage = wire.TenantEventsPage[wire.Event]
	// DefinitionVersion is a stored version of a definition; Definition
	// is empty in lists.
	DefinitionVersion = wire.DefinitionVersion
	// Registration is the version a registration stored or found, and
	// whether it stored it (Created).
	Registration = wire.Registration
	// Validation is the verdict of ValidateDAG.
	Validation = wire.Validation
	// Health is the answer of GET /health.
	Health = wire.Health
	// LeaseStatus is the answer of Heartbeat, Complete and Fail.
	LeaseStatus = wire.LeaseStatus
)

// ExecuteRequest starts a run (ExecuteWorkflow, Run): of a registered definition
// by Workflow (and Version, 0 for the latest), or of Definition given inline
// (registered first, as a new version when it changed). Give one of the two.
type ExecuteRequest struct {
	Workflow string
	Version  int
	// Definition is the definition's JSON.
	Definition json.RawMessage
	// Input is the run's input, readable by tasks as ${workflow.input...}.
	Input json.RawMessage
	// IdempotencyKey, when set, is sent as the Idempotency-Key header: the
	// same key with the same request returns the run the first one started;
	// with a different request the server answers 422.
	IdempotencyKey string
}

// body is the request's JSON body.
func (r ExecuteRequest) body() wire.ExecuteRequest {
	return wire.ExecuteRequest{Workflow: r.Workflow, Version: r.Version, Definition: r.Definition, Input: r.Input}
}

// Execution is the run ExecuteWorkflow started or, for a repeated
// Idempotency-Key, found.
type Execution struct {
	wire.Run
	// Replayed is true when the server answered a repeated Idempotency-Key
	// with the run a previous request started.
	Replayed bool `json:"-"`
	// Location is the run's URL path: on the tenant API for
	// ExecuteWorkflow, on the short API for Run.
	Location string `json:"-"`
}

// RunFilter selects runs for ListWorkflows; zero fields do not filter.
type RunFilter struct {
	Status        wire.RunState
	Workflow      string
	CreatedAfter  time.Time // exclusive
	CreatedBefore time.Time // exclusive
	OriginKind    string    // schedule, webhook, nats, kafka: runs started by one
	OriginID      string    // with OriginKind: runs of that schedule or trigger
	Limit         int       // page size, 1..1000; 0: the server's default (50)
	PageToken     string    // NextPageToken of the previous page
}

// EventsQuery selects a run's events for WorkflowEvents and RunEvents; zero
// fields do not filter.
type EventsQuery struct {
	After  int64 // events with a larger seq: NextAfter of the previous page
	Limit  int   // page size, 1..1000; 0: the server's default (1000)
	TaskID string
	Type   wire.EventType
	// Verify asks the server to check the run's whole hash chain.
	Verify bool
}

// EventFilter selects a tenant's events for TenantEvents and
// StreamTenantEvents; zero fields do not filter.
type EventFilter struct {
	Type      wire.EventType
	Run       string // a run id
	TaskID    string
	Actor     string    // who caused the event: a key (key:<id>:<name>), "local", "engine", a worker id
	OnBehalf  string    // whom the actor acted for: an X-Actor, a worker id
	Since     time.Time // inclusive
	Until     time.Time // exclusive
	Limit     int       // page size 1..1000 (default 100); when streaming, the most events sent
	PageToken string    // NextPageToken of the previous page
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
