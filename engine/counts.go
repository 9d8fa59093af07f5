package engine

import (
	"context"
	"errors"
)

// RunCounter is a store that counts a tenant's runs by state.
type RunCounter interface {
	// CountRuns counts the runs f selects (its State, Cursor and Limit
	// left out), by state; states without runs are absent.
	CountRuns(ctx context.Context, f RunFilter) (map[RunState]int, error)
}

// ErrCountsUnsupported: the store cannot count runs.
var ErrCountsUnsupported = errors.New("the store does not count runs")

// CountRuns counts a tenant's runs by state, as the runs list with the
// same filter (state, cursor and limit aside) would list them; every state
// is in the answer, 0 when no run is in it.
func (e *Engine) CountRuns(ctx context.Context, f RunFilter) (map[RunState]int, error) {
	rc, ok := e.store.(RunCounter)
	if !ok {
		return nil, ErrCountsUnsupported
	}
	got, err := rc.CountRuns(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make(map[RunState]int, len(RunStates()))
	for _, s := range RunStates() {
		out[s] = got[s]
	}
	return out, nil
}
