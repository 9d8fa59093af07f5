package engine

import (
	"errors"
	"fmt"
	"time"
)

// MaxPage is the largest page a list query returns.
const MaxPage = 1000

// RunFilter selects a tenant's runs, newest first: by created_at, then by
// id, both descending.
type RunFilter struct {
	TenantID      string
	State         RunState   // "" = any
	Workflow      string     // "" = any
	CreatedAfter  time.Time  // zero = no bound; exclusive
	CreatedBefore time.Time  // zero = no bound; exclusive
	OriginKind    OriginKind // "" = any, runs started by a direct call included
	OriginID      string     // "" = any; with OriginKind: runs of that schedule or trigger
	Limit         int        // 1..MaxPage
	// Cursor continues after the last run of the previous page.
	Cursor *RunCursor
}

// Validate reports a filter no store answers: a limit out of 1..MaxPage.
func (f *RunFilter) Validate() error {
	if f.Limit < 1 || f.Limit > MaxPage {
		return fmt.Errorf("list runs: limit %d out of 1..%d", f.Limit, MaxPage)
	}
	if f.OriginID != "" && f.OriginKind == "" {
		return errors.New("list runs: an origin id needs its kind")
	}
	return nil
}

// RunCursor is the position of a run in the newest-first order: a page
// continues with the runs that sort after it.
type RunCursor struct {
	CreatedAt time.Time
	ID        string
}

// CursorOf returns the cursor that continues after run r.
func CursorOf(r *Run) *RunCursor { return &RunCursor{CreatedAt: r.CreatedAt, ID: r.ID} }

// EventFilter selects events of a tenant. Without a time bound they come in
// log order (by id); with RunID in the run's seq order (the same order); with
// Since or Until, and no RunID, in time order (by at, then id).
type EventFilter struct {
	TenantID string
	RunID    string // "" = every run
	TaskID   string
	Type     EventType
	Actor    string
	OnBehalf string    // whom the actor acted for (an X-Actor, a worker id)
	Since    time.Time // zero = no bound; inclusive
	Until    time.Time // zero = no bound; exclusive
	// After continues after an event of a previous page. A query in time
	// order needs its At as well as its ID.
	After    *EventCursor
	AfterSeq int64 // with RunID: events with a larger seq
	Limit    int   // 1..MaxPage+1 for ListEvents; for StreamEvents 0 = no limit
}

// EventCursor is the position of an event: its ID in log order, and its At
// too in time order.
type EventCursor struct {
	ID int64
	At time.Time
}

// EventCursorOf returns the cursor that continues after e.
func EventCursorOf(e *Event) *EventCursor { return &EventCursor{ID: e.ID, At: e.At} }

// Timed reports whether the filter has a time bound: events then come in
// time order, and a cursor needs its At.
func (f *EventFilter) Timed() bool { return !f.Since.IsZero() || !f.Until.IsZero() }

// ErrCursorWithoutTime: a query in time order was given a cursor without At.
var ErrCursorWithoutTime = errors.New("a cursor of a query in time order needs the time of its event")

// Validate reports a filter no store answers: a time-ordered query whose
// cursor has no time, or (with page) a limit out of 1..MaxPage+1. One more
// than a page tells whether another follows.
func (f *EventFilter) Validate(page bool) error {
	if page && (f.Limit < 1 || f.Limit > MaxPage+1) {
		return fmt.Errorf("list events: limit %d out of 1..%d", f.Limit, MaxPage+1)
	}
	if f.After != nil && f.RunID == "" && f.Timed() && f.After.At.IsZero() {
		return fmt.Errorf("events after %d: %w", f.After.ID, ErrCursorWithoutTime)
	}
	return nil
}
