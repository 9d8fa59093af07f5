package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// The operations on schedules the API calls. Each change is one event of
// the schedule's log, recorded with the caller; the API has checked the
// caller's permission (schedules.write, schedules.read).

// scheduleStore returns the store of schedules, or ErrSchedulesUnavailable.
func (e *Engine) scheduleStore() (ScheduleStore, error) {
	if e.sched.store == nil {
		return nil, ErrSchedulesUnavailable
	}
	return e.sched.store, nil
}

// CreateSchedule stores a new schedule (id "" gets a generated one) and
// returns it. Errors: *FieldError naming the first bad field (nothing is
// written), ErrConflict (the tenant has or had a schedule with this id).
func (e *Engine) CreateSchedule(ctx context.Context, by Caller, tenantID, id string, spec ScheduleSpec) (*Schedule, error) {
	st, err := e.scheduleStore()
	if err != nil {
		return nil, err
	}
	if id == "" {
		var b [8]byte
		rand.Read(b[:])
		id = "sch-" + hex.EncodeToString(b[:])
	}
	if !definition.ValidName(id) {
		return nil, &FieldError{Field: "id", Reason: fmt.Sprintf("%q must match [A-Za-z0-9_.-]{1,64}", id)}
	}
	sp, err := e.compileNewSpec(ctx, tenantID, spec)
	if err != nil {
		return nil, err
	}
	ch, err := scheduleChange(&Schedule{TenantID: tenantID, ID: id}, by, e.clock(), ScheduleCreated, &ScheduleEventData{Spec: &sp.spec})
	if err != nil {
		return nil, err
	}
	if err := st.WriteSchedule(ctx, ch); err != nil {
		return nil, err
	}
	e.sched.poke(schedKey{tenantID, id}, time.Time{})
	return &ch.Schedule, nil
}

