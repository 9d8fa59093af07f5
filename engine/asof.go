package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// AsOf names a point in a run's history: after its event Seq, or after its
// last event recorded at or before Time. Exactly one is set.
type AsOf struct {
	Seq  int64
	Time time.Time
}

// ErrBeforeRun: an AsOf names a time before the run's first event.
var ErrBeforeRun = errors.New("the run did not exist yet")

// asOfPage is how many events GetRunAsOf reads at a time.
const asOfPage = 1000

// GetRunAsOf returns a tenant's run and its tasks as they were at a point of
// its history: its events up to that point folded through the same apply
// as the live engine and verify, so that it is what the projection was
// then. A Seq past the run's last event, or a time after it, is the run as
// it is now. Errors: ErrNotFound, ErrBeforeRun.
func (e *Engine) GetRunAsOf(ctx context.Context, tenantID, runID string, at AsOf) (*Run, []Task, error) {
	if (at.Seq > 0) == !at.Time.IsZero() {
		return nil, nil, errors.New("as of: name a seq or a time, not both or neither")
	}
	row, err := e.store.GetRunRow(ctx, tenantID, runID)
	if err != nil {
		return nil, nil, err
	}
	plan, _, err := e.plan(ctx, tenantID, row.Workflow, row.Version)
	if err != nil {
		return nil, nil, err
	}
	v := NewRunView(plan)
	var after int64
	for done := false; !done; {
		evs, err := e.store.RunEvents(ctx, tenantID, runID, after, asOfPage)
		if err != nil {
			return nil, nil, err
		}
		for i := range evs {
			ev := &evs[i]
			if (at.Seq > 0 && ev.Seq > at.Seq) || (!at.Time.IsZero() && ev.At.After(at.Time)) {
				done = true
				break
			}
			if err := v.Apply(ev); err != nil {
				return nil, nil, fmt.Errorf("run %s as of seq %d: %w", runID, ev.Seq, err)
			}
			after = ev.Seq
		}
		done = done || len(evs) < asOfPage
	}
	if after == 0 {
		return nil, nil, fmt.Errorf("run %s as of %s: %w", runID, FormatTime(at.Time), ErrBeforeRun)
	}
	run := v.Run
	return &run, v.Tasks, nil
}
