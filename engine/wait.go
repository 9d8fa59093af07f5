package engine

import (
	"context"
	"slices"
	"time"
)

// Wait blocks until the run is in a terminal state and that state is durable,
// and returns it. A run that is paused keeps Wait waiting. Errors:
// ErrNotFound, ctx.Err().
func (e *Engine) Wait(ctx context.Context, tenantID, runID string) (*Run, error) {
	for {
		e.mu.Lock()
		var ch chan struct{}
		if rs := e.runs[runID]; rs != nil && rs.tenant == tenantID {
			ch = make(chan struct{})
			e.waiters[runID] = append(e.waiters[runID], ch)
		}
		e.mu.Unlock()
		if ch == nil {
			run, _, err := e.store.LoadRun(ctx, tenantID, runID)
			if err != nil {
				return nil, err
			}
			if run.State.Terminal() {
				return run, nil
			}
			// Active but not in memory: being reloaded. Look again shortly.
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			e.mu.Lock()
			ws := slices.DeleteFunc(e.waiters[runID], func(c chan struct{}) bool { return c == ch })
			if len(ws) == 0 {
				delete(e.waiters, runID)
			} else {
				e.waiters[runID] = ws
			}
			e.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}
