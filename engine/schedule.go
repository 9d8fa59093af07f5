package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// A schedule starts runs of a workflow at the slots of a cron expression.
// It is domain state with its own append-only, hash-chained log, like a
// run: every change of it (created, updated, paused, a slot fired, slots
// missed) is a ScheduleEvent, and the schedule row is the projection of
// its events, written in the same transaction. A slot fires by starting a
// run whose idempotency key is derived from (schedule, slot) in the same
// commit that records the slot as fired (Change.Schedule), so that a crash
// between deciding and committing neither loses nor doubles it.

// ScheduleState is the state of a schedule.
type ScheduleState string

// Schedule states.
const (
	// ScheduleActive: slots fire. Create and unpause move a schedule here.
	ScheduleActive ScheduleState = "active"
	// SchedulePaused: slots neither fire nor count as missed; unpause
	// resumes from the time it is made. Pause moves a schedule here.
	SchedulePaused ScheduleState = "paused"
	// ScheduleDeleted: final; the row and its log stay for the audit, its
	// id is not reused. Delete moves a schedule here from either state.
	ScheduleDeleted ScheduleState = "deleted"
)

// ScheduleStates lists every schedule state.
func ScheduleStates() []ScheduleState {
	return []ScheduleState{ScheduleActive, SchedulePaused, ScheduleDeleted}
}

// OverlapPolicy says what a slot does while the schedule's previous run is
// still active.
type OverlapPolicy string

// Overlap policies.
const (
	OverlapSkip        OverlapPolicy = "skip"         // the slot is skipped (recorded); the default
	OverlapBufferOne   OverlapPolicy = "buffer_one"   // one slot waits for the previous run to end; later ones are skipped
	OverlapBufferAll   OverlapPolicy = "buffer_all"   // every slot waits, in order (at most MaxBufferedSlots)
	OverlapCancelOther OverlapPolicy = "cancel_other" // the previous run is cancelled, then the slot fires
	OverlapAllowAll    OverlapPolicy = "allow_all"    // the slot fires whatever runs
)

// OverlapPolicies lists every overlap policy.
func OverlapPolicies() []OverlapPolicy {
	return []OverlapPolicy{OverlapSkip, OverlapBufferOne, OverlapBufferAll, OverlapCancelOther, OverlapAllowAll}
}

// Bounds of a schedule.
const (
	DefaultCatchupWindow = time.Minute
	MaxCatchupWindow     = 7 * 24 * time.Hour
	MaxJitter            = 24 * time.Hour
	MaxBufferedSlots     = 1000 // buffer_all: slots waiting at once
	MaxBackfillSlots     = 1000 // slots one backfill fires
	MaxNextFireTimes     = 100  // fire times one read computes
	MaxScheduleInput     = 64 << 10
	MaxCronLength        = 256
)

// ScheduleSpec is what a schedule's owner sets.
type ScheduleSpec struct {
	// Cron is 5 fields, 6 with seconds first, a descriptor (@daily,
	// @hourly...) or @every DURATION.
	Cron string `json:"cron"`
	// TimeZone is an IANA zone the cron fields are read in; "" is UTC.
	TimeZone string `json:"time_zone,omitempty"`
	// StartAt and EndAt bound the slots (inclusive); zero is no bound.
	StartAt time.Time `json:"start_at,omitzero"`
	EndAt   time.Time `json:"end_at,omitzero"`
	// Jitter delays each slot's start by a duration in [0, Jitter) derived
	// from the schedule id and the slot, so that a replay computes the same.
	Jitter time.Duration `json:"jitter,omitempty"`
	// Workflow is "name" (the latest version when a slot fires), "name@N"
	// (version N) or "name@alias".
	Workflow string `json:"workflow"`
	// Input is the run's input: JSON in which the strings ${schedule.time}
	// (the slot, RFC 3339) and ${schedule.id} are replaced.
	Input json.RawMessage `json:"input,omitempty"`
	// Overlap is the overlap policy; "" is skip.
	Overlap OverlapPolicy `json:"overlap,omitempty"`
	// CatchupWindow is how late a slot may still fire after downtime; older
	// slots are recorded as missed. 0 is DefaultCatchupWindow.
	CatchupWindow time.Duration `json:"catchup_window,omitempty"`
}

