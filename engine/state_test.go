package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// designRun is the run state machine as DESIGN.md states it: from -> allowed targets.
var designRun = map[RunState][]RunState{
	RunPending:   {RunRunning, RunCancelled},
	RunRunning:   {RunPaused, RunCompleted, RunFailed, RunCancelled, RunTimedOut},
	RunPaused:    {RunRunning, RunCancelled},
	RunFailed:    {RunRunning},
	RunTimedOut:  {RunRunning},
	RunCancelled: {RunRunning},
	RunCompleted: nil,
}

// designTask is the task state machine as DESIGN.md states it.
var designTask = map[TaskState][]TaskState{
	TaskPending:   {TaskReady, TaskSkipped, TaskCancelled},
	TaskReady:     {TaskRunning, TaskCancelled},
	TaskRunning:   {TaskReady, TaskCompleted, TaskFailed, TaskTimedOut, TaskCancelled},
	TaskFailed:    {TaskPending},
	TaskTimedOut:  {TaskPending},
	TaskSkipped:   {TaskPending},
	TaskCancelled: {TaskPending},
	TaskCompleted: nil,
}

func TestRunTransitionAllowed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	is.Equal(len(RunStates()), 7)              // seven run states
	is.Equal(len(designRun), len(RunStates())) // the design names every state
	for _, from := range RunStates() {
		for _, to := range RunStates() {
			want := slices.Contains(designRun[from], to)
			t.Run(fmt.Sprintf("%s to %s", from, to), func(t *testing.T) {
				is := is.New(t)
				is.Equal(RunTransitionAllowed(from, to), want) // the table matches DESIGN.md
			})
		}
	}
	t.Run("unknown states are refused", func(t *testing.T) {
		is := is.New(t)
		is.True(!RunTransitionAllowed("bogus", RunRunning)) // unknown from
		is.True(!RunTransitionAllowed(RunPending, "bogus")) // unknown to
	})
	t.Run("terminal states are the ended ones", func(t *testing.T) {
		is := is.New(t)
		for _, s := range RunStates() {
			want := s == RunCompleted || s == RunFailed || s == RunCancelled || s == RunTimedOut
			is.Equal(s.Terminal(), want) // Terminal
		}
	})
}

func TestTaskTransitionAllowed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	is.Equal(len(TaskStates()), 8)               // eight task states
	is.Equal(len(designTask), len(TaskStates())) // the design names every state
	for _, from := range TaskStates() {
		for _, to := range TaskStates() {
			want := slices.Contains(designTask[from], to)
			t.Run(fmt.Sprintf("%s to %s", from, to), func(t *testing.T) {
				is := is.New(t)
				is.Equal(TaskTransitionAllowed(from, to), want) // the table matches DESIGN.md
			})
		}
	}
	t.Run("terminal states are the ended ones", func(t *testing.T) {
		is := is.New(t)
		for _, s := range TaskStates() {
			want := s != TaskPending && s != TaskReady && s != TaskRunning
			is.Equal(s.Terminal(), want) // Terminal
		}
	})
	t.Run("state counters have one slot per state", func(t *testing.T) {
		is := is.New(t)
		seen := map[int]TaskState{}
		for _, s := range TaskStates() {
			i := taskStateIndex(s)
			is.True(i >= 0 && i < numTaskStates) // index in range
			_, dup := seen[i]
			is.True(!dup) // no two states share a counter
			seen[i] = s
		}
		is.Equal(len(seen), numTaskStates) // every counter is used
	})
}

// allRunEvents and allTaskEvents list every declared event type but run.created.
var (
	allRunEvents = []EventType{EventRunStarted, EventRunPaused, EventRunResumed, EventRunCompleted,
		EventRunFailed, EventRunCancelled, EventRunTimedOut, EventRunRetried, EventRunStalled}
	allTaskEvents = []EventType{EventTaskReady, EventTaskStarted, EventTaskCompleted, EventTaskAttemptFailed,
		EventTaskFailed, EventTaskTimedOut, EventTaskSkipped, EventTaskCancelled, EventTaskReset, EventTaskLeaseExtended}
)

