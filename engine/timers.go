package engine

import (
	"container/heap"
	"fmt"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

type timerKind uint8

const (
	timerReady    timerKind = iota + 1 // a retry backoff is over: dispatch the task
	timerAttempt                       // a watched attempt: sleep wake, timeout, lease expiry
	timerDeadline                      // the run timeout
)

// timer is a moment the engine must act at. Timers are never cancelled: one
// that fires for a state that moved on does nothing.
type timer struct {
	at      time.Time
	kind    timerKind
	rs      *runState
	pos     int
	attempt int
	idx     int // in Engine.timers
}

type timerHeap []*timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old) - 1
	t := old[n]
	old[n] = nil
	*h = old[:n]
	t.idx = -1
	return t
}

// arm schedules t. A run's timers are removed when the engine forgets the
// run, so a finished run is not kept in memory until its deadline.
func (e *Engine) arm(t *timer) {
	t.rs.timers[t] = struct{}{}
	heap.Push(&e.timers, t)
	e.kickTimers(t)
}

// armAttempt arms the next moment a running attempt the engine watches must
// be looked at: a sleep's wake time, the timeout of a sleep or external
// attempt, an external lease's expiry. In-process attempts time out through
// their context.
func (e *Engine) armAttempt(rs *runState, pos int) {
	at, ok := e.attemptDue(rs, pos)
	if !ok {
		return
	}
	attempt := rs.view.Tasks[pos].Attempt
	// One watch per task: a timer already armed for it is moved rather
	// than joined by another (heartbeats move the lease expiry).
	if t := rs.watch[pos]; t != nil && t.idx >= 0 {
		if t.attempt == attempt && t.at.Equal(at) {
			return
		}
		t.at, t.attempt = at, attempt
		heap.Fix(&e.timers, t.idx)
		e.kickTimers(t)
		return
	}
	t := &timer{at: at, kind: timerAttempt, rs: rs, pos: pos, attempt: attempt}
	rs.watch[pos] = t
	e.arm(t)
}

// kickTimers wakes the timer loop when t became the earliest timer.
func (e *Engine) kickTimers(t *timer) {
	if e.timers[0] == t {
		select {
		case e.timerWake <- struct{}{}:
		default:
		}
	}
}

// attemptDue is the earliest of the moments armAttempt watches.
func (e *Engine) attemptDue(rs *runState, pos int) (time.Time, bool) {
	t, pt := &rs.view.Tasks[pos], &rs.plan.Tasks[pos]
	var at time.Time
	earliest := func(x time.Time) {
		if !x.IsZero() && (at.IsZero() || x.Before(at)) {
			at = x
		}
	}
	earliest(t.WakeAt)
	earliest(t.LeaseExpiresAt)
	if pt.Timeout > 0 && (pt.Type == definition.TypeSleep || t.LeaseHash != "") {
		earliest(t.StartedAt.Add(pt.Timeout))
	}
	return at, !at.IsZero()
}

// checkAttempt acts on a watched attempt whose moment came: the sleep
// completes, the attempt times out, or the lease expires; a heartbeat may
// have moved the lease, so it re-arms otherwise.
func (e *Engine) checkAttempt(rs *runState, pos, attempt int) {
	t, pt := &rs.view.Tasks[pos], &rs.plan.Tasks[pos]
	if t.State != TaskRunning || t.Attempt != attempt {
		return
	}
	now := e.now()
	switch {
	case pt.Type == definition.TypeSleep && !t.WakeAt.IsZero() && !now.Before(t.WakeAt):
		e.finishAttempt(rs, pos, attempt, outcome{})
	case pt.Timeout > 0 && !now.Before(t.StartedAt.Add(pt.Timeout)):
		e.finishAttempt(rs, pos, attempt, failed("timeout", "attempt exceeded its timeout", ReasonTimeout))
	case !t.LeaseExpiresAt.IsZero() && !now.Before(t.LeaseExpiresAt):
		e.finishAttempt(rs, pos, attempt, failed("lease_expired",
			fmt.Sprintf("worker %q did not heartbeat or report before its lease expired", t.WorkerID), ReasonLeaseExpired))
	default:
		e.armAttempt(rs, pos)
	}
}

// timerLoop fires timers until Stop.
func (e *Engine) timerLoop() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := e.fireTimers()
		t.Reset(next)
		select {
		case <-t.C:
		case <-e.timerWake:
		case <-e.quit:
			return
		}
	}
}

// fireTimers fires every due timer and returns how long until the next one.
func (e *Engine) fireTimers() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.timers.Len() > 0 {
		t := e.timers[0]
		wait := t.at.Sub(e.now())
		if wait > 0 {
			return wait
		}
		heap.Pop(&e.timers)
		delete(t.rs.timers, t)
		if t.kind == timerAttempt && t.rs.watch[t.pos] == t {
			delete(t.rs.watch, t.pos)
		}
		if !e.stopping {
			e.fire(t)
		}
	}
	return time.Hour
}

func (e *Engine) fire(t *timer) {
	rs := t.rs
	if rs.broken || e.runs[rs.id] != rs {
		return
	}
	switch t.kind {
	case timerReady:
		task := &rs.view.Tasks[t.pos]
		if task.State == TaskReady && task.Attempt == t.attempt && !task.NotBefore.After(t.at) {
			e.enqueue(rs, t.pos)
		}
	case timerAttempt:
		e.checkAttempt(rs, t.pos, t.attempt)
	case timerDeadline:
		if rs.view.Run.State != RunRunning || !rs.view.Run.Deadline.Equal(t.at) {
			return
		}
		b := e.newBatch(rs, ActorEngine)
		e.endRun(b, EventRunTimedOut, ReasonRunTimedOut)
		b.commit(nil)
		e.fixRun(rs)
	}
}
