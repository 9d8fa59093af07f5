package engine

import (
	"errors"
	"fmt"
)

// RunState is where a run is in its life. Only ApplyEvent assigns it.
type RunState string

const (
	// RunPending: the run is recorded but not started (run.created).
	RunPending RunState = "pending"
	// RunRunning: tasks are dispatched (run.started, run.resumed, run.retried).
	RunRunning RunState = "running"
	// RunPaused: no new task starts; running ones finish (run.paused).
	RunPaused RunState = "paused"
	// RunCompleted: every task completed (run.completed). Final.
	RunCompleted RunState = "completed"
	// RunFailed: a task failed or was skipped and nothing is left to run (run.failed).
	RunFailed RunState = "failed"
	// RunCancelled: someone cancelled the run (run.cancelled).
	RunCancelled RunState = "cancelled"
	// RunTimedOut: the run exceeded its timeout (run.timed_out).
	RunTimedOut RunState = "timed_out"
)

// RunStates lists every run state, in life order.
func RunStates() []RunState {
	return []RunState{RunPending, RunRunning, RunPaused, RunCompleted, RunFailed, RunCancelled, RunTimedOut}
}

// Terminal reports whether no task of the run will start again without a retry.
func (s RunState) Terminal() bool {
	switch s {
	case RunCompleted, RunFailed, RunCancelled, RunTimedOut:
		return true
	}
	return false
}

// TaskState is where a task of a run is. Only ApplyEvent assigns it.
type TaskState string

const (
	// TaskPending: waiting for its dependencies (run.created, task.reset).
	TaskPending TaskState = "pending"
	// TaskReady: may start, not before NotBefore (task.ready, task.attempt_failed).
	TaskReady TaskState = "ready"
	// TaskRunning: one attempt is under way (task.started).
	TaskRunning TaskState = "running"
	// TaskCompleted: an attempt succeeded (task.completed). Final.
	TaskCompleted TaskState = "completed"
	// TaskFailed: the last allowed attempt failed (task.failed).
	TaskFailed TaskState = "failed"
	// TaskSkipped: an upstream task did not complete (task.skipped).
	TaskSkipped TaskState = "skipped"
	// TaskCancelled: the run was cancelled or timed out (task.cancelled).
	TaskCancelled TaskState = "cancelled"
	// TaskTimedOut: the last allowed attempt exceeded its timeout (task.timed_out).
	TaskTimedOut TaskState = "timed_out"
)

// TaskStates lists every task state, in life order.
func TaskStates() []TaskState {
	return []TaskState{TaskPending, TaskReady, TaskRunning, TaskCompleted, TaskFailed, TaskSkipped, TaskCancelled, TaskTimedOut}
}

// Terminal reports whether the task will not change again unless its run is retried.
func (s TaskState) Terminal() bool {
	switch s {
	case TaskCompleted, TaskFailed, TaskSkipped, TaskCancelled, TaskTimedOut:
		return true
	}
	return false
}

const numTaskStates = 8

func taskStateIndex(s TaskState) int {
	switch s {
	case TaskPending:
		return 0
	case TaskReady:
		return 1
	case TaskRunning:
		return 2
	case TaskCompleted:
		return 3
	case TaskFailed:
		return 4
	case TaskSkipped:
		return 5
	case TaskCancelled:
		return 6
	}
	return 7
}

// Sentinel errors. Callers test them with errors.Is; the API maps each to one
// HTTP status.
var (
	// ErrNotFound: no such run, task or definition (for this tenant).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the stored state changed under the caller (compare-and-set lost).
	ErrConflict = errors.New("conflict")
	// ErrInvalidTransition: the state machine forbids the change.
	ErrInvalidTransition = errors.New("invalid transition")
	// ErrClosed: the engine or store is stopped.
	ErrClosed = errors.New("closed")
)

// TransitionError is a refused state change. It wraps ErrInvalidTransition.
type TransitionError struct {
	Subject string // "run" or "task ID"
	Event   EventType
	From    string
	To      string
}

func (e *TransitionError) Error() string {
	if e.To == "" {
		return fmt.Sprintf("%s: %s not allowed in state %s", e.Subject, e.Event, e.From)
	}
	return fmt.Sprintf("%s: %s not allowed: %s -> %s", e.Subject, e.Event, e.From, e.To)
}

func (e *TransitionError) Unwrap() error { return ErrInvalidTransition }

