package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Why a task waits: the codes of TaskWait.Reason (and RunWait.Reason).
const (
	WaitDependencies  = "dependencies"       // pending: named dependencies have not completed
	WaitBecomingReady = "becoming_ready"     // pending with every dependency completed: its input is being resolved
	WaitBackoff       = "backoff"            // ready, not before Until: a failed attempt's backoff
	WaitCircuitOpen   = "circuit_open"       // ready, not before Until: a circuit breaker held the last attempt back
	WaitSleep         = "sleep"              // a sleep task, running until Until
	WaitPaused        = "paused"             // the run is paused
	WaitQueued        = "queued"             // the run is pending (a queued run says tenant_active_runs or concurrency_key)
	WaitNoWorker      = "no_worker"          // an external type no worker polled within WorkerAbsentAfter
	WaitWorker        = "waiting_for_worker" // an external type a worker polls: the next poll takes it
	WaitMaxParallel   = "max_parallel"       // the run has max_parallel tasks running
	WaitPoolBusy      = "worker_pool_busy"   // every in-process worker is busy
	WaitDispatching   = "dispatching"        // nothing holds it: a worker is about to start it
)

// WorkerAbsentAfter is how long after its last poll a task type counts as
// having no worker.
const WorkerAbsentAfter = time.Minute

// maxStalledReasons bounds the reasons a run.stalled event records.
const maxStalledReasons = 100

// Explanation says why a run and each of its tasks that is neither running
// nor finished waits, and whether the run is stalled: active, and nothing
// it waits for will move it without outside help.
type Explanation struct {
	Run     RunWait    `json:"run"`
	Waiting []TaskWait `json:"waiting"`
	Stalled bool       `json:"stalled"`
	// stuck: running, and nothing it waits for will move it, however long
	// it has been idle.
	stuck bool
}

// RunWait is why the run itself waits (paused, queued), if it does.
type RunWait struct {
	ID     string   `json:"id"`
	State  RunState `json:"state"`
	Reason string   `json:"reason,omitempty"`
	Detail string   `json:"detail,omitempty"`
}

// TaskWait is why one task is not running: a Wait* code and a sentence;
// Since is when the wait began, Until when it ends by itself.
type TaskWait struct {
	Task         string            `json:"task"`
	State        TaskState         `json:"state"`
	Reason       string            `json:"reason"`
	Detail       string            `json:"detail"`
	Since        time.Time         `json:"since,omitzero"`
	Until        time.Time         `json:"until,omitzero"`
	Dependencies []DependencyState `json:"dependencies,omitempty"`
}

// DependencyState is a dependency a task waits on and its state.
type DependencyState struct {
	Task  string    `json:"task"`
	State TaskState `json:"state"`
}

// waitFacts is what explaining a run needs beyond its projection.
type waitFacts struct {
	now        time.Time
	stuckAfter time.Duration // <= 0: never stalled
	external   func(typ string) bool
	lastPoll   func(typ string) time.Time // zero: never since the process started
	poolBusy   bool
	queued     string // why a pending run waits, when known
	queuedCode string // its reason code: tenant_active_runs, concurrency_key
	pausedBy   string
	pausedAt   time.Time
}

