package engine

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
	"unicode/utf8"

	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// job is one in-process attempt handed to a worker.
type job struct {
	rs      *runState
	pos     int
	attempt int
	handler Handler
	ctx     context.Context
	cancel  context.CancelFunc
	a       Attempt
	// durable, when not nil, reports whether task.started is durable; the
	// handler runs only once it is (see runState.careful).
	durable chan error
}

// workerLoop runs attempts until Stop.
func (e *Engine) workerLoop() {
	for {
		e.mu.Lock()
		j := e.next()
		more := e.ready.Len() > 0
		e.mu.Unlock()
		if more {
			e.signal() // pass the wake-up on: there is work for another worker
		}
		if j != nil {
			e.busy.Add(1)
			e.execute(j)
			e.busy.Add(-1)
			continue
		}
		select {
		case <-e.wake:
		case <-e.quit:
			return
		}
	}
}

// next starts the best dispatchable task and returns its job, or nil when
// there is none. Sleep tasks start here and need no worker.
func (e *Engine) next() *job {
	for !e.stopping && e.ready.Len() > 0 {
		rs := e.ready[0]
		pos := heap.Pop(&rs.queue).(int)
		e.markQueued(rs, pos, false)
		t := &rs.view.Tasks[pos]
		pt := &rs.plan.Tasks[pos]
		if t.State != TaskReady {
			e.fixRun(rs)
			continue
		}
		attempt := t.Attempt + 1
		b := e.newBatch(rs, ActorEngine)
		d := &EventData{}
		if pt.Type == definition.TypeSleep {
			d.WakeAt = b.now.Add(pt.Sleep)
		}
		if !b.add(EventTaskStarted, pos, attempt, d) {
			b.commit(nil) // a refused event breaks the run, which reloads and queues the task again
			continue
		}
		e.fixRun(rs)
		if pt.Type == definition.TypeSleep {
			b.commit(nil)
			e.armAttempt(rs, pos)
			continue
		}
		if terr := unresolved(t); terr != nil {
			b.commit(nil)
			e.finishAttempt(rs, pos, attempt, outcome{err: terr, reason: ReasonPermanent, permanent: true})
			continue
		}
		h := e.handlers[pt.Type]
		ctx, cancel := context.WithCancel(e.hctx)
		if pt.Timeout > 0 {
			ctx, cancel = context.WithTimeout(e.hctx, pt.Timeout)
		}
		rs.cancels[pos] = attemptCancel{attempt: attempt, cancel: cancel}
		var durable chan error
		if rs.careful[pos] || t.Abandoned > 0 {
			durable = make(chan error, 1)
			b.commit(func(err error) { durable <- err })
		} else {
			b.commit(nil)
		}
		return &job{rs: rs, pos: pos, attempt: attempt, handler: h, ctx: ctx, cancel: cancel, durable: durable, a: Attempt{
			TenantID: rs.tenant, RunID: rs.id, TaskID: pt.ID, Type: pt.Type, Attempt: attempt,
			Input: e.inputOf(rs, pos), Config: pt.Config,
			IdempotencyKey: fmt.Sprintf("%s/%s/%d", rs.id, pt.ID, attempt),
		}}
	}
	return nil
}

// inputOf is the input a task's attempts get: resolved from references when
// it became ready, else the definition's.
func (e *Engine) inputOf(rs *runState, pos int) json.RawMessage {
	if in := rs.view.Tasks[pos].Input; in != nil {
		return in
	}
	return rs.plan.Tasks[pos].Input
}

// outcome is how an attempt ended.
type outcome struct {
	out       json.RawMessage
	err       *TaskError    // nil: completed
	reason    string        // why it failed: ReasonError, ReasonTimeout, ...
	after     time.Duration // wait at least this long before the next attempt
	permanent bool          // fail the task now, whatever the retry budget says
	by        Caller        // who reported it; the zero Caller is the engine
}

func failed(code, msg, reason string) outcome {
	return outcome{err: &TaskError{Code: code, Message: msg}, reason: reason}
}

// execute runs one attempt's handler and records the outcome.
func (e *Engine) execute(j *job) {
	if j.durable != nil && <-j.durable != nil {
		// The start was not recorded: the run is reloaded and the task
		// dispatched again from what is durable.
		j.cancel()
		return
	}
	start := time.Now()
	o := e.call(j)
	e.m.taskLatency.UpdateDuration(start)
	e.mu.Lock()
	defer e.mu.Unlock()
	// The run may have moved on to a newer attempt of this task, with a
	// context of its own: only this attempt's entry is ours to remove.
	if c, ok := j.rs.cancels[j.pos]; ok && c.attempt == j.attempt {
		delete(j.rs.cancels, j.pos)
	}
	j.cancel()
	e.finishAttempt(j.rs, j.pos, j.attempt, o)
}

