package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// References are resolved off Engine.mu: a task that became ready with a
// templated input, and a run whose tasks completed with a templated output,
// get their template rendered by a resolver goroutine from a snapshot of
// what it references (see refSource), and the result is recorded afterwards
// in a batch of its own. Rendering is bounded (MaxOutputBytes and what the
// run may still record), and no other run waits on it.

// Error codes of payloads over their bounds.
const (
	CodeOutputTooLarge = "output_too_large" // a task's or the run's output is over MaxOutputBytes
	CodeInputTooLarge  = "input_too_large"  // a task's resolved input is over MaxOutputBytes
	CodeRunTooLarge    = "run_too_large"    // the run would record more than Config.MaxRunBytes
)

// CodeBadReference is the error code of a task whose input references did
// not resolve, and of a run whose output references did not.
const CodeBadReference = "bad_reference"

// resolverCount is how many goroutines render templates.
const resolverCount = 2

// resolution is one template to render: task pos's input, or the run's
// output when pos is -1.
type resolution struct {
	rs    *runState
	pos   int
	tmpl  json.RawMessage
	src   *definition.Source
	limit int64 // bytes the result may take
	// runBound says that limit is what the run may still record, not MaxOutputBytes.
	runBound bool
}

// markReady records a task as ready; a task whose input has references
// becomes ready once they are resolved.
func (e *Engine) markReady(b *batch, pos int) {
	rs := b.rs
	if rs.plan.Tasks[pos].Refs {
		e.requestResolve(b, pos)
		return
	}
	if b.add(EventTaskReady, pos, 0, nil) {
		b.then(func() { e.enqueue(rs, pos) })
	}
}

// requestResolve queues the template of task pos (or of the run's output,
// pos -1) for a resolver once b is durable, unless it is queued already.
func (e *Engine) requestResolve(b *batch, pos int) {
	rs := b.rs
	if rs.resolving[pos] {
		return
	}
	if rs.resolving == nil {
		rs.resolving = map[int]bool{}
	}
	rs.resolving[pos] = true
	r := resolution{rs: rs, pos: pos, limit: MaxOutputBytes}
	if pos >= 0 {
		r.tmpl = rs.plan.Tasks[pos].Input
		r.src = snapshotRefs(rs.view, rs.plan.Tasks[pos].RefTasks)
	} else {
		r.tmpl = rs.plan.Def.Output
		r.src = snapshotRefs(rs.view, rs.plan.OutputRefTasks)
	}
	if left := e.runBytesLeft(rs); left < r.limit {
		r.limit, r.runBound = left, true
	}
	b.then(func() {
		e.resolveQ = append(e.resolveQ, r)
		select {
		case e.resolveWake <- struct{}{}:
		default:
		}
	})
}

// resolverLoop renders queued templates until Stop.
func (e *Engine) resolverLoop() {
	for {
		e.mu.Lock()
		var r resolution
		ok := len(e.resolveQ) > 0
		if ok {
			r = e.resolveQ[0]
			e.resolveQ[0] = resolution{}
			e.resolveQ = e.resolveQ[1:]
		}
		more := len(e.resolveQ) > 0
		e.mu.Unlock()
		if more {
			select {
			case e.resolveWake <- struct{}{}: // pass it on to the other resolver
			default:
			}
		}
		if ok {
			e.resolveOne(r)
			continue
		}
		select {
		case <-e.resolveWake:
		case <-e.quit:
			return
		}
	}
}

