package engine

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType names a fact: subject, then what happened, in the past tense.
type EventType string

// Run events.
const (
	EventRunCreated   EventType = "run.created"   // -> pending; data: workflow, version, input
	EventRunStarted   EventType = "run.started"   // pending -> running; data: deadline
	EventRunPaused    EventType = "run.paused"    // running -> paused
	EventRunResumed   EventType = "run.resumed"   // paused -> running
	EventRunCompleted EventType = "run.completed" // running -> completed; data: output
	EventRunFailed    EventType = "run.failed"    // running -> failed; data: error
	EventRunCancelled EventType = "run.cancelled" // pending|running|paused -> cancelled; data: reason
	EventRunTimedOut  EventType = "run.timed_out" // running -> timed_out
	EventRunRetried   EventType = "run.retried"   // failed|timed_out|cancelled -> running; data: deadline
	EventRunStalled   EventType = "run.stalled"   // running, no change of state: it cannot progress without outside help; data: waiting
)

// Task events. Attempt is set on the events of one attempt.
const (
	EventTaskReady         EventType = "task.ready"          // pending -> ready; data: input when resolved from references
	EventTaskStarted       EventType = "task.started"        // ready -> running; data: wake_at (sleep), worker_id and lease (external)
	EventTaskCompleted     EventType = "task.completed"      // running -> completed; data: output
	EventTaskAttemptFailed EventType = "task.attempt_failed" // running -> ready; data: error, reason, not_before
	EventTaskFailed        EventType = "task.failed"         // running -> failed; data: error, reason
	EventTaskTimedOut      EventType = "task.timed_out"      // running -> timed_out; data: error
	EventTaskSkipped       EventType = "task.skipped"        // pending -> skipped; data: error
	EventTaskCancelled     EventType = "task.cancelled"      // pending|ready|running -> cancelled; data: reason
	EventTaskReset         EventType = "task.reset"          // failed|timed_out|skipped|cancelled -> pending
	EventTaskLeaseExtended EventType = "task.lease_extended" // running, no change of state; data: lease_expires_at
)

// EventTypes lists every event type.
func EventTypes() []EventType {
	return []EventType{EventRunCreated, EventRunStarted, EventRunPaused, EventRunResumed, EventRunCompleted,
		EventRunFailed, EventRunCancelled, EventRunTimedOut, EventRunRetried, EventTaskReady, EventTaskStarted,
		EventTaskCompleted, EventTaskAttemptFailed, EventTaskFailed, EventTaskTimedOut, EventTaskSkipped,
		EventTaskCancelled, EventTaskReset, EventTaskLeaseExtended, EventRunStalled}
}

// Reasons recorded on failure and cancellation events.
const (
	ReasonError          = "error"           // the handler returned an error
	ReasonTimeout        = "timeout"         // the attempt exceeded the task timeout
	ReasonAbandoned      = "abandoned"       // the process running the attempt stopped; not charged to the retry budget
	ReasonInterrupted    = "interrupted"     // the engine stopped during the attempt; not charged to the retry budget
	ReasonCircuitOpen    = "circuit_open"    // a circuit breaker held the attempt back; not charged to the retry budget
	ReasonThrottled      = "throttled"       // an adaptive concurrency limit held the attempt back; not charged to the retry budget
	ReasonPermanent      = "permanent"       // the handler said retrying cannot help
	ReasonLeaseExpired   = "lease_expired"   // an external worker stopped heartbeating
	ReasonPanic          = "panic"           // the handler panicked
	ReasonUpstreamFailed = "upstream_failed" // a dependency did not complete
	ReasonRunCancelled   = "run_cancelled"
	ReasonRunTimedOut    = "run_timed_out"
)

// Refunded reports whether a failure for this reason gives the attempt back to
// the retry budget: the task did not fail, the process running it stopped.
func Refunded(reason string) bool {
	return reason == ReasonAbandoned || reason == ReasonInterrupted || reason == ReasonCircuitOpen || reason == ReasonThrottled
}