func TestTransitionError(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	err := error(&TransitionError{Subject: "run", Event: EventRunPaused, From: "completed", To: "paused"})
	is.Equal(err.Error(), "run: run.paused not allowed: completed -> paused") // with a target
	err = &TransitionError{Subject: "run", Event: EventRunRetried, From: "running"}
	is.Equal(err.Error(), "run: run.retried not allowed in state running") // without one
	is.True(errors.Is(err, ErrInvalidTransition))                          // wraps the sentinel
	is.True(!errors.Is(err, ErrConflict))                                  // and no other
	is.Equal((&TaskError{Code: "timeout", Message: "too slow"}).Error(), "timeout: too slow")
}

func TestEventRules(t *testing.T) {
	t.Parallel()

	t.Run("every run event rule stays inside the run table", func(t *testing.T) {
		is := is.New(t)
		for typ, r := range runEvents {
			is.True(len(r.from) > 0) // a rule applies somewhere
			if len(r.from) == 1 && r.from[0] == r.to {
				continue // a fact about the state, not a transition (run.stalled)
			}
			for _, from := range r.from {
				if !RunTransitionAllowed(from, r.to) {
					t.Errorf("%s: %s -> %s is not in the run table", typ, from, r.to)
				}
			}
		}
	})

	t.Run("every task event rule stays inside the task table", func(t *testing.T) {
		is := is.New(t)
		for typ, r := range taskEvents {
			is.True(len(r.from) > 0) // a rule applies somewhere
			if len(r.from) == 1 && r.from[0] == r.to {
				continue // a fact about the state, not a transition (task.lease_extended)
			}
			for _, from := range r.from {
				if !TaskTransitionAllowed(from, r.to) {
					t.Errorf("%s: %s -> %s is not in the task table", typ, from, r.to)
				}
			}
		}
	})

	t.Run("every allowed pair is reached by some event", func(t *testing.T) {
		for from, tos := range runTransitions {
			for _, to := range tos {
				found := false
				for _, r := range runEvents {
					found = found || (r.to == to && r.allows(from))
				}
				if !found {
					t.Errorf("run %s -> %s is allowed but no event leads there", from, to)
				}
			}
		}
		for from, tos := range taskTransitions {
			for _, to := range tos {
				found := false
				for _, r := range taskEvents {
					found = found || (r.to == to && r.allows(from))
				}
				if !found {
					t.Errorf("task %s -> %s is allowed but no event leads there", from, to)
				}
			}
		}
	})

	t.Run("every declared event type has a rule", func(t *testing.T) {
		is := is.New(t)
		is.Equal(len(runEvents), len(allRunEvents))   // no rule for an undeclared run event
		is.Equal(len(taskEvents), len(allTaskEvents)) // no rule for an undeclared task event
		for _, typ := range allRunEvents {
			_, ok := runEvents[typ]
			is.True(ok)                                     // run event has a rule
			is.True(strings.HasPrefix(string(typ), "run.")) // named run.*
		}
		for _, typ := range allTaskEvents {
			_, ok := taskEvents[typ]
			is.True(ok)                                      // task event has a rule
			is.True(strings.HasPrefix(string(typ), "task.")) // named task.*
		}
	})

	t.Run("RunEventAllowed and TaskEventAllowed follow the rules", func(t *testing.T) {
		is := is.New(t)
		for _, typ := range allRunEvents {
			for _, s := range RunStates() {
				to, ok := RunEventAllowed(typ, s)
				is.Equal(ok, runEvents[typ].allows(s)) // allowed exactly where the rule says
				is.Equal(to, runEvents[typ].to)        // leads where the rule says
			}
		}
		for _, typ := range allTaskEvents {
			for _, s := range TaskStates() {
				to, ok := TaskEventAllowed(typ, s)
				is.Equal(ok, taskEvents[typ].allows(s)) // allowed exactly where the rule says
				is.Equal(to, taskEvents[typ].to)        // leads where the rule says
			}
		}
		_, ok := RunEventAllowed("run.exploded", RunRunning)
		is.True(!ok) // unknown run event refused
		_, ok = TaskEventAllowed("task.exploded", TaskRunning)
		is.True(!ok) // unknown task event refused
		_, ok = RunEventAllowed(EventTaskStarted, RunRunning)
		is.True(!ok) // a task event is no run event
	})
}

// testPlan compiles a definition for hand-built histories.
func testPlan(t testing.TB, def string) *definition.Plan {
	t.Helper()
	_, plan, problems := definition.CompileJSON([]byte(def), definition.ValidateOptions{})
	if len(problems) > 0 {
		t.Fatalf("compile: %v", problems)
	}
	return plan
}