// explain answers for a run's projection. It is the one function behind
// GET .../explain and the stuck detector.
func explain(v *RunView, f *waitFacts) *Explanation {
	r := &v.Run
	x := &Explanation{Run: RunWait{ID: r.ID, State: r.State}, Waiting: []TaskWait{}}
	switch r.State {
	case RunPaused:
		x.Run.Reason, x.Run.Detail = WaitPaused, "the run is paused"
		if f.pausedBy != "" {
			x.Run.Detail = fmt.Sprintf("the run was paused by %s at %s", f.pausedBy, FormatTime(f.pausedAt))
		}
	case RunPending:
		// Engine.QueuedReason says what a queued run waits for (its
		// tenant's active-run quota, its concurrency key).
		x.Run.Reason, x.Run.Detail = WaitQueued, "the run is pending: queued"
		if f.queued != "" {
			x.Run.Reason, x.Run.Detail = f.queuedCode, f.queued
		}
	}
	if r.State.Terminal() {
		return x
	}
	plan := v.plan
	progressing := false // something will move the run without outside help
	for i := range v.Tasks {
		t, pt := &v.Tasks[i], &plan.Tasks[i]
		if t.State.Terminal() {
			continue
		}
		w := TaskWait{Task: t.TaskID, State: t.State}
		switch t.State {
		case TaskRunning:
			if pt.Type != definition.TypeSleep || t.WakeAt.IsZero() {
				progressing = true // an attempt under way: its outcome moves the run
				continue
			}
			w.Reason, w.Since, w.Until = WaitSleep, t.StartedAt, t.WakeAt
			w.Detail = "sleeping until " + FormatTime(t.WakeAt)
			progressing = true
		case TaskPending:
			for _, d := range pt.Deps {
				if ds := v.Tasks[d].State; ds != TaskCompleted {
					w.Dependencies = append(w.Dependencies, DependencyState{Task: v.Tasks[d].TaskID, State: ds})
				}
			}
			if len(w.Dependencies) == 0 && r.State == RunPending {
				w.Reason, w.Detail = WaitQueued, "the run is pending: queued"
				break
			}
			if len(w.Dependencies) == 0 {
				w.Reason, w.Detail = WaitBecomingReady, "every dependency completed; its input is being resolved"
				progressing = true
				break
			}
			names := make([]string, len(w.Dependencies))
			for j, d := range w.Dependencies {
				names[j] = d.Task + " (" + string(d.State) + ")"
			}
			w.Reason, w.Detail = WaitDependencies, "waiting on "+strings.Join(names, ", ")
		case TaskReady:
			w.Since = t.ReadyAt
			progressing = explainReady(v, i, f, &w) || progressing
		}
		x.Waiting = append(x.Waiting, w)
	}
	x.stuck = r.State == RunRunning && !progressing
	x.Stalled = x.stuck && f.stuckAfter > 0 && f.now.Sub(r.UpdatedAt) >= f.stuckAfter
	return x
}

// explainReady fills the reason of a ready task and reports whether it will
// start without outside help (a timer, a worker that polls, the pool).
func explainReady(v *RunView, pos int, f *waitFacts, w *TaskWait) bool {
	t, pt := &v.Tasks[pos], &v.plan.Tasks[pos]
	switch {
	case v.Run.State == RunPaused:
		w.Reason, w.Detail = WaitPaused, "ready, but the run is paused"
		return false // a paused run waits for someone; it is not stalled either
	case v.Run.State != RunRunning:
		w.Reason, w.Detail = WaitQueued, "ready, but the run is "+string(v.Run.State)
		return true
	case !t.NotBefore.IsZero() && t.NotBefore.After(f.now):
		w.Until = t.NotBefore
		if t.Error != nil && t.Error.Code == ReasonCircuitOpen {
			w.Reason, w.Detail = WaitCircuitOpen, t.Error.Message+"; next attempt not before "+FormatTime(t.NotBefore)
		} else {
			w.Reason, w.Detail = WaitBackoff, fmt.Sprintf("attempt %d failed; next attempt not before %s", t.Attempt, FormatTime(t.NotBefore))
			if t.Error != nil {
				w.Detail = fmt.Sprintf("attempt %d failed (%s); next attempt not before %s", t.Attempt, t.Error.Code, FormatTime(t.NotBefore))
			}
		}
		return true
	case f.external(pt.Type):
		last := f.lastPoll(pt.Type)
		switch {
		case last.IsZero():
			w.Reason, w.Detail = WaitNoWorker, fmt.Sprintf("no worker has polled type %s since the server started", pt.Type)
		case f.now.Sub(last) > WorkerAbsentAfter:
			w.Reason, w.Detail = WaitNoWorker, fmt.Sprintf("no worker of type %s; one last polled at %s", pt.Type, FormatTime(last))
		default:
			w.Reason, w.Detail = WaitWorker, fmt.Sprintf("waiting for a worker of type %s; one last polled at %s", pt.Type, FormatTime(last))
		}
		// A type a worker polled within the stuck window will be taken.
		return !last.IsZero() && (f.stuckAfter <= 0 || f.now.Sub(last) < f.stuckAfter)
	case v.plan.MaxParallel > 0 && v.Count(TaskRunning) >= v.plan.MaxParallel:
		w.Reason, w.Detail = WaitMaxParallel, fmt.Sprintf("the run has max_parallel (%d) tasks running", v.plan.MaxParallel)
	case f.poolBusy:
		w.Reason, w.Detail = WaitPoolBusy, "every in-process worker is busy"
	default:
		w.Reason, w.Detail = WaitDispatching, "nothing holds it: a worker is about to start it"
	}
	return true
}

