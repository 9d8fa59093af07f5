package storetest

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// patience bounds every wait of the suite; reaching it is a failure, not a
// way to wait.
const patience = 20 * time.Second

// wfJSON is a definition of two noop tasks, b after a. The histories of the
// suite run it.
const wfJSON = `{"name":"wf","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`

// otherJSON is a second definition, for filters by workflow.
const otherJSON = `{"name":"other","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`

// base is the first time of the histories; it carries nanoseconds, so that
// a store keeping microseconds shows that it does.
var base = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

// micro returns t as a store keeps it.
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// storedDefinition compiles a definition and returns what PutDefinition takes, as
// the engine makes it: canonical JSON and its sha256.
func storedDefinition(t testing.TB, tenant, data string) (*engine.StoredDefinition, *definition.Plan) {
	t.Helper()
	def, plan, problems := definition.CompileJSON([]byte(data), definition.ValidateOptions{})
	if len(problems) > 0 {
		t.Fatalf("compile definition: %v", problems)
	}
	canonical, err := json.Marshal(def)
	if err != nil {
		t.Fatalf("encode definition: %v", err)
	}
	sum := sha256.Sum256(canonical)
	return &engine.StoredDefinition{TenantID: tenant, Name: def.Name, Definition: canonical,
		Hash: hex.EncodeToString(sum[:]), CreatedAt: base}, plan
}

// define stores a definition for tenant and returns its plan.
func define(t testing.TB, s engine.Store, tenant, data string) *definition.Plan {
	t.Helper()
	sd, plan := storedDefinition(t, tenant, data)
	if _, _, err := s.PutDefinition(t.Context(), sd); err != nil {
		t.Fatalf("put definition %s for %s: %v", sd.Name, tenant, err)
	}
	return plan
}

// ev is an event to add to a history.
type ev struct {
	typ     engine.EventType
	task    string
	attempt int
	data    *engine.EventData
	actor   string    // default "test"
	at      time.Time // default the history's clock, a little later each event
}

// Events of the histories.
var (
	evCreated = ev{typ: engine.EventRunCreated, data: &engine.EventData{Workflow: "wf", Version: 1,
		Input: json.RawMessage(`{"n":1}`)}}
	evStarted = ev{typ: engine.EventRunStarted}
)

// history builds a run's events by hand, as the engine would: numbered,
// hash-chained, and folded through engine.Replay into the rows they
// produce. It is not safe for concurrent use.
type history struct {
	t      testing.TB
	plan   *definition.Plan
	tenant string
	runID  string
	clock  time.Time
	actor  string // of events that name none; default "test"
	// onBehalf is whom every event's actor acted for; default none.
	onBehalf string
	events   []engine.Event
	tasks    []engine.Task // the task rows after events
}

func newHistory(t testing.TB, plan *definition.Plan, tenant, runID string) *history {
	return &history{t: t, plan: plan, tenant: tenant, runID: runID, clock: base}
}

// next appends events and returns the Change that records them: an insert
// for the first events of the run, else an update after the last seq that
// carries only the task rows it changed.
func (h *history) next(evs ...ev) engine.Change {
	h.t.Helper()
	prevSeq := int64(len(h.events))
	prevHash := ""
	if prevSeq > 0 {
		prevHash = h.events[prevSeq-1].Hash
	}
	var added []engine.Event
	for _, s := range evs {
		h.clock = h.clock.Add(time.Millisecond + 789*time.Nanosecond)
		if !s.at.IsZero() {
			h.clock = s.at
		}
		actor := cmp.Or(s.actor, h.actor, "test")
		e := engine.Event{TenantID: h.tenant, RunID: h.runID, Seq: int64(len(h.events) + 1), Type: s.typ,
			TaskID: s.task, Attempt: s.attempt, Actor: actor, OnBehalf: h.onBehalf, At: h.clock}
		if s.data != nil {
			b, err := json.Marshal(s.data)
			if err != nil {
				h.t.Fatalf("encode event data: %v", err)
			}
			e.Data = b
		}
		e.Hash = e.ComputeHash(prevHash)
		prevHash = e.Hash
		h.events = append(h.events, e)
		added = append(added, e)
	}
	v, err := engine.Replay(h.plan, h.events)
	if err != nil {
		h.t.Fatalf("replay %s: %v", h.runID, err)
	}
	ch := engine.Change{Run: v.Run, Insert: prevSeq == 0, PrevSeq: prevSeq, PrevState: engine.RunPending, Events: added}
	if prevSeq > 0 {
		prev, err := engine.Replay(h.plan, h.events[:prevSeq])
		if err != nil {
			h.t.Fatalf("replay %s: %v", h.runID, err)
		}
		ch.PrevState = prev.Run.State
	}
	if ch.Insert {
		ch.Tasks = slices.Clone(v.Tasks)
	} else {
		for i := range v.Tasks {
			if !engine.EqualTask(&v.Tasks[i], &h.tasks[i]) {
				ch.Tasks = append(ch.Tasks, v.Tasks[i])
			}
		}
	}
	h.tasks = slices.Clone(v.Tasks)
	return ch
}