// history builds a run's events by hand, chaining seq and hash, and applies
// each to a live projection as the engine does.
type history struct {
	t      testing.TB
	view   *RunView
	events []Event
	at     time.Time
}

func newHistory(t testing.TB, plan *definition.Plan) *history {
	return &history{t: t, view: NewRunView(plan), at: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// event returns the next event of the history without applying it.
func (h *history) event(typ EventType, task string, attempt int, d *EventData) Event {
	ev := Event{TenantID: "acme", RunID: "run-1", Seq: int64(len(h.events) + 1), Type: typ, TaskID: task,
		Attempt: attempt, Actor: "test", At: h.at}
	if d != nil {
		data, err := json.Marshal(d)
		if err != nil {
			h.t.Fatalf("encode data: %v", err)
		}
		ev.Data = data
	}
	prev := ""
	if n := len(h.events); n > 0 {
		prev = h.events[n-1].Hash
	}
	ev.Hash = ev.ComputeHash(prev)
	return ev
}

// add applies the next event, which must be allowed, and records it.
func (h *history) add(typ EventType, task string, attempt int, d *EventData) {
	h.t.Helper()
	ev := h.event(typ, task, attempt, d)
	if err := h.view.Apply(&ev); err != nil {
		h.t.Fatalf("apply %s %s: %v", typ, task, err)
	}
	h.events = append(h.events, ev)
	h.at = h.at.Add(time.Millisecond)
}

// snapshot copies everything Apply may change.
func snapshot(v *RunView) RunView {
	c := *v
	c.Tasks = slices.Clone(v.Tasks)
	return c
}

const abDef = `{"name":"ab","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`

func TestRunView_Apply(t *testing.T) {
	t.Parallel()
	plan := testPlan(t, abDef)

	// running: a running its attempt 1, b pending.
	running := func(t *testing.T) *history {
		h := newHistory(t, plan)
		h.add(EventRunCreated, "", 0, &EventData{Workflow: "ab", Version: 1})
		h.add(EventRunStarted, "", 0, nil)
		h.add(EventTaskReady, "a", 0, nil)
		h.add(EventTaskStarted, "a", 1, nil)
		return h
	}
	completed := func(t *testing.T) *history {
		h := running(t)
		h.add(EventTaskCompleted, "a", 1, &EventData{Output: json.RawMessage(`{"x":1}`)})
		h.add(EventTaskReady, "b", 0, nil)
		h.add(EventTaskStarted, "b", 1, nil)
		h.add(EventTaskCompleted, "b", 1, nil)
		h.add(EventRunCompleted, "", 0, nil)
		return h
	}
	retrying := func(t *testing.T) *history { // a failed attempt 1 and runs attempt 2
		h := running(t)
		h.add(EventTaskAttemptFailed, "a", 1, &EventData{Error: &TaskError{Code: "error", Message: "boom"}, Reason: ReasonError})
		h.add(EventTaskStarted, "a", 2, nil)
		return h
	}

	refusals := []struct {
		name    string
		setup   func(*testing.T) *history
		typ     EventType
		task    string
		attempt int
		from    string
		to      string
	}{
		{"task.completed on a pending task", running, EventTaskCompleted, "b", 0, "pending", "completed"},
		{"task.started on a pending task", running, EventTaskStarted, "b", 1, "pending", "running"},
		{"run.paused on a completed run", completed, EventRunPaused, "", 0, "completed", "paused"},
		{"run.retried on a completed run", completed, EventRunRetried, "", 0, "completed", "running"},
		{"run.resumed on a running run", running, EventRunResumed, "", 0, "running", "running"},
		{"run.started twice", running, EventRunStarted, "", 0, "running", "running"},
		{"task.reset of a completed task", completed, EventTaskReset, "a", 0, "completed", "pending"},
		{"task.ready of a completed task", completed, EventTaskReady, "b", 0, "completed", "ready"},
		{"task.started with the wrong attempt number", func(t *testing.T) *history {
			h := running(t)
			h.add(EventTaskAttemptFailed, "a", 1, &EventData{Reason: ReasonError})
			return h
		}, EventTaskStarted, "a", 3, "ready", "running"},
		{"task.started repeating the attempt number", func(t *testing.T) *history {
			h := running(t)
			h.add(EventTaskAttemptFailed, "a", 1, &EventData{Reason: ReasonError})
			return h
		}, EventTaskStarted, "a", 1, "ready", "running"},
		{"task.started while the run is paused", func(t *testing.T) *history {
			h := running(t)
			h.add(EventTaskCompleted, "a", 1, nil)
			h.add(EventTaskReady, "b", 0, nil)
			h.add(EventRunPaused, "", 0, nil)
			return h
		}, EventTaskStarted, "b", 1, "ready", "running"},
		{"a late completion of an earlier attempt", retrying, EventTaskCompleted, "a", 1, "running", "completed"},
		{"a late failure of an earlier attempt", retrying, EventTaskAttemptFailed, "a", 1, "running", "ready"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			h := tc.setup(t)
			before := snapshot(h.view)
			ev := h.event(tc.typ, tc.task, tc.attempt, nil)
			err := h.view.Apply(&ev)
			var te *TransitionError
			is.True(errors.As(err, &te))                         // a *TransitionError
			is.True(errors.Is(err, ErrInvalidTransition))        // wrapping ErrInvalidTransition
			is.Equal(te.Event, tc.typ)                           // names the event
			is.Equal(te.From, tc.from)                           // names the current state
			is.Equal(te.To, tc.to)                               // and the refused target
			is.True(reflect.DeepEqual(snapshot(h.view), before)) // the projection is unchanged
		})
	}

	t.Run("an event after a seq gap is a conflict", func(t *testing.T) {
		is := is.New(t)
		h := running(t)
		before := snapshot(h.view)
		ev := h.event(EventTaskCompleted, "a", 1, nil)
		ev.Seq++ // skip one
		err := h.view.Apply(&ev)
		is.True(errors.Is(err, ErrConflict))                 // gap is a conflict
		is.True(!errors.Is(err, ErrInvalidTransition))       // not a state machine refusal
		is.True(reflect.DeepEqual(snapshot(h.view), before)) // unchanged
		ev.Seq -= 2                                          // a repeated seq
		is.True(errors.Is(h.view.Apply(&ev), ErrConflict))   // replaying an old seq is a conflict
		is.True(reflect.DeepEqual(snapshot(h.view), before)) // unchanged
	})

	t.Run("run.created after the first event is refused", func(t *testing.T) {
		is := is.New(t)
		h := running(t)
		before := snapshot(h.view)
		ev := h.event(EventRunCreated, "", 0, &EventData{Workflow: "ab", Version: 1})
		err := h.view.Apply(&ev)
		is.True(errors.Is(err, ErrInvalidTransition))        // a second creation is refused
		is.True(reflect.DeepEqual(snapshot(h.view), before)) // unchanged
	})

	t.Run("unknown task and unknown event type", func(t *testing.T) {
		is := is.New(t)
		h := running(t)
		before := snapshot(h.view)
		ev := h.event(EventTaskReady, "nope", 0, nil)
		is.True(errors.Is(h.view.Apply(&ev), ErrNotFound)) // task not in the plan
		ev = h.event("task.exploded", "a", 1, nil)
		is.True(h.view.Apply(&ev) != nil) // unknown task event
		ev = h.event("run.exploded", "", 0, nil)
		is.True(h.view.Apply(&ev) != nil) // unknown run event
		ev = h.event(EventTaskCompleted, "a", 1, nil)
		ev.Data = json.RawMessage(`{"output":`)
		is.True(h.view.Apply(&ev) != nil)                    // undecodable data
		is.True(reflect.DeepEqual(snapshot(h.view), before)) // unchanged by all of them
	})

	t.Run("a task event before run.created is refused", func(t *testing.T) {
		is := is.New(t)
		h := newHistory(t, plan)
		ev := h.event(EventTaskReady, "a", 0, nil)
		is.True(h.view.Apply(&ev) != nil) // nothing to apply it to
		ev = h.event(EventRunStarted, "", 0, nil)
		is.True(errors.Is(h.view.Apply(&ev), ErrInvalidTransition)) // a run that does not exist cannot start
	})

	t.Run("allowed events update the counters", func(t *testing.T) {
		is := is.New(t)
		h := completed(t)
		is.Equal(h.view.Count(TaskCompleted), 2) // both completed
		is.Equal(h.view.Count(TaskPending), 0)   // none pending
		is.Equal(h.view.Run.State, RunCompleted) // run completed
		is.Equal(h.view.Run.LastSeq, int64(len(h.events)))
		is.Equal(h.view.Run.LastHash, h.events[len(h.events)-1].Hash) // the chain head
		is.True(!h.view.Run.EndedAt.IsZero())                         // ended
	})
}

func TestRunView_RetryBudget(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	h := newHistory(t, testPlan(t, abDef))
	h.add(EventRunCreated, "", 0, &EventData{Workflow: "ab", Version: 1})
	h.add(EventRunStarted, "", 0, nil)
	h.add(EventTaskReady, "a", 0, nil)
	h.add(EventTaskStarted, "a", 1, nil)
	is.Equal(h.view.Task("a").Charged, 1) // a started attempt is charged
	h.add(EventTaskAttemptFailed, "a", 1, &EventData{Reason: ReasonInterrupted})
	is.Equal(h.view.Task("a").Charged, 0) // an interrupted attempt is refunded
	h.add(EventTaskStarted, "a", 2, nil)
	h.add(EventTaskAttemptFailed, "a", 2, &EventData{Reason: ReasonAbandoned})
	is.Equal(h.view.Task("a").Charged, 0) // an abandoned attempt is refunded
	h.add(EventTaskStarted, "a", 3, nil)
	h.add(EventTaskFailed, "a", 3, &EventData{Reason: ReasonError, Error: &TaskError{Code: "error", Message: "x"}})
	h.add(EventTaskSkipped, "b", 0, &EventData{Reason: ReasonUpstreamFailed})
	h.add(EventRunFailed, "", 0, &EventData{Error: &TaskError{Code: "task_failed", Message: "a"}})
	is.Equal(h.view.Task("a").Attempt, 3) // three attempts started
	is.Equal(h.view.Task("a").Charged, 1) // one charged
	h.add(EventRunRetried, "", 0, &EventData{Tasks: []string{"a", "b"}})
	h.add(EventTaskReset, "a", 0, nil)
	h.add(EventTaskReset, "b", 0, nil)
	a := h.view.Task("a")
	is.Equal(a.State, TaskPending)                                  // reset to pending
	is.Equal(a.Charged, 0)                                          // a fresh budget
	is.Equal(a.Attempt, 3)                                          // attempt numbers carry on
	is.True(a.Error == nil)                                         // the old error is gone
	is.True(a.EndedAt.IsZero())                                     // not ended
	is.True(h.view.Run.Error == nil && h.view.Run.EndedAt.IsZero()) // the run is running again
	h.add(EventTaskReady, "a", 0, nil)
	ev := h.event(EventTaskStarted, "a", 1, nil)
	is.True(errors.Is(h.view.Apply(&ev), ErrInvalidTransition)) // attempt numbers never restart
	h.add(EventTaskStarted, "a", 4, nil)
}

func TestReplay(t *testing.T) {
	t.Parallel()

	t.Run("a hand-built history replays to the live projection", func(t *testing.T) {
		is := is.New(t)
		plan := testPlan(t, `{"name":"r","timeout":"1h","tasks":[{"id":"a","type":"noop","retry":{"max_attempts":3}},
			{"id":"s","type":"sleep","config":{"duration":"1s"},"depends_on":["a"]},{"id":"c","type":"noop","depends_on":["a"]}]}`)
		h := newHistory(t, plan)
		h.add(EventRunCreated, "", 0, &EventData{Workflow: "r", Version: 1, Input: json.RawMessage(`{"in": 1}`)})
		h.add(EventRunStarted, "", 0, &EventData{Deadline: h.at.Add(time.Hour)})
		h.add(EventTaskReady, "a", 0, nil)
		h.add(EventTaskStarted, "a", 1, nil)
		h.add(EventTaskAttemptFailed, "a", 1, &EventData{Error: &TaskError{Code: "error", Message: "no"}, Reason: ReasonError, NotBefore: h.at.Add(time.Second)})
		h.add(EventRunPaused, "", 0, nil)
		h.add(EventRunResumed, "", 0, nil)
		h.add(EventTaskStarted, "a", 2, nil)
		h.add(EventTaskCompleted, "a", 2, &EventData{Output: json.RawMessage(`{"v": 2}`)})
		h.add(EventTaskReady, "c", 0, nil)
		h.add(EventTaskReady, "s", 0, nil)
		h.add(EventTaskStarted, "s", 1, &EventData{WakeAt: h.at.Add(time.Second)})
		h.add(EventTaskCancelled, "c", 0, &EventData{Reason: ReasonRunCancelled})
		h.add(EventTaskCancelled, "s", 1, &EventData{Reason: ReasonRunCancelled})
		h.add(EventRunCancelled, "", 0, &EventData{Reason: ReasonRunCancelled})
		h.add(EventRunRetried, "", 0, &EventData{Tasks: []string{"c", "s"}, Deadline: h.at.Add(time.Hour)})
		h.add(EventTaskReset, "c", 0, nil)
		h.add(EventTaskReset, "s", 0, nil)
		h.add(EventTaskReady, "c", 0, nil)
		h.add(EventTaskReady, "s", 0, nil)
		h.add(EventTaskStarted, "s", 2, &EventData{WakeAt: h.at.Add(time.Second)})
		replayed, err := Replay(plan, h.events)
		is.NoErr(err)                                 // replay
		is.True(EqualRun(&replayed.Run, &h.view.Run)) // same run
		for i := range h.view.Tasks {
			is.True(EqualTask(&replayed.Tasks[i], &h.view.Tasks[i])) // same task
		}
		is.Equal(replayed.Task("a").Attempt, 2)                             // two attempts
		is.Equal(replayed.Task("s").State, TaskRunning)                     // sleep under way
		is.Equal(replayed.Task("s").Attempt, 2)                             // its second attempt, after the retry
		is.Equal(replayed.Task("c").State, TaskReady)                       // c ready again
		is.True(!replayed.Task("s").WakeAt.IsZero())                        // with its wake time
		is.True(jsonEqual(replayed.Run.Input, json.RawMessage(`{"in":1}`))) // input kept
		is.NoErr(VerifyChain(h.events))                                     // a valid chain
	})

	t.Run("replay stops at the first refused event", func(t *testing.T) {
		is := is.New(t)
		plan := testPlan(t, abDef)
		h := newHistory(t, plan)
		h.add(EventRunCreated, "", 0, &EventData{Workflow: "ab", Version: 1})
		h.add(EventRunStarted, "", 0, nil)
		bad := h.event(EventTaskCompleted, "b", 0, nil)
		events := append(slices.Clone(h.events), bad)
		v, err := Replay(plan, events)
		is.True(errors.Is(err, ErrInvalidTransition)) // refused
		is.Equal(v.Run.LastSeq, int64(2))             // stopped after seq 2
	})
}

func TestRetry_Wait(t *testing.T) {
	t.Parallel()
	base := definition.Retry{MaxAttempts: 10, InitialInterval: 100 * time.Millisecond, Backoff: 2, MaxInterval: time.Second}

	t.Run("waits grow exponentially up to the cap", func(t *testing.T) {
		is := is.New(t)
		want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
		for i, w := range want {
			is.Equal(base.Wait("r", "t", i+1), w*time.Millisecond) // InitialInterval * Backoff^(n-1), capped
		}
		is.Equal(base.Wait("r", "t", 0), 100*time.Millisecond) // n < 1 counts as 1
		is.Equal(base.Wait("r", "t", 1000), time.Second)       // a huge n stays at the cap
		three := base
		three.Backoff = 3
		is.Equal(three.Wait("r", "t", 3), 900*time.Millisecond) // another factor
		flat := base
		flat.Backoff = 1
		is.Equal(flat.Wait("r", "t", 7), 100*time.Millisecond) // backoff 1 is constant
	})

	t.Run("without a cap the wait stops at the duration limit", func(t *testing.T) {
		is := is.New(t)
		r := base
		r.MaxInterval = 0
		is.Equal(r.Wait("r", "t", 1000), definition.MaxDurationLimit) // bounded even for huge n
	})

	t.Run("jitter is deterministic and bounded", func(t *testing.T) {
		is := is.New(t)
		r := base
		r.Jitter = 0.25
		for n := 1; n <= 8; n++ {
			plain := base.Wait("run-1", "task-a", n)
			got := r.Wait("run-1", "task-a", n)
			is.Equal(got, r.Wait("run-1", "task-a", n)) // same (run, task, attempt), same wait
			lo := time.Duration(float64(plain) * 0.75)
			hi := time.Duration(float64(plain) * 1.25)
			is.True(got >= lo && got <= hi) // within +-25% of the plain wait
		}
		others := map[time.Duration]bool{}
		for i := 0; i < 16; i++ {
			others[r.Wait(fmt.Sprintf("run-%d", i), "task-a", 1)] = true
		}
		is.True(len(others) > 1)                              // different runs get different jitter
		is.True(r.Wait("ab", "c", 1) != r.Wait("a", "bc", 1)) // run and task ids are kept apart
	})

	// Regression: the attempt number is hashed last by FNV-1a, whose final
	// multiply carries a change of the last bytes only ~40 bits upward; without
	// a finalizer the jitter fraction of consecutive attempts differed by
	// ~1e-7, so every attempt of a task got the same jitter factor.
	t.Run("jitter differs across attempts", func(t *testing.T) {
		is := is.New(t)
		r := base
		r.Backoff = 1 // the same plain wait for every attempt: only the jitter varies
		r.Jitter = 0.5
		spread := map[int64]bool{}
		for n := 1; n <= 8; n++ {
			// the jitter factor, to 1/1000: equal factors here are equal to the eye
			spread[int64(float64(r.Wait("run-1", "task-a", n))/float64(r.InitialInterval)*1000)] = true
		}
		is.True(len(spread) > 1) // eight attempts do not all share one jitter factor
	})
}

func TestVerifyChain(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T) []Event {
		h := newHistory(t, testPlan(t, abDef))
		h.add(EventRunCreated, "", 0, &EventData{Workflow: "ab", Version: 1})
		h.add(EventRunStarted, "", 0, nil)
		h.add(EventTaskReady, "a", 0, nil)
		h.add(EventTaskStarted, "a", 1, nil)
		h.add(EventTaskCompleted, "a", 1, &EventData{Output: json.RawMessage(`{"amount":100}`)})
		h.add(EventTaskReady, "b", 0, nil)
		return h.events
	}

	t.Run("an intact history verifies", func(t *testing.T) {
		is := is.New(t)
		is.NoErr(VerifyChain(build(t))) // intact
		is.NoErr(VerifyChain(nil))      // an empty history is trivially intact
	})

	t.Run("a tampered data field is detected", func(t *testing.T) {
		is := is.New(t)
		events := build(t)
		events[4].Data = json.RawMessage(`{"amount":1000}`)
		is.True(VerifyChain(events) != nil) // data changed
	})

	t.Run("a tampered field with a recomputed hash breaks the next link", func(t *testing.T) {
		is := is.New(t)
		events := build(t)
		events[2].Actor = "mallory"
		events[2].Hash = events[2].ComputeHash(events[1].Hash)
		err := VerifyChain(events)
		is.True(err != nil)                             // the following event no longer chains
		is.True(strings.Contains(err.Error(), "seq 4")) // names where the chain breaks
	})

	t.Run("other covered fields are detected", func(t *testing.T) {
		for name, mutate := range map[string]func(*Event){
			"tenant":  func(e *Event) { e.TenantID = "other" },
			"type":    func(e *Event) { e.Type = EventTaskCompleted },
			"task":    func(e *Event) { e.TaskID = "b" },
			"attempt": func(e *Event) { e.Attempt = 2 },
			"actor":   func(e *Event) { e.Actor = "mallory" },
			"time":    func(e *Event) { e.At = e.At.Add(time.Microsecond) },
		} {
			t.Run(name, func(t *testing.T) {
				is := is.New(t)
				events := build(t)
				mutate(&events[3])
				is.True(VerifyChain(events) != nil) // detected
			})
		}
	})

	t.Run("a reordered event is detected", func(t *testing.T) {
		is := is.New(t)
		events := build(t)
		events[2], events[3] = events[3], events[2]
		is.True(VerifyChain(events) != nil) // out of order
		events = build(t)
		events[2].Seq, events[3].Seq = events[3].Seq, events[2].Seq
		events[2], events[3] = events[3], events[2]
		is.True(VerifyChain(events) != nil) // renumbered but not rehashed
	})

	t.Run("a gap is detected", func(t *testing.T) {
		is := is.New(t)
		events := build(t)
		events = append(events[:3], events[4:]...)
		is.True(VerifyChain(events) != nil) // seq 4 missing
		events = build(t)
		is.True(VerifyChain(events[1:]) != nil) // the first event missing
	})

	t.Run("an event of another run is detected", func(t *testing.T) {
		is := is.New(t)
		events := build(t)
		events[3].RunID = "run-2"
		events[3].Hash = events[3].ComputeHash(events[2].Hash)
		events[4].Hash = events[4].ComputeHash(events[3].Hash)
		events[5].Hash = events[5].ComputeHash(events[4].Hash)
		is.True(VerifyChain(events) != nil) // mixed runs
	})
}
