package engine

// Review helpers: read-only views of the engine's in-memory bookkeeping, for
// the review tests in package engine_test (which can use the real store; an
// internal test cannot import store without an import cycle).

// ReviewTimers returns how many timers are armed, and how many of them refer
// to a run the engine no longer holds (released or reloaded).
func (e *Engine) ReviewTimers() (total, stale int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.timers {
		if e.runs[t.rs.id] != t.rs {
			stale++
		}
	}
	return len(e.timers), stale
}

// ReviewRunTimers returns how many armed timers refer to runID.
func (e *Engine) ReviewRunTimers(runID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, t := range e.timers {
		if t.rs.id == runID {
			n++
		}
	}
	return n
}

// ReviewFireTimers fires every timer that is due by the engine's clock.
func (e *Engine) ReviewFireTimers() { e.fireTimers() }

// ReviewWaiters returns how many Wait channels are registered for runID.
func (e *Engine) ReviewWaiters(runID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.waiters[runID])
}

// ReviewLaneWaiters returns how many poll channels wait in the lane of
// (tenant, typ), and how many of them are already closed.
func (e *Engine) ReviewLaneWaiters(tenant, typ string) (n, closed int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.lanes[laneKey(tenant, typ)]
	if l == nil {
		return 0, 0
	}
	for ch := range l.waiters {
		n++
		select {
		case <-ch:
			closed++
		default:
		}
	}
	return n, closed
}

// ReviewLanes returns how many lanes the engine keeps.
func (e *Engine) ReviewLanes() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.lanes)
}

// ReviewActive returns how many runs the engine holds in memory.
func (e *Engine) ReviewActive() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.runs)
}
