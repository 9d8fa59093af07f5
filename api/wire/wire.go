// Package wire is the HTTP contract of the orchestrator: the JSON bodies the
// API answers and accepts, the states and event types they carry, and the
// stable error codes of its problem documents. The server (package api) and
// the Go client (package client) both use these types, so that a field is
// named once; api/openapi.json describes the same contract and a test holds
// the two together.
//
// The package imports only the standard library: a program that talks to a
// server needs neither the engine nor the store.
package wire

// RunState is where a run is. The engine decides every change; the API only
// reports it.
type RunState string

// Run states.
const (
	RunPending   RunState = "pending"   // created, not started yet
	RunRunning   RunState = "running"   // dispatching its tasks
	RunPaused    RunState = "paused"    // no new task starts until resumed
	RunCompleted RunState = "completed" // every task completed; final
	RunFailed    RunState = "failed"    // a task failed; may be retried
	RunCancelled RunState = "cancelled" // cancelled; may be retried
	RunTimedOut  RunState = "timed_out" // passed its timeout; may be retried
)

// RunStates lists every run state.
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

// TaskState is where a task of a run is.
type TaskState string

// Task states.
const (
	TaskPending   TaskState = "pending"   // waiting for its dependencies
	TaskReady     TaskState = "ready"     // may start, not before its not_before
	TaskRunning   TaskState = "running"   // one attempt is under way
	TaskCompleted TaskState = "completed" // an attempt succeeded; final
	TaskFailed    TaskState = "failed"    // the last allowed attempt failed
	TaskSkipped   TaskState = "skipped"   // an upstream task did not complete
	TaskCancelled TaskState = "cancelled" // the run was cancelled or timed out
	TaskTimedOut  TaskState = "timed_out" // the last allowed attempt timed out
)

// TaskStates lists every task state.
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

// EventType names what an event of a run's history records, in the past tense.
type EventType string

// Event types.
const (
	EventRunCreated   EventType = "run.created"
	EventRunStarted   EventType = "run.started"
	EventRunPaused    EventType = "run.paused"
	EventRunResumed   EventType = "run.resumed"
	EventRunCompleted EventType = "run.completed"
	EventRunFailed    EventType = "run.failed"
	EventRunCancelled EventType = "run.cancelled"
	EventRunTimedOut  EventType = "run.timed_out"
	EventRunRetried   EventType = "run.retried"
	EventRunStalled   EventType = "run.stalled" // a fact, not a change of state: the run cannot progress without outside help

	EventTaskReady         EventType = "task.ready"
	EventTaskStarted       EventType = "task.started"
	EventTaskCompleted     EventType = "task.completed"
	EventTaskAttemptFailed EventType = "task.attempt_failed"
	EventTaskFailed        EventType = "task.failed"
	EventTaskTimedOut      EventType = "task.timed_out"
	EventTaskSkipped       EventType = "task.skipped"
	EventTaskCancelled     EventType = "task.cancelled"
	EventTaskReset         EventType = "task.reset"
	EventTaskLeaseExtended EventType = "task.lease_extended"
)

// EventTypes lists every event type.
func EventTypes() []EventType {
	return []EventType{EventRunCreated, EventRunStarted, EventRunPaused, EventRunResumed, EventRunCompleted,
		EventRunFailed, EventRunCancelled, EventRunTimedOut, EventRunRetried, EventTaskReady, EventTaskStarted,
		EventTaskCompleted, EventTaskAttemptFailed, EventTaskFailed, EventTaskTimedOut, EventTaskSkipped,
		EventTaskCancelled, EventTaskReset, EventTaskLeaseExtended, EventRunStalled}
}
