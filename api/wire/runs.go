package wire

import (
	"encoding/json"
	"time"
)

// ExecuteRequest is the body of POST .../workflows and POST /v1/run: start a
// run of a registered definition by Workflow (and Version, 0 for the
// latest), or of Definition given inline (registered first, as a new
// version when it changed). Give one of the two.
type ExecuteRequest struct {
	Workflow string `json:"workflow,omitempty"`
	Version  int    `json:"version,omitempty"`
	// Definition is the definition's JSON.
	Definition json.RawMessage `json:"definition,omitempty"`
	// Input is the run's input, readable by tasks as ${workflow.input...}.
	Input json.RawMessage `json:"input,omitempty"`
}

// ControlRequest is the optional body of pause, resume, cancel and retry.
type ControlRequest struct {
	TaskID string `json:"task_id,omitempty"` // retry only: this task and what depends on it
}

// Run is a run as the API shows it. In a list (RunsPage) Input and Output
// are left out.
type Run struct {
	ID        string          `json:"id"`
	TenantID  string          `json:"tenant_id"`
	Workflow  string          `json:"workflow"`
	Version   int             `json:"version"`
	State     RunState        `json:"state"`
	Input     json.RawMessage `json:"input,omitempty"`
	Output    json.RawMessage `json:"output,omitempty"`
	Error     *TaskError      `json:"error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	StartedAt time.Time       `json:"started_at,omitzero"`
	EndedAt   time.Time       `json:"ended_at,omitzero"`
	Deadline  time.Time       `json:"deadline,omitzero"`
	UpdatedAt time.Time       `json:"updated_at"`
	LastSeq   int64           `json:"last_seq"` // seq of the run's last event
	// DataBytes is the size of the data of every event of the run so far:
	// what the server's per-run byte limit bounds.
	DataBytes int64 `json:"data_bytes"`
	// Origin is what started the run, absent for a direct API call; Alias
	// the alias its version was chosen by.
	Origin *Origin `json:"origin,omitempty"`
	Alias  string  `json:"alias,omitempty"`
	// ConcurrencyKey is the value of its definition's concurrency key,
	// rendered from the input when the run was created.
	ConcurrencyKey string `json:"concurrency_key,omitempty"`
}

// Origin is what started a run: a schedule's slot, a webhook delivery, a
// stream message.
type Origin struct {
	Kind string    `json:"kind"` // schedule, webhook, nats, kafka
	ID   string    `json:"id"`
	Slot time.Time `json:"slot,omitzero"`
	Ref  string    `json:"ref,omitempty"`
}

// TaskError is why a task attempt, a task or a run failed.
type TaskError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Task is one task of a run.
type Task struct {
	TaskID         string          `json:"id"`
	Type           string          `json:"type"`
	State          TaskState       `json:"state"`
	Attempt        int             `json:"attempts"` // attempts started so far, carried across run retries
	ReadyAt        time.Time       `json:"ready_at,omitzero"`
	NotBefore      time.Time       `json:"not_before,omitzero"`
	StartedAt      time.Time       `json:"started_at,omitzero"`
	EndedAt        time.Time       `json:"ended_at,omitzero"`
	WakeAt         time.Time       `json:"wake_at,omitzero"`
	Error          *TaskError      `json:"error,omitempty"`
	Output         json.RawMessage `json:"output,omitempty"`
	Input          json.RawMessage `json:"input,omitempty"`           // resolved from references when the task became ready
	WorkerID       string          `json:"worker_id,omitempty"`       // the external worker of the last attempt
	LeaseExpiresAt time.Time       `json:"lease_expires_at,omitzero"` // while an external attempt runs
}

// RunDetails is a run with its progress and every task, in the topological
// order of its definition: GET .../workflows/{id} and GET /v1/runs/{id}.
type RunDetails struct {
	Run
	Progress Progress `json:"progress"`
	Tasks    []Task   `json:"tasks"`
}

// Task returns the task with the given id, or nil.
func (d *RunDetails) Task(id string) *Task {
	for i := range d.Tasks {
		if d.Tasks[i].TaskID == id {
			return &d.Tasks[i]
		}
	}
	return nil
}

// Progress counts a run's tasks per state.
type Progress struct {
	Total   int               `json:"total"`
	Done    int               `json:"done"`    // tasks in a terminal state
	Percent float64           `json:"percent"` // Done of Total, one decimal
	States  map[TaskState]int `json:"states"`  // every task state, zero counts included
}

// RunsPage is one page of GET .../workflows: run summaries (Run without
// Input and Output), newest first. A page holds at most the limit asked for
// and ends early, with a NextPageToken, once it passes the server's byte
// bound. R is the type of a run: Run for a reader; the server sends runs it
// has encoded already (json.RawMessage) to measure the page.
type RunsPage[R any] struct {
	Runs []R `json:"runs"`
	// NextPageToken continues the list; empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// RunMetrics are a run's timings, computed from its events:
// GET .../workflows/{id}/metrics.
type RunMetrics struct {
	RunID       string        `json:"run_id"`
	State       RunState      `json:"state"`
	DurationMS  float64       `json:"duration_ms"`   // created to ended (or to now)
	Attempts    int           `json:"attempts"`      // all tasks' attempts
	QueueWaitMS float64       `json:"queue_wait_ms"` // all tasks' time ready but not started
	Tasks       []TaskMetrics `json:"tasks"`
	// CriticalPath is the chain of tasks that decided when the run ended:
	// from the task that ended last, back through the dependency that ended
	// last, to a root. CriticalPathMS sums their durations.
	CriticalPath   []string `json:"critical_path"`
	CriticalPathMS float64  `json:"critical_path_ms"`
}

// TaskMetrics are the timings of one task.
type TaskMetrics struct {
	TaskID      string    `json:"task_id"`
	State       TaskState `json:"state"`
	Attempts    int       `json:"attempts"`
	DurationMS  float64   `json:"duration_ms"`   // time attempts ran, summed
	QueueWaitMS float64   `json:"queue_wait_ms"` // time ready (past any backoff) before each attempt started, summed
	ReadyAt     time.Time `json:"ready_at,omitzero"`
	StartedAt   time.Time `json:"started_at,omitzero"` // the first attempt
	EndedAt     time.Time `json:"ended_at,omitzero"`
}

// RunCounts answers GET .../run-counts: a tenant's runs the filters select,
// by state (every state, 0 when none), and their total.
type RunCounts struct {
	Counts map[RunState]int `json:"counts"`
	Total  int              `json:"total"`
}