// lifecycle returns the four changes of a run of wfJSON, seven events in
// all: created+started+a ready; a started; a completed+b ready; b started.
func lifecycle(h *history) []engine.Change {
	return []engine.Change{
		h.next(evCreated, evStarted, ev{typ: engine.EventTaskReady, task: "a"}),
		h.next(ev{typ: engine.EventTaskStarted, task: "a", attempt: 1}),
		h.next(ev{typ: engine.EventTaskCompleted, task: "a", attempt: 1, data: &engine.EventData{Output: json.RawMessage(`{"a":1}`)}},
			ev{typ: engine.EventTaskReady, task: "b"}),
		h.next(ev{typ: engine.EventTaskStarted, task: "b", attempt: 1}),
	}
}

// runIn returns the changes that bring a run of wfJSON into state s, created
// at the given time (zero: the history's clock).
func runIn(t testing.TB, plan *definition.Plan, tenant, id string, s engine.RunState, created time.Time) []engine.Change {
	t.Helper()
	return runFrom(t, plan, tenant, id, s, created, nil)
}

// runFrom is runIn of a run started by origin (nil: a direct call).
func runFrom(t testing.TB, plan *definition.Plan, tenant, id string, s engine.RunState, created time.Time, origin *engine.Origin) []engine.Change {
	t.Helper()
	h := newHistory(t, plan, tenant, id)
	c := evCreated
	c.at = created
	if plan.Def.Name != "wf" || origin != nil {
		d := *evCreated.data
		d.Workflow, d.Origin = plan.Def.Name, origin
		if origin != nil {
			d.Alias = "live"
		}
		c.data = &d
	}
	oops := &engine.EventData{Error: &engine.TaskError{Code: "x", Message: "y"}}
	switch s {
	case engine.RunPending:
		return []engine.Change{h.next(c)}
	case engine.RunRunning:
		return []engine.Change{h.next(c), h.next(evStarted, ev{typ: engine.EventTaskReady, task: "a"})}
	case engine.RunPaused:
		return []engine.Change{h.next(c, evStarted), h.next(ev{typ: engine.EventRunPaused})}
	case engine.RunCompleted:
		return []engine.Change{h.next(c, evStarted),
			h.next(ev{typ: engine.EventRunCompleted, data: &engine.EventData{Output: json.RawMessage(`{}`)}})}
	case engine.RunFailed:
		return []engine.Change{h.next(c, evStarted), h.next(ev{typ: engine.EventRunFailed, data: oops})}
	case engine.RunCancelled:
		return []engine.Change{h.next(c), h.next(ev{typ: engine.EventRunCancelled})}
	case engine.RunTimedOut:
		return []engine.Change{h.next(c, evStarted), h.next(ev{typ: engine.EventRunTimedOut, data: oops})}
	}
	t.Fatalf("no history for state %s", s)
	return nil
}