// call runs the handler, turning a panic, a missing handler, a timeout and a
// bad output into a TaskError with its reason.
func (e *Engine) call(j *job) (o outcome) {
	if j.handler == nil {
		return failed("no_handler", fmt.Sprintf("no handler is registered for task type %q", j.a.Type), ReasonError)
	}
	if o := e.gateAttempt(j.ctx, j.handler, j.a.TenantID); o != nil {
		return *o
	}
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("task handler panicked", logRun, j.a.RunID, logTask, j.a.TaskID, "panic", r, "stack", string(debug.Stack()))
			o = failed("panic", fmt.Sprint("handler panicked: ", r), ReasonPanic)
		}
	}()
	out, err := j.handler.Run(j.ctx, &j.a)
	if err == nil {
		return checkOutput(out)
	}
	return e.classify(err, j.ctx)
}

// checkOutput accepts a handler's output: JSON within MaxOutputBytes.
func checkOutput(out json.RawMessage) outcome {
	if isNullJSON(out) {
		return outcome{}
	}
	if len(out) > MaxOutputBytes {
		o := failed(CodeOutputTooLarge, fmt.Sprintf("output is %d bytes, limit %d", len(out), MaxOutputBytes), ReasonError)
		o.permanent = true
		return o
	}
	var buf bytes.Buffer
	if json.Compact(&buf, out) != nil {
		o := failed("invalid_output", "output is not valid JSON", ReasonError)
		o.permanent = true
		return o
	}
	if !utf8.Valid(buf.Bytes()) {
		o := failed("invalid_output", "output is not valid UTF-8", ReasonError)
		o.permanent = true
		return o
	}
	if err := strictjson.CheckDepth(buf.Bytes()); err != nil {
		o := failed("invalid_output", "output "+err.Error(), ReasonError)
		o.permanent = true
		return o
	}
	return outcome{out: buf.Bytes()}
}

// classify turns a handler's error into an outcome. ctx is the attempt's
// context (nil for external workers).
func (e *Engine) classify(err error, ctx context.Context) outcome {
	var de *deferredError
	if errors.As(err, &de) {
		o := failed(de.reason, err.Error(), de.reason)
		o.after = de.after
		return o
	}
	switch {
	case e.hctx.Err() != nil && ctx != nil:
		return failed("interrupted", "the engine stopped during the attempt", ReasonInterrupted)
	case ctx != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return failed("timeout", "attempt exceeded its timeout", ReasonTimeout)
	}
	o := outcome{reason: ReasonError, after: retryAfterOf(err), permanent: IsPermanent(err)}
	var te *TaskError
	if errors.As(err, &te) {
		o.err = te
	} else {
		msg := err.Error()
		if len(msg) > 4096 {
			msg = msg[:4096]
		}
		o.err = &TaskError{Code: "error", Message: msg}
	}
	if o.permanent {
		o.reason = ReasonPermanent
	}
	return o
}

// finishAttempt records the outcome of an attempt, if it is still the one
// under way, and everything that follows from it.
func (e *Engine) finishAttempt(rs *runState, pos, attempt int, o outcome) {
	e.finishAttemptThen(rs, pos, attempt, o, nil)
}

// finishAttemptThen is finishAttempt calling done once the outcome is durable
// (or with nil at once when the attempt is no longer under way).
func (e *Engine) finishAttemptThen(rs *runState, pos, attempt int, o outcome, done func(error)) {
	t := &rs.view.Tasks[pos]
	if rs.broken || e.runs[rs.id] != rs || t.State != TaskRunning || t.Attempt != attempt {
		if done != nil {
			done(nil)
		}
		return // the run was cancelled, timed out or reloaded meanwhile
	}
	delete(rs.careful, pos)
	if o.err == nil {
		o = e.withinRunBytes(rs, o)
	}
	b := e.newBatchBy(rs, o.by)
	if o.err == nil {
		b.add(EventTaskCompleted, pos, attempt, &EventData{Output: o.out})
		e.readyChildren(b, pos)
	} else {
		e.failAttempt(b, pos, o)
		if o.err.Code == CodeRunTooLarge {
			e.failRun(b, o.err)
		}
	}
	e.settle(b)
	b.commit(done)
	e.fixRun(rs)
}

// failAttempt records a failed attempt: retried under the task's policy, or
// final, skipping what depends on the task.
func (e *Engine) failAttempt(b *batch, pos int, o outcome) {
	rs := b.rs
	t, pt := &rs.view.Tasks[pos], &rs.plan.Tasks[pos]
	charged := t.Charged
	if Refunded(o.reason) {
		charged--
	}
	attempt := t.Attempt
	if !o.permanent && charged < pt.Retry.MaxAttempts {
		wait := o.after
		if !Refunded(o.reason) {
			wait = max(wait, pt.Retry.Wait(rs.id, pt.ID, charged))
		}
		d := &EventData{Error: o.err, Reason: o.reason}
		if wait > 0 {
			d.NotBefore = b.now.Add(wait)
		}
		if b.add(EventTaskAttemptFailed, pos, attempt, d) {
			b.then(func() { e.enqueue(rs, pos) })
		}
		return
	}
	typ := EventTaskFailed
	if o.reason == ReasonTimeout {
		typ = EventTaskTimedOut
	}
	b.add(typ, pos, attempt, &EventData{Error: o.err, Reason: o.reason})
	e.skipDescendants(b, pos)
}

