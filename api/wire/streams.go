package wire

import "time"

// StreamEnd is the data of the end event of a run's event stream
// (GET .../workflows/{id}/stream): the run reached a terminal state and
// every event up to LastSeq was sent. The stream stays open: a retry runs
// the run again and its events follow.
type StreamEnd struct {
	RunID   string   `json:"run_id"`
	State   RunState `json:"state"`
	LastSeq int64    `json:"last_seq"`
}

// StreamResync is the data of the resync event of a tenant's run stream
// (GET .../stream): runs changed that the stream did not send (it fell
// behind, or resumed from too far back); read the runs list again.
type StreamResync struct {
	Reason string `json:"reason"` // lagged, too_far_behind
}

// Explanation answers GET .../workflows/{id}/explain: for each task of the
// run that is not running and not finished, why it waits.
type Explanation struct {
	Run     ExplainedRun  `json:"run"`
	Waiting []WaitingTask `json:"waiting"`
	// Stalled says the run cannot progress without outside help: it is
	// active, no task runs, and nothing it waits for (a timer, a worker that
	// polls its type) will move it.
	Stalled bool `json:"stalled"`
}

// ExplainedRun is the run an Explanation is about.
type ExplainedRun struct {
	ID    string   `json:"id"`
	State RunState `json:"state"`
	// Reason and Detail say why the run itself waits: paused, or pending
	// (queued).
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// WaitingTask is why one task is not running: Reason is a stable code (see
// the WaitReason constants), Detail a sentence for people.
type WaitingTask struct {
	Task   string    `json:"task"`
	State  TaskState `json:"state"`
	Reason string    `json:"reason"`
	Detail string    `json:"detail"`
	// Since is when the task began to wait for this reason, when known;
	// Until when the wait ends by itself (a backoff, a sleep, a breaker).
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Dependencies names the dependencies waited on and their states.
	Dependencies []Dependency `json:"dependencies,omitempty"`
}

// Dependency is one dependency a task waits on.
type Dependency struct {
	Task  string    `json:"task"`
	State TaskState `json:"state"`
}
