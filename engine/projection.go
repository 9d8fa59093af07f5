package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Run is the projection of a run: its current state, derived from its events.
// The store keeps it in the runs table; Replay rebuilds it from the log.
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
	LastSeq   int64           `json:"last_seq"`
	LastHash  string          `json:"-"`
	// DataBytes is the size of the data of every event of the run so far:
	// what Config.MaxRunBytes bounds.
	DataBytes int64 `json:"data_bytes"`
	// Origin is what started the run, nil for a direct API call; Alias the
	// alias of the definition name its version was chosen by, if any.
	Origin *Origin `json:"origin,omitempty"`
	Alias  string  `json:"alias,omitempty"`
	// ConcurrencyKey is the value of its definition's concurrency key,
	// rendered from the input when it was created; "" when it has none.
	ConcurrencyKey string `json:"concurrency_key,omitempty"`
}

// Task is the projection of one task of a run.
type Task struct {
	RunID     string          `json:"-"`
	TaskID    string          `json:"id"`
	Pos       int             `json:"-"` // position in the plan's topological order
	Type      string          `json:"type"`
	State     TaskState       `json:"state"`
	Attempt   int             `json:"attempts"` // attempts started so far, carried across run retries
	Charged   int             `json:"-"`        // attempts counted against the retry budget since the last reset
	Abandoned int             `json:"-"`        // attempts in a row lost to the process stopping
	ReadyAt   time.Time       `json:"ready_at,omitzero"`
	NotBefore time.Time       `json:"not_before,omitzero"`
	StartedAt time.Time       `json:"started_at,omitzero"`
	EndedAt   time.Time       `json:"ended_at,omitzero"`
	WakeAt    time.Time       `json:"wake_at,omitzero"`
	Error     *TaskError      `json:"error,omitempty"`
	Output    json.RawMessage `json:"output,omitempty"`
	// Input is the input resolved from references when the task became
	// ready; nil when the definition's input has no references.
	Input          json.RawMessage `json:"input,omitempty"`
	WorkerID       string          `json:"worker_id,omitempty"`       // the external worker of the last attempt
	LeaseExpiresAt time.Time       `json:"lease_expires_at,omitzero"` // while an external attempt runs
	LeaseHash      string          `json:"-"`                         // sha256 of the last attempt's lease token
}

// RunView is a run with its tasks, in the topological order of its plan.
type RunView struct {
	Run    Run
	Tasks  []Task
	plan   *definition.Plan
	counts [numTaskStates]int
}

// NewRunView returns the empty projection that a run's first event is applied to.
func NewRunView(plan *definition.Plan) *RunView { return &RunView{plan: plan} }

// RestoreRunView rebuilds a projection from stored rows; tasks may come in any
// order. It fails with ErrConflict when the rows do not match the plan.
func RestoreRunView(plan *definition.Plan, run *Run, tasks []Task) (*RunView, error) {
	v := &RunView{Run: *run, plan: plan, Tasks: make([]Task, len(plan.Tasks))}
	seen := 0
	for i := range tasks {
		pos, ok := plan.Index[tasks[i].TaskID]
		if !ok || v.Tasks[pos].TaskID != "" {
			return nil, fmt.Errorf("run %s: task %q does not match its definition: %w", run.ID, tasks[i].TaskID, ErrConflict)
		}
		v.Tasks[pos] = tasks[i]
		v.counts[taskStateIndex(tasks[i].State)]++
		seen++
	}
	if seen != len(plan.Tasks) {
		return nil, fmt.Errorf("run %s: %d tasks stored, definition has %d: %w", run.ID, seen, len(plan.Tasks), ErrConflict)
	}
	return v, nil
}

// Plan returns the plan the run executes.
func (v *RunView) Plan() *definition.Plan { return v.plan }

// Count returns how many tasks are in state s.
func (v *RunView) Count(s TaskState) int { return v.counts[taskStateIndex(s)] }

// Task returns the task with the given id, or nil.
func (v *RunView) Task(id string) *Task {
	i, ok := v.plan.Index[id]
	if !ok || i >= len(v.Tasks) {
		return nil
	}
	return &v.Tasks[i]
}

// Replay folds a run's events into its projection. The live engine applies the
// same events through the same function, so a replay equals the stored projection.
func Replay(plan *definition.Plan, events []Event) (*RunView, error) {
	v := NewRunView(plan)
	for i := range events {
		if err := v.Apply(&events[i]); err != nil {
			return v, err
		}
	}
	return v, nil
}

// Apply changes the projection by one event, after checking the event against
// the state machines. It is the only code that assigns a run or task state.
// On error nothing is changed.
func (v *RunView) Apply(ev *Event) error {
	var d EventData
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return fmt.Errorf("run %s seq %d: decode data: %w", ev.RunID, ev.Seq, err)
		}
	}
	return v.apply(ev, &d)
}

