package engine

import (
	"context"
	"fmt"
)

// Pause stops new tasks of a running run from starting; running ones finish
// and are recorded. It returns the run once the pause is durable.
func (e *Engine) Pause(ctx context.Context, tenantID, runID, actor string) (*Run, error) {
	return e.control(ctx, tenantID, runID, actor, EventRunPaused)
}

// Resume lets a paused run dispatch again.
func (e *Engine) Resume(ctx context.Context, tenantID, runID, actor string) (*Run, error) {
	return e.control(ctx, tenantID, runID, actor, EventRunResumed)
}

// Cancel ends a run: unfinished tasks end cancelled and running in-process
// attempts have their context cancelled.
func (e *Engine) Cancel(ctx context.Context, tenantID, runID, actor string) (*Run, error) {
	return e.control(ctx, tenantID, runID, actor, EventRunCancelled)
}

// Retry runs a failed, timed-out or cancelled run again: its failed,
// timed-out, skipped and cancelled tasks go back to pending with fresh retry
// budgets; attempt numbers carry on.
func (e *Engine) Retry(ctx context.Context, tenantID, runID, actor string) (*Run, error) {
	return e.control(ctx, tenantID, runID, actor, EventRunRetried)
}

// control applies one control verb. Errors: ErrNotFound (no such run for the
// tenant), a *TransitionError (the run's state forbids it), ErrConflict (the
// run is being reloaded; try again), ErrClosed.
func (e *Engine) control(ctx context.Context, tenantID, runID, actor string, typ EventType) (*Run, error) {
	if actor == "" {
		actor = ActorEngine
	}
	e.mu.Lock()
	rs := e.runs[runID]
	e.mu.Unlock()
	if rs == nil {
		// Only terminal runs are not in memory; only retry applies to them.
		run, tasks, err := e.store.LoadRun(ctx, runID)
		if err != nil {
			return nil, err
		}
		if run.TenantID != tenantID {
			return nil, fmt.Errorf("run %s: %w", runID, ErrNotFound)
		}
		if _, ok := RunEventAllowed(typ, run.State); !ok {
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
	if _, ok := RunEventAllowed(typ, rs.view.Run.State); !ok {
		state := rs.view.Run.State
		e.release(rs)
		e.mu.Unlock()
		return nil, &TransitionError{Subject: "run", Event: typ, From: string(state)}
	}
	b := e.newBatch(rs, actor)
	switch typ {
	case EventRunPaused:
		b.add(EventRunPaused, -1, 0, nil)
	case EventRunResumed:
		e.startRun(b, EventRunResumed)
	case EventRunCancelled:
		e.endRun(b, EventRunCancelled, ReasonRunCancelled)
	case EventRunRetried:
		e.retryRun(b)
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

// retryRun records run.retried and puts the run's unfinished tasks back to
// pending; those whose dependencies completed become ready.
func (e *Engine) retryRun(b *batch) {
	rs := b.rs
	var reset []int
	var ids []string
	for i := range rs.view.Tasks {
		switch rs.view.Tasks[i].State {
		case TaskFailed, TaskTimedOut, TaskSkipped, TaskCancelled:
			reset = append(reset, i)
			ids = append(ids, rs.view.Tasks[i].TaskID)
		}
	}
	d := &EventData{Tasks: ids}
	if rs.plan.Timeout > 0 {
		d.Deadline = b.now.Add(rs.plan.Timeout)
	}
	if !b.add(EventRunRetried, -1, 0, d) {
		return
	}
	for _, i := range reset {
		b.add(EventTaskReset, i, 0, nil)
	}
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
func (e *Engine) activate(v *RunView, done func(error)) {
	rs := e.newRunState(v.Run.TenantID, v.Run.ID, v)
	rs.recount()
	e.runs[rs.id] = rs
	e.m.running += v.Count(TaskRunning)
	b := e.newBatch(rs, ActorEngine)
	switch v.Run.State {
	case RunPending:
		e.startRun(b, EventRunStarted)
	case RunRunning, RunPaused:
		for i := range v.Tasks {
			t := &v.Tasks[i]
			switch t.State {
			case TaskRunning:
				if _, ok := e.attemptDue(rs, i); ok && (rs.plan.Tasks[i].Type == TypeSleep || t.LeaseHash != "") {
					// A durable timer or an external lease: still valid.
					e.armAttempt(rs, i)
					continue
				}
				e.failAttempt(b, i, failed(ReasonAbandoned, "the process running this attempt stopped before it finished", ReasonAbandoned))
			case TaskReady:
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

// skipFailedUpstream skips pending tasks below a task that ended without
// completing; the engine records both in one commit, so this only repairs
// rows written by an older version.
func (e *Engine) skipFailedUpstream(b *batch) {
	rs := b.rs
	for i := range rs.view.Tasks {
		switch rs.view.Tasks[i].State {
		case TaskFailed, TaskTimedOut, TaskSkipped:
			e.skipDescendants(b, i)
		}
	}
}