// checkEvery refuses an @every interval the cron parser would silently
// change: it rounds one under a second up to 1s (0s and -1s included) and
// drops a fraction of a second, so the schedule would fire at another
// interval than the one it shows. Only new specs are checked: a stored one
// keeps firing as it always did.
func checkEvery(c string) error {
	v, ok := strings.CutPrefix(c, "@every ")
	if !ok {
		return nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err == nil && d >= time.Second && d%time.Second == 0 {
		return nil
	}
	return &FieldError{Field: "cron", Reason: fmt.Sprintf("%q: the interval must be a whole number of seconds, at least 1s (e.g. @every 90s)", c)}
}

// compileNewSpec checks a spec a caller sets: every field, the workflow,
// and that it has a slot to come.
func (e *Engine) compileNewSpec(ctx context.Context, tenantID string, spec ScheduleSpec) (*slotSpec, error) {
	sp, err := compileSpec(spec)
	if err != nil {
		return nil, err
	}
	if err := checkEvery(sp.spec.Cron); err != nil {
		return nil, err
	}
	if sp.next(e.clock()).IsZero() {
		if !sp.spec.EndAt.IsZero() && sp.spec.EndAt.Before(e.clock()) {
			return nil, &FieldError{Field: "end_at", Reason: "is in the past: the schedule would never fire"}
		}
		return nil, &FieldError{Field: "cron", Reason: fmt.Sprintf("%q matches no time to come", sp.spec.Cron)}
	}
	if err := e.checkWorkflow(ctx, tenantID, sp.spec.Workflow); err != nil {
		return nil, err
	}
	return sp, nil
}

// GetSchedule returns a schedule that is not deleted, or ErrNotFound.
func (e *Engine) GetSchedule(ctx context.Context, tenantID, id string) (*Schedule, error) {
	st, err := e.scheduleStore()
	if err != nil {
		return nil, err
	}
	s, err := st.GetSchedule(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	if s.State == ScheduleDeleted {
		return nil, fmt.Errorf("schedule %s is deleted: %w", id, ErrNotFound)
	}
	return s, nil
}

// ListSchedules returns one page of a tenant's schedules, by id.
func (e *Engine) ListSchedules(ctx context.Context, f ScheduleFilter) ([]Schedule, error) {
	st, err := e.scheduleStore()
	if err != nil {
		return nil, err
	}
	if f.Limit < 1 || f.Limit > MaxPage {
		return nil, &FieldError{Field: "limit", Reason: fmt.Sprintf("%d out of 1..%d", f.Limit, MaxPage)}
	}
	return st.ListSchedules(ctx, f)
}

// VersionError: an update named a version of a schedule that is not the
// stored one.
type VersionError struct {
	Want, Have int64
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("schedule version is %d, not %d: read it again", e.Have, e.Want)
}

func (e *VersionError) Unwrap() error { return ErrConflict }

// changeSchedule records one caller's change of a schedule under its
// lock; check, when set, refuses it for the stored schedule, writing
// nothing.
func (e *Engine) changeSchedule(ctx context.Context, by Caller, tenantID, id string, version int64, typ ScheduleEventType,
	d *ScheduleEventData, check func(s *Schedule) error) (*Schedule, error) {
	st, err := e.scheduleStore()
	if err != nil {
		return nil, err
	}
	k := schedKey{tenantID, id}
	unlock := e.sched.lock(k)
	defer unlock()
	s, err := e.GetSchedule(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	if version != 0 && version != s.Version {
		return nil, &VersionError{Want: version, Have: s.Version}
	}
	if check != nil {
		if err := check(s); err != nil {
			return nil, err
		}
	}
	ch, err := scheduleChange(s, by, e.clock(), typ, d)
	if err != nil {
		return nil, err
	}
	if err := st.WriteSchedule(ctx, ch); err != nil {
		return nil, err
	}
	e.sched.poke(k, time.Time{})
	return &ch.Schedule, nil
}

// UpdateSchedule replaces a schedule's spec; version, when not 0, must be
// the stored one. The new spec applies to slots after the update. Errors:
// *FieldError, ErrNotFound, *VersionError (ErrConflict).
func (e *Engine) UpdateSchedule(ctx context.Context, by Caller, tenantID, id string, version int64, spec ScheduleSpec) (*Schedule, error) {
	sp, err := e.compileNewSpec(ctx, tenantID, spec)
	if err != nil {
		return nil, err
	}
	return e.changeSchedule(ctx, by, tenantID, id, version, ScheduleUpdated, &ScheduleEventData{Spec: &sp.spec}, nil)
}

// PauseSchedule stops a schedule's slots from firing. Errors: ErrNotFound,
// *TransitionError when it is paused already.
func (e *Engine) PauseSchedule(ctx context.Context, by Caller, tenantID, id string) (*Schedule, error) {
	return e.changeSchedule(ctx, by, tenantID, id, 0, SchedulePausedEv, nil, func(s *Schedule) error {
		if s.State != ScheduleActive {
			return &TransitionError{Subject: "schedule", Event: EventType(SchedulePausedEv), From: string(s.State)}
		}
		return nil
	})
}

// UnpauseSchedule lets a paused schedule fire again, from the slots after
// now: the slots of the pause neither fire nor count as missed. Errors:
// ErrNotFound, *TransitionError when it is not paused.
func (e *Engine) UnpauseSchedule(ctx context.Context, by Caller, tenantID, id string) (*Schedule, error) {
	return e.changeSchedule(ctx, by, tenantID, id, 0, ScheduleUnpaused, nil, func(s *Schedule) error {
		if s.State != SchedulePaused {
			return &TransitionError{Subject: "schedule", Event: EventType(ScheduleUnpaused), From: string(s.State)}
		}
		return nil
	})
}

// DeleteSchedule deletes a schedule: no slot fires any more; its log stays.
// Errors: ErrNotFound.
func (e *Engine) DeleteSchedule(ctx context.Context, by Caller, tenantID, id string) error {
	_, err := e.changeSchedule(ctx, by, tenantID, id, 0, ScheduleDeletedEv, nil, nil)
	return err
}

// TriggerSchedule starts a run of a schedule now, whatever its state and
// overlap policy, recorded as schedule.triggered in the run's commit. token
// names the request: the same token returns the same run (replayed true);
// "" makes a new one. Errors: ErrNotFound, *FieldError.
func (e *Engine) TriggerSchedule(ctx context.Context, by Caller, tenantID, id, token string) (*Run, bool, error) {
	if _, err := e.scheduleStore(); err != nil {
		return nil, false, err
	}
	if token == "" {
		var b [12]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
	}
	k := schedKey{tenantID, id}
	unlock := e.sched.lock(k)
	defer unlock()
	s, err := e.GetSchedule(ctx, tenantID, id)
	if err != nil {
		return nil, false, err
	}
	sp, err := compileSpec(s.Spec)
	if err != nil {
		return nil, false, err
	}
	now := e.clock()
	key := "schedule:" + id + ":trigger:" + token
	origin := &Origin{Kind: OriginSchedule, ID: id, Slot: now, Ref: "trigger"}
	run, replayed, err := e.sched.start(ctx, s, sp, now, key, origin, by, func(runID string) (*ScheduleChange, error) {
		return scheduleChange(s, by, e.clock(), ScheduleTriggered, &ScheduleEventData{Slot: now, RunID: runID})
	})
	if err != nil {
		return nil, false, err
	}
	e.sched.poke(k, time.Time{})
	return run, replayed, nil
}

// BackfillSlot is one slot of a backfill and the run it has.
type BackfillSlot struct {
	Slot     time.Time
	RunID    string
	Replayed bool // the slot had fired before: RunID is that run
}

// BackfillSchedule fires every slot of a schedule in [from, to] that has
// not fired, at most MaxBackfillSlots, with the slot's own idempotency key:
// a slot fired before (on time or by another backfill) keeps its run. The
// overlap policy does not apply. to may not be in the future. Errors:
// *FieldError (nothing is written), ErrNotFound.
func (e *Engine) BackfillSchedule(ctx context.Context, by Caller, tenantID, id string, from, to time.Time) ([]BackfillSlot, error) {
	if _, err := e.scheduleStore(); err != nil {
		return nil, err
	}
	now := e.clock()
	switch {
	case from.IsZero():
		return nil, &FieldError{Field: "from", Reason: "is required"}
	case to.IsZero():
		return nil, &FieldError{Field: "to", Reason: "is required"}
	case to.Before(from):
		return nil, &FieldError{Field: "to", Reason: "is before from"}
	case to.After(now):
		return nil, &FieldError{Field: "to", Reason: "is in the future: future slots fire on time"}
	}
	s, err := e.GetSchedule(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	sp, err := compileSpec(s.Spec)
	if err != nil {
		return nil, err
	}
	var slots []time.Time
	for c := sp.next(from.Add(-time.Nanosecond)); !c.IsZero() && !c.After(to); c = sp.next(c) {
		if len(slots) == MaxBackfillSlots {
			return nil, &FieldError{Field: "to", Reason: fmt.Sprintf("the range holds more than %d slots: backfill it in parts", MaxBackfillSlots)}
		}
		slots = append(slots, c)
	}
	k := schedKey{tenantID, id}
	out := make([]BackfillSlot, 0, len(slots))
	var fired map[int64]string // read once, when a slot has no key
	for _, slot := range slots {
		bs, err := e.backfillSlot(ctx, k, slot, func() (map[int64]string, error) {
			if fired != nil {
				return fired, nil
			}
			f, ferr := e.firedSlots(ctx, tenantID, id, slots[0], slots[len(slots)-1])
			if ferr == nil {
				fired = f
			}
			return f, ferr
		})
		if err != nil {
			return out, err
		}
		out = append(out, bs)
	}
	_, err = e.changeSchedule(ctx, by, tenantID, id, 0, ScheduleBackfilled,
		&ScheduleEventData{From: from.UTC(), To: to.UTC(), Count: int64(len(out))}, nil)
	return out, err
}

// firedSlots returns the runs the schedule's log says fired its slots in
// [from, to], by slot (UnixNano). A slot's idempotency key says the same
// while its run is live; retention removes the key with the run, and the
// slot must not fire again.
func (e *Engine) firedSlots(ctx context.Context, tenantID, id string, from, to time.Time) (map[int64]string, error) {
	st, err := e.scheduleStore()
	if err != nil {
		return nil, err
	}
	out := map[int64]string{}
	for after := int64(0); ; {
		evs, err := st.ScheduleEvents(ctx, tenantID, id, after, ScheduleSlotFired, MaxPage)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			var d ScheduleEventData
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				return nil, fmt.Errorf("schedule %s event %d: %w", id, ev.Seq, err)
			}
			if !d.Slot.Before(from) && !d.Slot.After(to) && d.RunID != "" {
				out[d.Slot.UnixNano()] = d.RunID
			}
			after = ev.Seq
		}
		if len(evs) < MaxPage {
			return out, nil
		}
	}
}

// backfillSlot fires one slot of a backfill under the schedule's lock,
// unless it fired before: its key, or the schedule's log (fired), names
// its run.
func (e *Engine) backfillSlot(ctx context.Context, k schedKey, slot time.Time, fired func() (map[int64]string, error)) (BackfillSlot, error) {
	unlock := e.sched.lock(k)
	defer unlock()
	for try := 0; ; try++ {
		s, err := e.GetSchedule(ctx, k.tenant, k.id)
		if err != nil {
			return BackfillSlot{}, err
		}
		sp, err := compileSpec(s.Spec)
		if err != nil {
			return BackfillSlot{}, err
		}
		key := SlotKey(s.ID, slot)
		if runID, _, err := e.store.FindIdempotencyKey(ctx, k.tenant, key); err == nil {
			return BackfillSlot{Slot: slot, RunID: runID, Replayed: true}, nil
		} else if !errors.Is(err, ErrNotFound) {
			return BackfillSlot{}, err
		}
		done, err := fired()
		if err != nil {
			return BackfillSlot{}, err
		}
		if runID, ok := done[slot.UnixNano()]; ok { // its run was archived since
			return BackfillSlot{Slot: slot, RunID: runID, Replayed: true}, nil
		}
		err = e.sched.fire(ctx, s, sp, slot, fireBackfill)
		if errors.Is(err, ErrConflict) && try < 3 {
			continue
		}
		if err != nil {
			return BackfillSlot{}, err
		}
		runID, _, err := e.store.FindIdempotencyKey(ctx, k.tenant, key)
		if errors.Is(err, ErrNotFound) {
			return BackfillSlot{Slot: slot}, nil // recorded as failed: the schedule's log says why
		}
		return BackfillSlot{Slot: slot, RunID: runID}, err
	}
}

// FireTime is a slot and the time its run starts (the slot plus jitter).
type FireTime struct {
	Slot time.Time
	At   time.Time
}

// NextFireTimes returns a schedule's next n slots (1..MaxNextFireTimes).
// Errors: ErrNotFound, *FieldError.
func (e *Engine) NextFireTimes(ctx context.Context, tenantID, id string, n int) ([]FireTime, error) {
	if n < 1 || n > MaxNextFireTimes {
		return nil, &FieldError{Field: "next", Reason: fmt.Sprintf("%d out of 1..%d", n, MaxNextFireTimes)}
	}
	s, err := e.GetSchedule(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	sp, err := compileSpec(s.Spec)
	if err != nil {
		return nil, err
	}
	var out []FireTime
	for c := sp.next(s.Cursor); !c.IsZero() && len(out) < n; c = sp.next(c) {
		out = append(out, FireTime{Slot: c, At: sp.fireAt(s.ID, c)})
	}
	return out, nil
}

// ScheduleEvents returns up to limit events of a schedule's log after
// afterSeq, of type typ unless it is "": its audit, its fired, skipped and
// missed slots. Errors: ErrNotFound, *FieldError.
func (e *Engine) ScheduleEvents(ctx context.Context, tenantID, id string, afterSeq int64, typ ScheduleEventType, limit int) ([]ScheduleEvent, error) {
	st, err := e.scheduleStore()
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > MaxPage {
		return nil, &FieldError{Field: "limit", Reason: fmt.Sprintf("%d out of 1..%d", limit, MaxPage)}
	}
	if _, err := st.GetSchedule(ctx, tenantID, id); err != nil {
		return nil, err
	}
	return st.ScheduleEvents(ctx, tenantID, id, afterSeq, typ, limit)
}