// apply is Apply with the event's data already decoded.
func (v *RunView) apply(ev *Event, d *EventData) error {
	if ev.Seq != v.Run.LastSeq+1 {
		return fmt.Errorf("run %s: event seq %d after %d: %w", ev.RunID, ev.Seq, v.Run.LastSeq, ErrConflict)
	}
	var err error
	if ev.TaskID == "" {
		err = v.applyRun(ev, d)
	} else {
		err = v.applyTask(ev, d)
	}
	if err != nil {
		return err
	}
	v.Run.LastSeq = ev.Seq
	v.Run.LastHash = ev.Hash
	v.Run.UpdatedAt = ev.At
	v.Run.DataBytes += int64(len(ev.Data))
	return nil
}

func (v *RunView) applyRun(ev *Event, d *EventData) error {
	r := &v.Run
	if ev.Type == EventRunCreated {
		if ev.Seq != 1 {
			return &TransitionError{Subject: "run", Event: ev.Type, From: string(r.State)}
		}
		*r = Run{ID: ev.RunID, TenantID: ev.TenantID, Workflow: d.Workflow, Version: d.Version,
			State: RunPending, Input: d.Input, CreatedAt: ev.At, Origin: d.Origin, Alias: d.Alias, ConcurrencyKey: d.ConcurrencyKey}
		v.Tasks = make([]Task, len(v.plan.Tasks))
		for i, pt := range v.plan.Tasks {
			v.Tasks[i] = Task{RunID: ev.RunID, TaskID: pt.ID, Pos: i, Type: pt.Type, State: TaskPending}
		}
		v.counts = [numTaskStates]int{}
		v.counts[taskStateIndex(TaskPending)] = len(v.Tasks)
		return nil
	}
	rule, ok := runEvents[ev.Type]
	if !ok {
		return fmt.Errorf("run %s seq %d: unknown event type %q", ev.RunID, ev.Seq, ev.Type)
	}
	to := rule.to
	if !rule.allows(r.State) {
		return &TransitionError{Subject: "run", Event: ev.Type, From: string(r.State), To: string(to)}
	}
	r.State = to
	switch ev.Type {
	case EventRunStarted:
		r.StartedAt = ev.At
		r.Deadline = d.Deadline
	case EventRunRetried:
		r.EndedAt = time.Time{}
		r.Error = nil
		r.Output = nil
		r.Deadline = d.Deadline
	case EventRunCompleted:
		r.EndedAt = ev.At
		r.Output = d.Output
	case EventRunFailed:
		r.EndedAt = ev.At
		r.Error = d.Error
	case EventRunCancelled, EventRunTimedOut:
		r.EndedAt = ev.At
		r.Error = d.Error
	}
	return nil
}

func (v *RunView) applyTask(ev *Event, d *EventData) error {
	t := v.Task(ev.TaskID)
	if t == nil {
		return fmt.Errorf("run %s seq %d: task %q: %w", ev.RunID, ev.Seq, ev.TaskID, ErrNotFound)
	}
	rule, ok := taskEvents[ev.Type]
	if !ok {
		return fmt.Errorf("run %s seq %d: unknown event type %q", ev.RunID, ev.Seq, ev.Type)
	}
	to := rule.to
	subject := "task " + t.TaskID
	if !rule.allows(t.State) {
		return &TransitionError{Subject: subject, Event: ev.Type, From: string(t.State), To: string(to)}
	}
	// A task starts only while its run is running: never while paused or ended.
	if ev.Type == EventTaskStarted && v.Run.State != RunRunning {
		return &TransitionError{Subject: subject + " of a " + string(v.Run.State) + " run", Event: ev.Type, From: string(t.State), To: string(to)}
	}
	// Events of an attempt must name the attempt under way; a late report of an
	// earlier attempt is refused.
	switch {
	case ev.Type == EventTaskStarted && ev.Attempt != t.Attempt+1,
		t.State == TaskRunning && ev.Type != EventTaskCancelled && ev.Attempt != t.Attempt:
		return &TransitionError{Subject: fmt.Sprintf("%s attempt %d", subject, ev.Attempt), Event: ev.Type, From: string(t.State), To: string(to)}
	}
	v.counts[taskStateIndex(t.State)]--
	v.counts[taskStateIndex(to)]++
	t.State = to
	switch ev.Type {
	case EventTaskReady:
		t.ReadyAt = ev.At
		t.NotBefore = d.NotBefore
		t.Input = d.Input
		t.Error = d.Error
	case EventTaskStarted:
		t.Attempt = ev.Attempt
		t.Charged++
		t.StartedAt = ev.At
		t.EndedAt = time.Time{}
		t.NotBefore = time.Time{}
		t.WakeAt = d.WakeAt
		t.WorkerID = d.WorkerID
		t.LeaseExpiresAt = d.LeaseExpiresAt
		t.LeaseHash = d.LeaseHash
	case EventTaskLeaseExtended:
		t.LeaseExpiresAt = d.LeaseExpiresAt
	case EventTaskAttemptFailed:
		if Refunded(d.Reason) {
			t.Charged--
		}
		t.Abandoned = abandonedAfter(t.Abandoned, d.Reason)
		t.ReadyAt = ev.At
		t.NotBefore = d.NotBefore
		t.WakeAt = time.Time{}
		t.LeaseExpiresAt = time.Time{}
		t.Error = d.Error
	case EventTaskCompleted:
		t.EndedAt = ev.At
		t.WakeAt = time.Time{}
		t.LeaseExpiresAt = time.Time{}
		t.Output = d.Output
		t.Error = nil
		t.Abandoned = 0
	case EventTaskFailed, EventTaskTimedOut, EventTaskSkipped, EventTaskCancelled:
		if Refunded(d.Reason) {
			t.Charged--
		}
		if ev.Type == EventTaskFailed {
			t.Abandoned = abandonedAfter(t.Abandoned, d.Reason)
		}
		t.EndedAt = ev.At
		t.WakeAt = time.Time{}
		t.LeaseExpiresAt = time.Time{}
		if d.Error != nil {
			t.Error = d.Error
		}
	case EventTaskReset:
		t.Charged = 0
		t.Abandoned = 0
		t.ReadyAt = time.Time{}
		t.NotBefore = time.Time{}
		t.EndedAt = time.Time{}
		t.WakeAt = time.Time{}
		t.Error = nil
		t.Output = nil
		t.Input = nil
	}
	return nil
}