// Schedule is a schedule as the store keeps it: its spec and the
// projection of its log.
type Schedule struct {
	TenantID string        `json:"tenant_id"`
	ID       string        `json:"id"`
	Spec     ScheduleSpec  `json:"spec"`
	State    ScheduleState `json:"state"`
	// Version counts the changes of the spec and state by a caller
	// (create, update, pause, unpause, delete): an update names the one it
	// read.
	Version int64 `json:"version"`
	// Seq and LastHash are the head of the schedule's log: every write is a
	// compare-and-set on Seq.
	Seq      int64  `json:"seq"`
	LastHash string `json:"last_hash"`
	// Cursor is the time up to which slots are decided (fired, skipped,
	// buffered or missed): the next slot is the first after it.
	Cursor time.Time `json:"cursor"`
	// LastRunID is the run of the latest slot fired: the previous run the
	// overlap policy looks at.
	LastRunID string `json:"last_run_id,omitempty"`
	// Buffered are slots waiting for the previous run to end (buffer_one,
	// buffer_all), oldest first.
	Buffered []time.Time `json:"buffered,omitempty"`
	// Counters of slots by outcome.
	Fired     int64     `json:"fired"`
	Skipped   int64     `json:"skipped"`
	Missed    int64     `json:"missed"`
	Failed    int64     `json:"failed"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ScheduleEventType names a fact of a schedule's log.
type ScheduleEventType string

// Schedule events.
const (
	ScheduleCreated      ScheduleEventType = "schedule.created"       // -> active; data: spec
	ScheduleUpdated      ScheduleEventType = "schedule.updated"       // data: spec
	SchedulePausedEv     ScheduleEventType = "schedule.paused"        // active -> paused
	ScheduleUnpaused     ScheduleEventType = "schedule.unpaused"      // paused -> active
	ScheduleDeletedEv    ScheduleEventType = "schedule.deleted"       // -> deleted
	ScheduleSlotFired    ScheduleEventType = "schedule.slot_fired"    // data: slot, run_id (backfill, buffered, replayed)
	ScheduleSlotSkipped  ScheduleEventType = "schedule.slot_skipped"  // data: slot, run_id of the active run
	ScheduleSlotBuffered ScheduleEventType = "schedule.slot_buffered" // data: slot, run_id of the active run
	ScheduleSlotsMissed  ScheduleEventType = "schedule.slots_missed"  // data: first, last, count
	ScheduleSlotFailed   ScheduleEventType = "schedule.slot_failed"   // data: slot, error
	ScheduleTriggered    ScheduleEventType = "schedule.triggered"     // data: slot (now), run_id
	ScheduleBackfilled   ScheduleEventType = "schedule.backfilled"    // data: from, to, count
)

// ScheduleEventTypes lists every schedule event type.
func ScheduleEventTypes() []ScheduleEventType {
	return []ScheduleEventType{ScheduleCreated, ScheduleUpdated, SchedulePausedEv, ScheduleUnpaused,
		ScheduleDeletedEv, ScheduleSlotFired, ScheduleSlotSkipped, ScheduleSlotBuffered, ScheduleSlotsMissed,
		ScheduleSlotFailed, ScheduleTriggered, ScheduleBackfilled}
}

// ScheduleEvent is one entry of a schedule's log: seq 1..n without gaps,
// each hash chained to the one before it.
type ScheduleEvent struct {
	TenantID   string            `json:"tenant_id"`
	ScheduleID string            `json:"schedule_id"`
	Seq        int64             `json:"seq"`
	Type       ScheduleEventType `json:"type"`
	Actor      string            `json:"actor"`
	OnBehalf   string            `json:"on_behalf,omitempty"`
	Data       json.RawMessage   `json:"data,omitempty"`
	At         time.Time         `json:"at"`
	Hash       string            `json:"hash"`
}

// ScheduleEventData is the data of a schedule event.
type ScheduleEventData struct {
	Spec     *ScheduleSpec   `json:"spec,omitempty"`
	Slot     time.Time       `json:"slot,omitzero"`
	RunID    string          `json:"run_id,omitempty"`
	First    time.Time       `json:"first,omitzero"`
	Last     time.Time       `json:"last,omitzero"`
	From     time.Time       `json:"from,omitzero"`
	To       time.Time       `json:"to,omitzero"`
	Count    int64           `json:"count,omitempty"`
	Backfill bool            `json:"backfill,omitempty"`
	Buffered bool            `json:"buffered,omitempty"`
	Replayed bool            `json:"replayed,omitempty"`
	Error    string          `json:"error,omitempty"`
	Policy   *PolicyDecision `json:"policy,omitempty"`
}

// ComputeHash returns the chain hash of e given the hash of the event
// before it ("" for the first). It covers every field but Hash.
func (e *ScheduleEvent) ComputeHash(prev string) string {
	w := newChainWriter(prev)
	w.str(e.TenantID)
	w.str(e.ScheduleID)
	w.num(e.Seq)
	w.str(string(e.Type))
	w.str(e.Actor)
	w.str(e.OnBehalf)
	w.str(string(e.Data))
	w.str(FormatTime(e.At))
	return w.sum()
}

// VerifyScheduleLog checks a schedule's whole log against its row: seqs
// 1..n, each hash chained to the one before, and the row equal to the fold
// of the events through applyScheduleEvent.
func VerifyScheduleLog(s *Schedule, events []ScheduleEvent) error {
	f := newScheduleFold(s)
	for i := range events {
		if err := f.add(&events[i]); err != nil {
			return err
		}
	}
	return f.check(s)
}

// scheduleFold replays a schedule's log one event at a time.
type scheduleFold struct {
	s *Schedule
	n int64
}

func newScheduleFold(row *Schedule) *scheduleFold {
	return &scheduleFold{s: &Schedule{TenantID: row.TenantID, ID: row.ID}}
}

// add checks that ev follows the events before it and applies it.
func (f *scheduleFold) add(ev *ScheduleEvent) error {
	f.n++
	if ev.Seq != f.n {
		return fmt.Errorf("schedule %s: event %d has seq %d", f.s.ID, f.n, ev.Seq)
	}
	if want := ev.ComputeHash(f.s.LastHash); ev.Hash != want {
		return fmt.Errorf("schedule %s: event %d: hash %s, want %s", f.s.ID, ev.Seq, ev.Hash, want)
	}
	var d ScheduleEventData
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return fmt.Errorf("schedule %s: event %d: %w", f.s.ID, ev.Seq, err)
		}
	}
	next, err := applyScheduleEvent(f.s, ev, &d)
	if err != nil {
		return fmt.Errorf("schedule %s: event %d: %w", f.s.ID, ev.Seq, err)
	}
	f.s = next
	return nil
}

// check compares the fold with the stored row.
func (f *scheduleFold) check(row *Schedule) error {
	if !reflect.DeepEqual(f.s, row) {
		return fmt.Errorf("schedule %s: the row differs from the fold of its %d events:\n row  %+v\n fold %+v", row.ID, f.n, *row, *f.s)
	}
	return nil
}

// ScheduleChange is what one decision writes for one schedule: its new
// events and the row they produce, together or not at all.
type ScheduleChange struct {
	Schedule Schedule // the row after Events
	Insert   bool     // a new schedule: insert the row instead of updating it
	PrevSeq  int64    // compare-and-set: the schedule's Seq before
	Events   []ScheduleEvent
}

// ScheduleFilter selects a tenant's schedules that are not deleted, by id.
type ScheduleFilter struct {
	TenantID string
	After    string // continue after this id
	Limit    int    // 1..MaxPage
}

// ScheduleStore is what schedules need of their storage. The sqlite store
// implements it; store/storetest holds it to this contract. A Change whose
// Schedule is set writes it in the run's own transaction, under the same
// rules as WriteSchedule.
type ScheduleStore interface {
	// WriteSchedule writes a change durably. A change that inserts a
	// schedule whose id the tenant has (deleted ones included), or whose
	// PrevSeq is not the stored Seq, or that repeats a stored seq, fails
	// with ErrConflict and writes nothing; an update of a schedule not
	// stored fails with ErrNotFound.
	WriteSchedule(ctx context.Context, ch *ScheduleChange) error
	// GetSchedule returns a tenant's schedule, deleted ones included, or
	// ErrNotFound.
	GetSchedule(ctx context.Context, tenantID, id string) (*Schedule, error)
	// ListSchedules returns one page of a tenant's schedules that are not
	// deleted, by id.
	ListSchedules(ctx context.Context, f ScheduleFilter) ([]Schedule, error)
	// EachSchedule calls fn with the tenant and id of every schedule of
	// every tenant (only those in state active when active is set), by
	// tenant and id, and stops at fn's first error. fn may read the store.
	EachSchedule(ctx context.Context, active bool, fn func(tenantID, id string) error) error
	// ScheduleEvents returns up to limit events of a tenant's schedule with
	// seq > afterSeq, in seq order, only those of type typ unless it is "".
	ScheduleEvents(ctx context.Context, tenantID, id string, afterSeq int64, typ ScheduleEventType, limit int) ([]ScheduleEvent, error)
}

// applyScheduleEvent returns the schedule row after ev, whose decoded data
// is d: the one function that changes a schedule, on the live path and when
// its log is replayed (VerifyScheduleLog). It refuses an event the
// schedule's state does not allow.
func applyScheduleEvent(prev *Schedule, ev *ScheduleEvent, d *ScheduleEventData) (*Schedule, error) {
	s := *prev
	s.Buffered = slices.Clone(prev.Buffered)
	refuse := func() (*Schedule, error) {
		return nil, &TransitionError{Subject: "schedule", Event: EventType(ev.Type), From: string(prev.State)}
	}
	if (prev.Seq == 0) != (ev.Type == ScheduleCreated) || (prev.State == ScheduleDeleted && ev.Type != ScheduleBackfilled) {
		return refuse()
	}
	later := func(t time.Time) {
		if t.After(s.Cursor) {
			s.Cursor = t
		}
	}
	popOrMove := func() {
		switch {
		case d.Backfill:
		case d.Buffered && len(s.Buffered) > 0:
			s.Buffered = s.Buffered[1:]
		default:
			s.Cursor = d.Slot
		}
	}
	switch ev.Type {
	case ScheduleCreated:
		if d.Spec == nil {
			return refuse()
		}
		s = Schedule{TenantID: ev.TenantID, ID: ev.ScheduleID, Spec: *d.Spec, State: ScheduleActive, Version: 1,
			Cursor: ev.At, CreatedAt: ev.At}
	case ScheduleUpdated:
		if d.Spec == nil {
			return refuse()
		}
		s.Spec, s.Version = *d.Spec, s.Version+1
		later(ev.At)
	case SchedulePausedEv:
		if prev.State != ScheduleActive {
			return refuse()
		}
		s.State, s.Version = SchedulePaused, s.Version+1
	case ScheduleUnpaused:
		if prev.State != SchedulePaused {
			return refuse()
		}
		s.State, s.Version = ScheduleActive, s.Version+1
		later(ev.At)
	case ScheduleDeletedEv:
		s.State, s.Version, s.Buffered = ScheduleDeleted, s.Version+1, nil
	case ScheduleSlotFired:
		popOrMove()
		s.Fired++
		if !d.Backfill {
			s.LastRunID = d.RunID
		}
	case ScheduleSlotFailed:
		popOrMove()
		s.Failed++
	case ScheduleSlotSkipped:
		s.Cursor = d.Slot
		s.Skipped++
	case ScheduleSlotBuffered:
		s.Cursor = d.Slot
		s.Buffered = append(s.Buffered, d.Slot)
	case ScheduleSlotsMissed:
		s.Cursor = d.Last
		s.Missed += d.Count
	case ScheduleTriggered:
		s.LastRunID = d.RunID
		s.Fired++
	case ScheduleBackfilled:
	default:
		return refuse()
	}
	if len(s.Buffered) == 0 {
		s.Buffered = nil
	}
	s.Seq, s.LastHash, s.UpdatedAt = ev.Seq, ev.Hash, ev.At
	return &s, nil
}

// VerifySchedules checks the log of every schedule of every tenant
// (VerifyScheduleLog), reading each log in pages, and calls bad for each
// that fails. It returns how many it checked, or the first error reading
// the store.
func VerifySchedules(ctx context.Context, st ScheduleStore, bad func(tenantID, id string, err error)) (int, error) {
	n := 0
	err := st.EachSchedule(ctx, false, func(tenantID, id string) error {
		s, err := st.GetSchedule(ctx, tenantID, id)
		if err != nil {
			return err
		}
		n++
		// Up to the row's head only: a running server may append meanwhile.
		f := newScheduleFold(s)
		for after := int64(0); after < s.Seq; {
			evs, err := st.ScheduleEvents(ctx, tenantID, id, after, "", min(MaxPage, int(s.Seq-after)))
			if err != nil {
				return err
			}
			for i := range evs {
				if err := f.add(&evs[i]); err != nil {
					bad(tenantID, id, err)
					return nil
				}
			}
			if len(evs) == 0 {
				break
			}
			after = evs[len(evs)-1].Seq
		}
		if err := f.check(s); err != nil {
			bad(tenantID, id, err)
		}
		return nil
	})
	return n, err
}
