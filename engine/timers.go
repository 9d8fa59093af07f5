package engine

import (
	"container/heap"
	"time"
)

type timerKind uint8

const (
	timerReady    timerKind = iota + 1 // a retry backoff is over: dispatch the task
	timerSleep                         // a sleep task's wake time or timeout
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
}

type timerHeap []*timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(*timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old) - 1
	t := old[n]
	old[n] = nil
	*h = old[:n]
	return t
}

// arm schedules t.
func (e *Engine) arm(t *timer) {
	heap.Push(&e.timers, t)
	if e.timers[0] == t {
		select {
		case e.timerWake <- struct{}{}:
		default:
		}
	}
}

// armSleep arms a running sleep task: it completes at its wake time, or times
// out first if its timeout is shorter.
func (e *Engine) armSleep(rs *runState, pos int) {
	t := &rs.view.Tasks[pos]
	at := t.WakeAt
	if to := rs.plan.Tasks[pos].Timeout; to > 0 && t.StartedAt.Add(to).Before(at) {
		at = t.StartedAt.Add(to)
	}
	e.arm(&timer{at: at, kind: timerSleep, rs: rs, pos: pos, attempt: t.Attempt})
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
	case timerSleep:
		task := &rs.view.Tasks[t.pos]
		if task.State != TaskRunning || task.Attempt != t.attempt {
			return
		}
		if e.now().Before(task.WakeAt) {
			e.finishAttempt(rs, t.pos, t.attempt, nil, &TaskError{Code: "timeout", Message: "attempt exceeded its timeout"}, ReasonTimeout)
		} else {
			e.finishAttempt(rs, t.pos, t.attempt, nil, nil, "")
		}
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