// abandonedAfter counts the attempts in a row lost to the process stopping:
// one more for an abandoned attempt, unchanged by attempts that did not run
// to an outcome of their own (interrupted by a shutdown, held by a breaker
// or an adaptive limit),
// back to zero for any other outcome.
func abandonedAfter(n int, reason string) int {
	switch reason {
	case ReasonAbandoned:
		return n + 1
	case ReasonInterrupted, ReasonCircuitOpen, ReasonThrottled:
		return n
	}
	return 0
}

// EqualRun reports whether two run projections hold the same values; it is how
// verification compares a stored row with a replay. Times compare at
// microsecond precision, JSON compares compacted.
func EqualRun(a, b *Run) bool {
	return a.ID == b.ID && a.TenantID == b.TenantID && a.Workflow == b.Workflow && a.Version == b.Version &&
		a.State == b.State && jsonEqual(a.Input, b.Input) && jsonEqual(a.Output, b.Output) &&
		errEqual(a.Error, b.Error) && timeEqual(a.CreatedAt, b.CreatedAt) && timeEqual(a.StartedAt, b.StartedAt) &&
		timeEqual(a.EndedAt, b.EndedAt) && timeEqual(a.Deadline, b.Deadline) && timeEqual(a.UpdatedAt, b.UpdatedAt) &&
		a.LastSeq == b.LastSeq && a.LastHash == b.LastHash && a.DataBytes == b.DataBytes && a.ConcurrencyKey == b.ConcurrencyKey
}

// EqualTask reports whether two task projections hold the same values.
func EqualTask(a, b *Task) bool {
	return a.RunID == b.RunID && a.TaskID == b.TaskID && a.Pos == b.Pos && a.Type == b.Type && a.State == b.State &&
		a.Attempt == b.Attempt && a.Charged == b.Charged && a.Abandoned == b.Abandoned && timeEqual(a.ReadyAt, b.ReadyAt) &&
		timeEqual(a.NotBefore, b.NotBefore) && timeEqual(a.StartedAt, b.StartedAt) &&
		timeEqual(a.EndedAt, b.EndedAt) && timeEqual(a.WakeAt, b.WakeAt) && errEqual(a.Error, b.Error) &&
		jsonEqual(a.Output, b.Output) && jsonEqual(a.Input, b.Input) && a.WorkerID == b.WorkerID &&
		timeEqual(a.LeaseExpiresAt, b.LeaseExpiresAt) && a.LeaseHash == b.LeaseHash
}

func timeEqual(a, b time.Time) bool { return FormatTime(a) == FormatTime(b) }

func errEqual(a, b *TaskError) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 || bytes.Equal(a, b) {
		return bytes.Equal(a, b) || (isNullJSON(a) && isNullJSON(b))
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

func isNullJSON(m json.RawMessage) bool { return len(m) == 0 || string(m) == "null" }