// readyChildren records the tasks that pos completing made ready.
func (e *Engine) readyChildren(b *batch, pos int) {
	rs := b.rs
	for _, c := range rs.plan.Tasks[pos].Children {
		rs.waiting[c]--
		if rs.waiting[c] == 0 && rs.view.Tasks[c].State == TaskPending {
			e.markReady(b, c)
		}
	}
}

// skipDescendants records every pending task downstream of pos as skipped.
func (e *Engine) skipDescendants(b *batch, pos int) {
	rs := b.rs
	stack := []int{pos}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range rs.plan.Tasks[p].Children {
			if rs.view.Tasks[c].State != TaskPending {
				continue
			}
			b.add(EventTaskSkipped, c, 0, &EventData{Reason: ReasonUpstreamFailed, Error: &TaskError{
				Code: ReasonUpstreamFailed, Message: fmt.Sprintf("upstream task %q did not complete", rs.plan.Tasks[p].ID)}})
			stack = append(stack, c)
		}
	}
}

// settle ends a running run whose tasks are all done: completed when every
// task completed, failed otherwise.
func (e *Engine) settle(b *batch) {
	rs := b.rs
	v := rs.view
	if v.Run.State != RunRunning {
		return
	}
	n := len(v.Tasks)
	done := v.Count(TaskCompleted) + v.Count(TaskFailed) + v.Count(TaskTimedOut) + v.Count(TaskSkipped) + v.Count(TaskCancelled)
	if done < n {
		return
	}
	if v.Count(TaskCompleted) == n {
		if tmpl := rs.plan.Def.Output; len(tmpl) > 0 && !isNullJSON(tmpl) {
			e.requestResolve(b, -1) // completes the run once resolved
			return
		}
		out, terr := e.sinkOutputs(rs)
		e.completeRun(b, out, terr)
		return
	} else {
		b.add(EventRunFailed, -1, 0, &EventData{Error: runError(rs)})
	}
	e.m.runEnded(&v.Run)
}

// runError names the first task, in topological order, that failed.
func runError(rs *runState) *TaskError {
	for i := range rs.view.Tasks {
		t := &rs.view.Tasks[i]
		if t.State == TaskFailed || t.State == TaskTimedOut {
			msg := fmt.Sprintf("task %q %s", t.TaskID, t.State)
			if t.Error != nil {
				msg += ": " + t.Error.Message
			}
			return &TaskError{Code: "task_" + string(t.State), Message: msg}
		}
	}
	return &TaskError{Code: "task_failed", Message: "a task did not complete"}
}

// startRun records the run becoming running (started, resumed or retried)
// and arms its deadline.
func (e *Engine) startRun(b *batch, typ EventType) {
	rs := b.rs
	d := &EventData{}
	if typ != EventRunResumed && rs.plan.Timeout > 0 {
		d.Deadline = b.now.Add(rs.plan.Timeout)
	}
	if !b.add(typ, -1, 0, d) {
		return
	}
	if typ == EventRunStarted {
		e.readyPending(b)
	}
	e.armDeadline(b)
	e.settle(b)
}

// armDeadline arms the run timeout once the batch is durable; a deadline
// already past times the run out in this batch.
func (e *Engine) armDeadline(b *batch) {
	rs := b.rs
	dl := rs.view.Run.Deadline
	if dl.IsZero() || rs.view.Run.State != RunRunning {
		return
	}
	if !dl.After(b.now) {
		e.endRun(b, EventRunTimedOut, ReasonRunTimedOut)
		return
	}
	b.then(func() { e.arm(&timer{at: dl, kind: timerDeadline, rs: rs}) })
}

// endRun cancels every unfinished task and ends the run with typ
// (run.cancelled or run.timed_out).
func (e *Engine) endRun(b *batch, typ EventType, reason string) {
	var terr *TaskError
	if typ == EventRunTimedOut {
		terr = &TaskError{Code: "run_timed_out", Message: fmt.Sprintf("run exceeded its timeout of %s", b.rs.plan.Timeout)}
	}
	e.endRunWith(b, typ, reason, terr)
}

// endRunWith is endRun recording terr as the run's error.
func (e *Engine) endRunWith(b *batch, typ EventType, reason string, terr *TaskError) {
	rs := b.rs
	for i := range rs.view.Tasks {
		if rs.view.Tasks[i].State.Terminal() {
			continue
		}
		b.add(EventTaskCancelled, i, rs.view.Tasks[i].Attempt*boolInt(rs.view.Tasks[i].State == TaskRunning), &EventData{Reason: reason})
		if c, ok := rs.cancels[i]; ok {
			c.cancel()
			delete(rs.cancels, i)
		}
	}
	if b.add(typ, -1, 0, &EventData{Reason: reason, Error: terr}) {
		e.m.runEnded(&rs.view.Run)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