// fullChanges returns an insert and an update of run r1 of tenant by hand,
// with every field of the run and task rows set somewhere.
func fullChanges(tenant string) (insert, update engine.Change) {
	at := func(ms int) time.Time { return base.Add(time.Duration(ms)*time.Millisecond + 987*time.Nanosecond) }
	evs := []engine.Event{
		{TenantID: tenant, RunID: "r1", Seq: 1, Type: engine.EventRunCreated, Actor: "key:alice",
			Data: json.RawMessage(`{"workflow":"wf","version":1,"input":{"n": 1},"concurrency_key":"customer-1"}`), At: at(0)},
		{TenantID: tenant, RunID: "r1", Seq: 2, Type: engine.EventRunStarted, Actor: "engine", At: at(1)},
		{TenantID: tenant, RunID: "r1", Seq: 3, Type: engine.EventTaskStarted, TaskID: "a", Attempt: 2, Actor: "key:fleet", OnBehalf: "worker-7",
			Data: json.RawMessage(`{"wake_at":"2024-05-06T08:00:00Z"}`), At: at(2)},
		{TenantID: tenant, RunID: "r1", Seq: 4, Type: engine.EventRunFailed, Actor: "engine",
			Data: json.RawMessage(`{"error":{"code":"boom","message":"it broke"}}`), At: at(3)},
	}
	prev := ""
	for i := range evs {
		evs[i].Hash = evs[i].ComputeHash(prev)
		prev = evs[i].Hash
	}
	run := engine.Run{ID: "r1", TenantID: tenant, Workflow: "wf", Version: 1, State: engine.RunRunning,
		Input: json.RawMessage(`{"n": 1}`), CreatedAt: at(0), StartedAt: at(1), Deadline: at(60_000),
		UpdatedAt: at(1), LastSeq: 2, LastHash: evs[1].Hash, DataBytes: 42, ConcurrencyKey: "customer-1"}
	taskA := engine.Task{RunID: "r1", TaskID: "a", Pos: 0, Type: "noop", State: engine.TaskReady,
		ReadyAt: at(1), NotBefore: at(500)}
	taskB := engine.Task{RunID: "r1", TaskID: "b", Pos: 1, Type: "noop", State: engine.TaskPending}
	insert = engine.Change{Run: run, Insert: true, Tasks: []engine.Task{taskA, taskB}, Events: evs[:2]}

	prevState := run.State
	run.State = engine.RunFailed
	run.Output = json.RawMessage(`[1, 2]`)
	run.Error = &engine.TaskError{Code: "boom", Message: "it broke"}
	run.EndedAt = at(3)
	run.UpdatedAt = at(3)
	run.LastSeq = 4
	run.LastHash = evs[3].Hash
	run.DataBytes = 99
	taskA.State = engine.TaskCompleted
	taskA.Attempt = 2
	taskA.Charged = 1
	taskA.Abandoned = 1
	taskA.StartedAt = at(2)
	taskA.EndedAt = at(3)
	taskA.WakeAt = at(3_600_000)
	taskA.Error = &engine.TaskError{Code: "flaky", Message: "first attempt failed"}
	taskA.Output = json.RawMessage(`{"ok": true}`)
	taskA.Input = json.RawMessage(`{"from": "a"}`)
	taskA.WorkerID = "worker-7"
	taskA.LeaseExpiresAt = at(30_000)
	taskA.LeaseHash = "0123abcd"
	update = engine.Change{Run: run, PrevSeq: 2, PrevState: prevState, Tasks: []engine.Task{taskA}, Events: evs[2:]}
	return insert, update
}

// commit commits changes and waits for the acknowledgement.
func commit(t testing.TB, s engine.Store, changes ...engine.Change) error {
	t.Helper()
	return wait(t, submit(s, changes...), "commit acknowledgement")
}

// mustCommit commits changes and fails the test if they do not commit.
func mustCommit(t testing.TB, s engine.Store, changes ...engine.Change) {
	t.Helper()
	if err := commit(t, s, changes...); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// submit commits changes without waiting; the channel gets the outcome.
func submit(s engine.Store, changes ...engine.Change) <-chan error {
	ch := make(chan error, 1)
	s.Commit(changes, func(err error) { ch <- err })
	return ch
}

// wait receives from ch or fails the test after patience.
func wait[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// sameEvents reports how got differs from want, "" if not at all: every
// field but the store-assigned ID, times at microseconds, data byte for
// byte (the hash covers it).
func sameEvents(got, want []engine.Event) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d events, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		g.ID, w.ID = 0, 0
		g.At, w.At = micro(g.At), micro(w.At)
		if !bytes.Equal(g.Data, w.Data) || !reflect.DeepEqual(g, w) {
			return fmt.Sprintf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	return ""
}

// sameRows reports how a loaded run and its tasks differ from want, "" if
// not at all, compared the way verification compares them.
func sameRows(run *engine.Run, tasks []engine.Task, want *engine.Run, wantTasks []engine.Task) string {
	if !engine.EqualRun(run, want) {
		return fmt.Sprintf("run row:\n got %+v\nwant %+v", *run, *want)
	}
	return sameTasks(tasks, wantTasks)
}

// sameTasks reports how task rows differ from want, "" if not at all.
func sameTasks(tasks, wantTasks []engine.Task) string {
	if len(tasks) != len(wantTasks) {
		return fmt.Sprintf("%d task rows, want %d", len(tasks), len(wantTasks))
	}
	for i := range tasks {
		if !engine.EqualTask(&tasks[i], &wantTasks[i]) {
			return fmt.Sprintf("task row %d:\n got %+v\nwant %+v", i, tasks[i], wantTasks[i])
		}
	}
	return ""
}

// ids returns the ids of runs, in order.
func ids(runs []engine.Run) []string {
	out := make([]string, len(runs))
	for i := range runs {
		out[i] = runs[i].ID
	}
	return out
}