// Explain says why a tenant's run and each of its tasks that is neither
// running nor finished waits, and whether the run is stalled (see
// Config.StuckAfter). It reads the run's durable projection. Errors:
// ErrNotFound.
func (e *Engine) Explain(ctx context.Context, tenantID, runID string) (*Explanation, error) {
	run, tasks, err := e.store.LoadRun(ctx, tenantID, runID)
	if err != nil {
		return nil, err
	}
	v, err := e.restore(ctx, run, tasks)
	if err != nil {
		return nil, err
	}
	f := e.waitFacts(tenantID)
	if run.State == RunPaused {
		e.pausedBy(ctx, run, f)
	}
	if run.State == RunPending {
		if why, pos, ok := e.QueuedReason(tenantID, runID); ok {
			f.queuedCode = why.Code
			f.queued = fmt.Sprintf("the run is pending: %d in line for a slot of its tenant's max_active_runs", pos)
			if why.Code == WaitConcurrencyKey {
				f.queued = fmt.Sprintf("the run is pending: %d in line for a slot of its concurrency key %q", pos, why.Key)
			}
		}
	}
	x := explain(v, f)
	if x.stuck && !x.Stalled && f.stuckAfter > 0 {
		// Idle for less than StuckAfter since its last event, which may be
		// the run.stalled that marked it: then it is still stalled.
		if x.Stalled, err = e.lastIsStalled(ctx, tenantID, runID, run.LastSeq); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// pausedBy finds who paused a paused run, and when, from its last
// run.paused: past the first page when it was paused more often than that.
func (e *Engine) pausedBy(ctx context.Context, run *Run, f *waitFacts) {
	var last *Event
	for after := int64(0); ; {
		evs, err := e.store.ListEvents(ctx, EventFilter{TenantID: run.TenantID, RunID: run.ID, Type: EventRunPaused,
			AfterSeq: after, Limit: MaxPage})
		if err != nil {
			return
		}
		if len(evs) > 0 {
			last = &evs[len(evs)-1]
			after = last.Seq
		}
		if len(evs) < MaxPage {
			break
		}
	}
	if last == nil {
		return
	}
	f.pausedBy, f.pausedAt = last.Actor, last.At
	if last.OnBehalf != "" {
		f.pausedBy += " on behalf of " + last.OnBehalf
	}
}

// waitFacts gathers what explain needs from memory.
func (e *Engine) waitFacts(tenantID string) *waitFacts {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.waitFactsLocked(tenantID)
}

// waitFactsLocked is waitFacts with Engine.mu held. The tenant's poll
// times are copied, so that the answer does not hold the lock.
func (e *Engine) waitFactsLocked(tenantID string) *waitFacts {
	now := e.now()
	polls := make(map[string]time.Time, len(e.polls[tenantID]))
	for typ, at := range e.polls[tenantID] {
		polls[typ] = at
		// A poller waiting now is polling now.
		if l := e.lanes[laneKey(tenantID, typ)]; l != nil && len(l.waiters) > 0 {
			polls[typ] = now
		}
	}
	return &waitFacts{
		now:        now,
		stuckAfter: e.stuckAfter,
		external:   e.isExternal,
		lastPoll:   func(typ string) time.Time { return polls[typ] },
		poolBusy:   int(e.busy.Load()) >= e.workers,
	}
}

// maxPollMarks bounds the (tenant, type) pairs whose last poll is kept.
const maxPollMarks = 10_000

// notePoll records that a worker polled these types of a tenant. Called with
// Engine.mu held.
func (e *Engine) notePoll(tenantID string, types []string) {
	now := e.now()
	m := e.polls[tenantID]
	for _, typ := range types {
		if _, ok := m[typ]; !ok && e.npolls >= maxPollMarks {
			e.forgetPolls(now.Add(-time.Hour)) // make room: forget polls long past
			m = e.polls[tenantID]              // which may have dropped the tenant's map
			if e.npolls >= maxPollMarks {
				continue
			}
		}
		if m == nil {
			m = map[string]time.Time{}
			e.polls[tenantID] = m
		}
		if _, ok := m[typ]; !ok {
			e.npolls++
		}
		m[typ] = now
	}
}

// forgetPolls forgets the polls before t.
func (e *Engine) forgetPolls(t time.Time) {
	for tenant, m := range e.polls {
		for typ, at := range m {
			if at.Before(t) {
				delete(m, typ)
				e.npolls--
			}
		}
		if len(m) == 0 {
			delete(e.polls, tenant)
		}
	}
}