// runTransitions is the run state machine: allowed[from][to].
var runTransitions = map[RunState][]RunState{
	RunPending:   {RunRunning, RunCancelled},
	RunRunning:   {RunPaused, RunCompleted, RunFailed, RunCancelled, RunTimedOut},
	RunPaused:    {RunRunning, RunCancelled},
	RunFailed:    {RunRunning},
	RunTimedOut:  {RunRunning},
	RunCancelled: {RunRunning},
	RunCompleted: nil,
}

// taskTransitions is the task state machine: allowed[from][to].
var taskTransitions = map[TaskState][]TaskState{
	TaskPending:   {TaskReady, TaskSkipped, TaskCancelled},
	TaskReady:     {TaskRunning, TaskCancelled},
	TaskRunning:   {TaskReady, TaskCompleted, TaskFailed, TaskTimedOut, TaskCancelled},
	TaskFailed:    {TaskPending},
	TaskTimedOut:  {TaskPending},
	TaskSkipped:   {TaskPending},
	TaskCancelled: {TaskPending},
	TaskCompleted: nil,
}

// RunTransitionAllowed reports whether the run state machine allows from -> to.
func RunTransitionAllowed(from, to RunState) bool {
	for _, s := range runTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// TaskTransitionAllowed reports whether the task state machine allows from -> to.
func TaskTransitionAllowed(from, to TaskState) bool {
	for _, s := range taskTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// eventRule says which states an event may be applied in and the state it leads to.
type eventRule[S comparable] struct {
	from []S
	to   S
}

func (r eventRule[S]) allows(s S) bool {
	for _, f := range r.from {
		if f == s {
			return true
		}
	}
	return false
}

// runEvents is the run state machine by event: every pair it allows is in
// runTransitions, except a rule whose from and to are the same single
// state, which records a fact without changing state.
var runEvents = map[EventType]eventRule[RunState]{
	EventRunStarted:   {from: []RunState{RunPending}, to: RunRunning},
	EventRunPaused:    {from: []RunState{RunRunning}, to: RunPaused},
	EventRunResumed:   {from: []RunState{RunPaused}, to: RunRunning},
	EventRunCompleted: {from: []RunState{RunRunning}, to: RunCompleted},
	EventRunFailed:    {from: []RunState{RunRunning}, to: RunFailed},
	EventRunCancelled: {from: []RunState{RunPending, RunRunning, RunPaused}, to: RunCancelled},
	EventRunTimedOut:  {from: []RunState{RunRunning}, to: RunTimedOut},
	EventRunRetried:   {from: []RunState{RunFailed, RunTimedOut, RunCancelled}, to: RunRunning},
	EventRunStalled:   {from: []RunState{RunRunning}, to: RunRunning}, // not a transition: a fact about the run
}

// taskEvents is the task state machine by event: every pair it allows is in
// taskTransitions, except a rule whose from and to are the same single state,
// which records a fact without changing state.
var taskEvents = map[EventType]eventRule[TaskState]{
	EventTaskReady:         {from: []TaskState{TaskPending}, to: TaskReady},
	EventTaskStarted:       {from: []TaskState{TaskReady}, to: TaskRunning},
	EventTaskCompleted:     {from: []TaskState{TaskRunning}, to: TaskCompleted},
	EventTaskAttemptFailed: {from: []TaskState{TaskRunning}, to: TaskReady},
	EventTaskFailed:        {from: []TaskState{TaskRunning}, to: TaskFailed},
	EventTaskTimedOut:      {from: []TaskState{TaskRunning}, to: TaskTimedOut},
	EventTaskSkipped:       {from: []TaskState{TaskPending}, to: TaskSkipped},
	EventTaskCancelled:     {from: []TaskState{TaskPending, TaskReady, TaskRunning}, to: TaskCancelled},
	EventTaskReset:         {from: []TaskState{TaskFailed, TaskTimedOut, TaskSkipped, TaskCancelled}, to: TaskPending},
	EventTaskLeaseExtended: {from: []TaskState{TaskRunning}, to: TaskRunning}, // not a transition: a fact about the attempt
}

// RunEventAllowed reports whether ev may be applied to a run in state s, and the state it leads to.
func RunEventAllowed(ev EventType, s RunState) (RunState, bool) {
	r, ok := runEvents[ev]
	return r.to, ok && r.allows(s)
}

// TaskEventAllowed reports whether ev may be applied to a task in state s, and the state it leads to.
func TaskEventAllowed(ev EventType, s TaskState) (TaskState, bool) {
	r, ok := taskEvents[ev]
	return r.to, ok && r.allows(s)
}