// resolveOne renders a template without Engine.mu and records the outcome,
// if the run still wants it.
func (e *Engine) resolveOne(r resolution) {
	if e.resolveHook != nil {
		e.resolveHook()
	}
	out, err := definition.Render(r.tmpl, r.src, int(r.limit))
	if err != nil && r.runBound && errors.Is(err, definition.ErrTooLarge) {
		err = &runTooLargeError{limit: e.maxRunBytes, left: r.limit}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	rs := r.rs
	delete(rs.resolving, r.pos)
	if rs.broken || e.runs[rs.id] != rs || e.stopping {
		return // a reload or the next start asks again
	}
	b := e.newBatch(rs, ActorEngine)
	if r.pos < 0 {
		if rs.view.Run.State != RunRunning || rs.view.Count(TaskCompleted) != len(rs.view.Tasks) {
			return
		}
		if err != nil {
			e.completeRun(b, nil, resolveError(err, CodeOutputTooLarge, "run output: "))
		} else {
			e.completeRun(b, out, nil)
		}
	} else {
		if rs.view.Tasks[r.pos].State != TaskPending || rs.waiting[r.pos] != 0 {
			return
		}
		d := &EventData{Input: out}
		if err != nil {
			d = &EventData{Error: resolveError(err, CodeInputTooLarge, "input: ")}
		}
		if !b.add(EventTaskReady, r.pos, 0, d) {
			b.commit(nil)
			return
		}
		if d.Error != nil && d.Error.Code == CodeRunTooLarge {
			e.failRun(b, d.Error)
		} else {
			pos := r.pos
			b.then(func() { e.enqueue(rs, pos) })
		}
	}
	b.commit(nil)
	e.fixRun(rs)
}

// completeRun ends a run whose tasks all completed: completed with out, or
// failed with terr when its output could not be made.
func (e *Engine) completeRun(b *batch, out json.RawMessage, terr *TaskError) {
	if terr == nil && int64(len(out)) > e.runBytesLeft(b.rs) {
		terr = &TaskError{Code: CodeRunTooLarge, Message: fmt.Sprintf(
			"run output of %d bytes would take the run past its limit of %d recorded bytes (MAX_RUN_BYTES)", len(out), e.maxRunBytes)}
	}
	if terr != nil {
		b.add(EventRunFailed, -1, 0, &EventData{Error: terr})
	} else {
		b.add(EventRunCompleted, -1, 0, &EventData{Output: out})
	}
	e.m.runEnded(&b.rs.view.Run)
}

// failRun ends a running run at once as failed with terr, cancelling what
// is unfinished: a run past MaxRunBytes does no more work.
func (e *Engine) failRun(b *batch, terr *TaskError) {
	if b.rs.view.Run.State == RunRunning {
		e.endRunWith(b, EventRunFailed, terr.Code, terr)
	}
}

// runBytesLeft is how many payload bytes the run may still record.
func (e *Engine) runBytesLeft(rs *runState) int64 {
	return max(0, e.maxRunBytes-rs.view.Run.DataBytes)
}

// withinRunBytes fails a successful outcome whose output the run has no room
// left to record.
func (e *Engine) withinRunBytes(rs *runState, o outcome) outcome {
	if left := e.runBytesLeft(rs); int64(len(o.out)) > left {
		f := failed(CodeRunTooLarge, fmt.Sprintf("output of %d bytes would take the run past its limit of %d recorded bytes (MAX_RUN_BYTES); %d are left",
			len(o.out), e.maxRunBytes, left), ReasonPermanent)
		f.permanent = true
		return f
	}
	return o
}

// unresolved returns the error of a ready task whose input did not resolve.
func unresolved(t *Task) *TaskError {
	if t.Error == nil || t.Input != nil {
		return nil
	}
	switch t.Error.Code {
	case CodeBadReference, CodeInputTooLarge, CodeRunTooLarge:
		return t.Error
	}
	return nil
}

// runTooLargeError is a resolution stopped by the run's MaxRunBytes.
type runTooLargeError struct{ limit, left int64 }

func (e *runTooLargeError) Error() string {
	return fmt.Sprintf("resolved value would take the run past its limit of %d recorded bytes (MAX_RUN_BYTES); %d are left", e.limit, e.left)
}

// resolveError is the recorded error of a template that did not resolve.
func resolveError(err error, tooLarge, prefix string) *TaskError {
	var rte *runTooLargeError
	switch {
	case errors.As(err, &rte):
		return &TaskError{Code: CodeRunTooLarge, Message: prefix + err.Error()}
	case errors.Is(err, definition.ErrTooLarge):
		return &TaskError{Code: tooLarge, Message: prefix + err.Error()}
	}
	return &TaskError{Code: CodeBadReference, Message: prefix + err.Error()}
}

// sinkOutputs is the output of a run without an output template: the
// outputs of the tasks nothing depends on, by task id, within MaxOutputBytes
// and what the run may still record.
func (e *Engine) sinkOutputs(rs *runState) (json.RawMessage, *TaskError) {
	limit := min(int64(MaxOutputBytes), e.runBytesLeft(rs))
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	for i := range rs.plan.Tasks {
		if len(rs.plan.Tasks[i].Children) > 0 {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		id, _ := json.Marshal(rs.plan.Tasks[i].ID)
		buf.Write(id)
		buf.WriteByte(':')
		out := rs.view.Tasks[i].Output
		if len(out) == 0 {
			out = json.RawMessage("null")
		}
		if int64(buf.Len()+len(out)+1) > limit {
			if limit < MaxOutputBytes {
				return nil, &TaskError{Code: CodeRunTooLarge, Message: fmt.Sprintf(
					"run output: the outputs of the tasks nothing depends on would take the run past its limit of %d recorded bytes (MAX_RUN_BYTES)", e.maxRunBytes)}
			}
			return nil, &TaskError{Code: CodeOutputTooLarge, Message: fmt.Sprintf(
				"run output: the outputs of the tasks nothing depends on are over %d bytes, the limit; set the definition's output to say what the run returns", MaxOutputBytes)}
		}
		buf.Write(out)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// snapshotRefs takes the source of a template naming tasks ids.
func snapshotRefs(v *RunView, ids []string) *definition.Source {
	src := &definition.Source{Input: v.Run.Input}
	for _, id := range ids {
		t := v.Task(id)
		switch {
		case t == nil:
		case t.State == TaskCompleted:
			if src.Outputs == nil {
				src.Outputs = map[string]json.RawMessage{}
			}
			src.Outputs[id] = t.Output
		default:
			if src.States == nil {
				src.States = map[string]string{}
			}
			src.States[id] = string(t.State)
		}
	}
	return src
}
