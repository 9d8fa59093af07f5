package engine

import (
	"context"
	"fmt"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Pause stops new tasks of a running run from starting; running ones finish
// and are recorded. It returns the run once the pause is durable.
func (e *Engine) Pause(ctx context.Context, tenantID, runID string, by Caller) (*Run, error) {
	return e.control(ctx, tenantID, runID, by, EventRunPaused)
}

// Resume lets a paused run dispatch again.
func (e *Engine) Resume(ctx context.Context, tenantID, runID string, by Caller) (*Run, error) {
	return e.control(ctx, tenantID, runID, by, EventRunResumed)
}

// Cancel ends a run: unfinished tasks end cancelled and running in-process
// attempts have their context cancelled.
func (e *Engine) Cancel(ctx context.Context, tenantID, runID string, by Caller) (*Run, error) {
	return e.control(ctx, tenantID, runID, by, EventRunCancelled)
}

// Retry runs a failed, timed-out or cancelled run again: its failed,
// timed-out, skipped and cancelled tasks go back to pending with fresh retry
// budgets; attempt numbers carry on.
func (e *Engine) Retry(ctx context.Context, tenantID, runID string, by Caller) (*Run, error) {
	return e.control(ctx, tenantID, runID, by, EventRunRetried)
}

// RetryTask retries one task that failed, timed out, was skipped or
// cancelled, and every task downstream of it that did not complete. A
// failed, timed-out or cancelled run runs again (run.retried names the
// tasks); in a running or paused run only the tasks go back to pending.
// Errors as for Retry, plus ErrNotFound for an unknown task and a
// *TransitionError when the task is not in a state to retry.
func (e *Engine) RetryTask(ctx context.Context, tenantID, runID, taskID string, by Caller) (*Run, error) {
	if taskID == "" {
		return e.Retry(ctx, tenantID, runID, by)
	}
	return e.controlTask(ctx, tenantID, runID, taskID, by)
}

// control applies one control verb. Errors: ErrNotFound (no such run for the
// tenant), a *TransitionError (the run's state forbids it), ErrConflict (the
// run is being reloaded; try again), ErrClosed.
func (e *Engine) control(ctx context.Context, tenantID, runID string, by Caller, typ EventType) (*Run, error) {
	return e.controlRun(ctx, tenantID, runID, "", by, typ)
}

func (e *Engine) controlTask(ctx context.Context, tenantID, runID, taskID string, by Caller) (*Run, error) {
	return e.controlRun(ctx, tenantID, runID, taskID, by, EventRunRetried)
}

// controlRun applies a control verb to a run, or with taskID a retry of one
// task and its dependents.
func (e *Engine) controlRun(ctx context.Context, tenantID, runID, taskID string, by Caller, typ EventType) (*Run, error) {
	e.mu.Lock()
	rs := e.runs[runID]
	e.mu.Unlock()
	if rs == nil {
		// Only terminal runs are not in memory; only retry applies to them.
		run, tasks, err := e.store.LoadRun(ctx, tenantID, runID)
		if err != nil {
			return nil, err
		}
		if _, ok := RunEventAllowed(typ, run.State); !ok && taskID == "" {
			return nil, &TransitionError{Subject: "run", Event: typ, From: string(run.State)}
		}
		if !run.State.Terminal() {
			return nil, fmt.Errorf("run %s is being recovered: %w", runID, ErrConflict)
		}
		v, err := e.restore(ctx, run, tasks)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		if rs = e.runs[runID]; rs == nil {
			rs = e.newRunState(run.TenantID, run.ID, v)
			e.runs[runID] = rs
		}
		e.mu.Unlock()
	}

	e.mu.Lock()
	if rs.tenant != tenantID {
		e.mu.Unlock()
		return nil, fmt.Errorf("run %s: %w", runID, ErrNotFound)
	}
	if e.stopping {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	if rs.broken || e.runs[runID] != rs {
		e.mu.Unlock()
		return nil, fmt.Errorf("run %s is being reloaded: %w", runID, ErrConflict)
	}
	var only map[int]bool // with taskID: the tasks to retry
	if taskID != "" {
		var err error
		if only, err = retrySet(rs, taskID); err != nil {
			e.release(rs)
			e.mu.Unlock()
			return nil, err
		}
	}
	if _, ok := RunEventAllowed(typ, rs.view.Run.State); !ok && (only == nil || rs.view.Run.State == RunCompleted) {
		state := rs.view.Run.State
		e.release(rs)
		e.mu.Unlock()
		return nil, &TransitionError{Subject: "run", Event: typ, From: string(state)}
	}
	b := e.newBatchBy(rs, by)
	switch typ {
	case EventRunPaused:
		b.add(EventRunPaused, -1, 0, nil)
	case EventRunResumed:
		e.startRun(b, EventRunResumed)
	case EventRunCancelled:
		e.endRun(b, EventRunCancelled, ReasonRunCancelled)
	case EventRunRetried:
		e.retryRun(b, only)
	}
	done := make(chan error, 1)
	b.commit(func(err error) { done <- err })
	e.fixRun(rs)
	run := rs.view.Run
	e.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &run, nil
}

// retrySet returns the task named taskID and every task downstream of it
// that did not complete, refusing a task that is not in a state to retry.
func retrySet(rs *runState, taskID string) (map[int]bool, error) {
	pos, ok := rs.plan.Index[taskID]
	if !ok {
		return nil, fmt.Errorf("task %q: %w", taskID, ErrNotFound)
	}
	if _, ok := TaskEventAllowed(EventTaskReset, rs.view.Tasks[pos].State); !ok {
		return nil, &TransitionError{Subject: "task " + taskID, Event: EventTaskReset, From: string(rs.view.Tasks[pos].State)}
	}
	for _, d := range rs.plan.Tasks[pos].Deps {
		if st := rs.view.Tasks[d].State; st.Terminal() && st != TaskCompleted {
			return nil, &TransitionError{Subject: fmt.Sprintf("task %s (its upstream %s is %s: retry that one)", taskID, rs.plan.Tasks[d].ID, st),
				Event: EventTaskReset, From: string(rs.view.Tasks[pos].State)}
		}
	}
	only := map[int]bool{pos: true}
	stack := []int{pos}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range rs.plan.Tasks[p].Children {
			if !only[c] && rs.view.Tasks[c].State != TaskCompleted {
				only[c] = true
				stack = append(stack, c)
			}
		}
	}
	return only, nil
}

// retryRun puts the run's failed, timed-out, skipped and cancelled tasks (or
// only those in only, when it is not nil) back to pending; those whose
// dependencies completed become ready. An ended run records run.retried
// first; a running or paused one only its tasks' resets.
func (e *Engine) retryRun(b *batch, only map[int]bool) {
	rs := b.rs
	var reset []int
	var ids []string
	for i := range rs.view.Tasks {
		if only != nil && !only[i] {
			continue
		}
		switch rs.view.Tasks[i].State {
		case TaskFailed, TaskTimedOut, TaskSkipped, TaskCancelled:
			reset = append(reset, i)
			ids = append(ids, rs.view.Tasks[i].TaskID)
		}
	}
	if rs.view.Run.State.Terminal() {
		d := &EventData{Tasks: ids}
		if rs.plan.Timeout > 0 {
			d.Deadline = b.now.Add(rs.plan.Timeout)
		}
		if !b.add(EventRunRetried, -1, 0, d) {
			return
		}
	}
	for _, i := range reset {
		b.add(EventTaskReset, i, 0, nil)
	}
	// A reset task behind another upstream that still did not complete can
	// never run: skip it again rather than leave it pending.
	e.skipFailedUpstream(b)
	e.readyPending(b)
	e.armDeadline(b)
	e.settle(b)
}

// readyPending records as ready every pending task whose dependencies completed.
func (e *Engine) readyPending(b *batch) {
	rs := b.rs
	rs.recount()
	for i := range rs.view.Tasks {
		if rs.waiting[i] == 0 && rs.view.Tasks[i].State == TaskPending {
			e.markReady(b, i)
		}
	}
}

// restore rebuilds a run's projection from stored rows.
func (e *Engine) restore(ctx context.Context, run *Run, tasks []Task) (*RunView, error) {
	plan, _, err := e.plan(ctx, run.TenantID, run.Workflow, run.Version)
	if err != nil {
		return nil, err
	}
	return RestoreRunView(plan, run, tasks)
}

// activate takes a restored run into the engine and carries it on from where
// the store says it is: attempts left running by a stopped process are
// recorded as abandoned and retried, timers are re-armed, ready tasks are
// queued. done, if not nil, is called once the decisions are durable.
func (e *Engine) activate(v *RunView, done func(error)) { e.activateLost(v, nil, done) }

// activateLost is activate that records lost, when not nil, instead of
// abandoned for the attempts left running: a reload after a commit that
// failed for the storage's sake lost them with the commit, not with a
// process, and they must not count towards MaxAbandoned.
func (e *Engine) activateLost(v *RunView, lost *outcome, done func(error)) {
	rs := e.newRunState(v.Run.TenantID, v.Run.ID, v)
	rs.recount()
	e.runs[rs.id] = rs
	e.m.running += v.Count(TaskRunning)
	e.runMoved(rs)
	b := e.newBatch(rs, ActorEngine)
	switch v.Run.State {
	case RunPending:
		// It waits its turn: admission starts it when a slot is free.
		e.park(rs)
	case RunRunning, RunPaused:
		for i := range v.Tasks {
			t := &v.Tasks[i]
			switch t.State {
			case TaskRunning:
				if _, ok := e.attemptDue(rs, i); ok && (rs.plan.Tasks[i].Type == definition.TypeSleep || t.LeaseHash != "") {
					// A durable timer or an external lease: still valid.
					e.armAttempt(rs, i)
					continue
				}
				o := e.abandoned(t)
				if lost != nil {
					o = *lost
				}
				e.failAttempt(b, i, o)
				e.handleCarefully(rs, i)
			case TaskReady:
				// Its task.started may have been lost with the process
				// that ran it.
				e.handleCarefully(rs, i)
				e.enqueue(rs, i)
			}
		}
		e.readyPending(b)
		e.skipFailedUpstream(b)
		if v.Run.State == RunRunning {
			e.armDeadline(b)
			e.settle(b)
		}
	}
	b.commit(done)
	e.fixRun(rs)
}

// handleCarefully makes the next attempt of task pos wait for its start to
// be durable before its handler runs.
func (e *Engine) handleCarefully(rs *runState, pos int) {
	if rs.careful == nil {
		rs.careful = map[int]bool{}
	}
	rs.careful[pos] = true
}

// CodeAbandonedRepeatedly is the error of a task failed because the process
// stopped during too many of its attempts in a row.
const CodeAbandonedRepeatedly = "abandoned_repeatedly"

// abandoned is the outcome of an attempt the previous process left running:
// retried without charging the retry budget, unless the process stopped
// during Config.MaxAbandoned attempts of the task in a row. A task that
// brings the process down (out of memory, say) then fails for good instead
// of bringing it down again at every start.
func (e *Engine) abandoned(t *Task) outcome {
	o := failed(ReasonAbandoned, "the process running this attempt stopped before it finished", ReasonAbandoned)
	if t.Abandoned+1 >= e.maxAbandoned {
		o.err.Code = CodeAbandonedRepeatedly
		o.err.Message = fmt.Sprintf("the process stopped during %d attempts of this task in a row (MAX_ABANDONED); "+
			"the task is failed so that it cannot keep the server down: retry the run once the cause is found", t.Abandoned+1)
		o.permanent = true
	}
	return o
}

// skipFailedUpstream skips pending tasks below a task that ended without
// completing; the engine records both in one commit, so this only repairs
// rows written by an older version.
func (e *Engine) skipFailedUpstream(b *batch) {
	rs := b.rs
	for i := range rs.view.Tasks {
		switch rs.view.Tasks[i].State {
		case TaskFailed, TaskTimedOut, TaskSkipped, TaskCancelled:
			e.skipDescendants(b, i)
		}
	}
}