// Actors recorded on events the engine decides by itself.
const (
	ActorEngine = "engine"
)

// TimeFormat is how times are written to the store and hashed: UTC, fixed width
// and microsecond precision, so text order is time order.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// FormatTime writes t in TimeFormat; the zero time is "".
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeFormat)
}

// ParseTime reads a time written by FormatTime; "" is the zero time.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(TimeFormat, s)
}

// TaskError is why an attempt or a run failed.
type TaskError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *TaskError) Error() string { return e.Code + ": " + e.Message }

// Event is one fact of a run's history. Seq numbers a run's events 1..n without
// gaps; Hash chains each event to the previous one of its run.
type Event struct {
	ID       int64     `json:"id,omitempty"` // global log position, assigned by the store
	TenantID string    `json:"tenant_id"`
	RunID    string    `json:"run_id"`
	Seq      int64     `json:"seq"`
	Type     EventType `json:"type"`
	TaskID   string    `json:"task_id,omitempty"`
	Attempt  int       `json:"attempt,omitempty"`
	Actor    string    `json:"actor"`
	// OnBehalf is whom the actor acted for (Caller.OnBehalf): the X-Actor
	// a key named, or the worker id of an external worker's report.
	OnBehalf string          `json:"on_behalf,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	At       time.Time       `json:"at"`
	Hash     string          `json:"hash"`
}

// EventData is the payload of every event type; each type uses the fields its
// comment names.
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
	// ConcurrencyKey is, in run.created, the value of the definition's
	// concurrency key for this run.
	ConcurrencyKey string `json:"concurrency_key,omitempty"`
	// External attempts: who holds the lease, until when, and the SHA-256 of
	// its token (the token itself is never stored).
	WorkerID       string    `json:"worker_id,omitempty"`
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`
	LeaseHash      string    `json:"lease_hash,omitempty"`
	// Policy is the decision of the authorization policy that allowed the
	// call causing the event, on the first event of that call only.
	Policy *PolicyDecision `json:"policy,omitempty"`
	// run.created: what started the run (a schedule, a trigger) and the
	// alias its version was chosen by.
	Origin *Origin `json:"origin,omitempty"`
	Alias  string  `json:"alias,omitempty"`
	// Waiting is why each task waited when run.stalled was recorded (at
	// most maxStalledReasons of them).
	Waiting []TaskWait `json:"waiting,omitempty"`
}

// ComputeHash returns the chain hash of e given the hash of the run's previous
// event ("" for the first). It covers every field but ID and Hash; OnBehalf
// only when it is set, so that events recorded before it existed keep their
// hashes (the length prefix of Data says where Data ends, so an appended
// field cannot be mistaken for part of it).
func (e *Event) ComputeHash(prev string) string {
	w := newChainWriter(prev)
	w.str(e.TenantID)
	w.str(e.RunID)
	w.num(e.Seq)
	w.str(string(e.Type))
	w.str(e.TaskID)
	w.num(int64(e.Attempt))
	w.str(e.Actor)
	w.str(FormatTime(e.At))
	w.str(string(e.Data))
	if e.OnBehalf != "" {
		w.str(e.OnBehalf)
	}
	return w.sum()
}

// VerifyChain checks that events are a run's complete history: seq 1..n without
// gaps, one run, and every hash chaining to the previous one.
func VerifyChain(events []Event) error {
	prev := ""
	for i := range events {
		e := &events[i]
		if e.Seq != int64(i+1) {
			return fmt.Errorf("event %d: seq %d, want %d", i, e.Seq, i+1)
		}
		if e.RunID != events[0].RunID {
			return fmt.Errorf("seq %d: run %s in the history of run %s", e.Seq, e.RunID, events[0].RunID)
		}
		if want := e.ComputeHash(prev); e.Hash != want {
			return fmt.Errorf("seq %d: hash %s, want %s", e.Seq, e.Hash, want)
		}
		prev = e.Hash
	}
	return nil
}
