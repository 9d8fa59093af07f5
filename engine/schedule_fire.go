package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Firing a slot: the run and the schedule's event in one commit.

// fireKind says where a fired slot comes from.
type fireKind int

const (
	fireNext     fireKind = iota // the next slot: the cursor moves to it
	fireBuffered                 // the oldest buffered slot: it leaves the buffer
	fireBackfill                 // a slot of a backfill: the cursor stays
)

// SlotKey is the idempotency key of a schedule's slot: the same for the
// slot fired on time, after a crash, or by a backfill.
func SlotKey(scheduleID string, slot time.Time) string {
	return "schedule:" + scheduleID + ":" + FormatTime(slot)
}

// keyHash is the request hash stored with a schedule's idempotency key:
// the key says all there is to the request.
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// fire starts the run of a slot and records the slot as fired in the same
// commit (StartRequest.scheduleFunc). A slot whose key started a run
// already (a backfill fired it) is recorded as fired by that run. A slot
// that cannot start (its definition is gone, its input is refused) is
// recorded as failed; any other error is returned, nothing written.
func (sc *scheduler) fire(ctx context.Context, s *Schedule, sp *slotSpec, slot time.Time, kind fireKind) error {
	key := SlotKey(s.ID, slot)
	d := &ScheduleEventData{Slot: slot, Backfill: kind == fireBackfill, Buffered: kind == fireBuffered}
	origin := &Origin{Kind: OriginSchedule, ID: s.ID, Slot: slot}
	run, replayed, err := sc.start(ctx, s, sp, slot, key, origin, Caller{}, func(runID string) (*ScheduleChange, error) {
		d.RunID = runID
		return scheduleChange(s, Caller{}, sc.e.clock(), ScheduleSlotFired, d)
	})
	typ := ScheduleSlotFired
	switch {
	case err == nil && !replayed:
		sc.counted(typ, 1)
		return nil
	case err == nil:
		d.RunID, d.Replayed = run.ID, true
	case slotRefused(err):
		d.RunID, d.Error, typ = "", err.Error(), ScheduleSlotFailed
	default:
		return err
	}
	return sc.record(ctx, s, sc.e.clock(), typ, d, 1)
}

// record writes one event of the scheduler's own about n slots (fired,
// skipped, buffered, missed, failed) and counts them.
func (sc *scheduler) record(ctx context.Context, s *Schedule, now time.Time, typ ScheduleEventType, d *ScheduleEventData, n int64) error {
	ch, err := scheduleChange(s, Caller{}, now, typ, d)
	if err != nil {
		return err
	}
	if err := sc.store.WriteSchedule(ctx, ch); err != nil {
		return err
	}
	sc.counted(typ, n)
	return nil
}

// slotOutcomes names the outcome of a slot each event records, for
// orchestrator_schedule_slots_total.
var slotOutcomes = map[ScheduleEventType]string{ScheduleSlotFired: "fired", ScheduleSlotSkipped: "skipped",
	ScheduleSlotBuffered: "buffered", ScheduleSlotsMissed: "missed", ScheduleSlotFailed: "failed"}

// counted adds n slots of the outcome typ records to the engine's metrics.
func (sc *scheduler) counted(typ ScheduleEventType, n int64) {
	if o, ok := slotOutcomes[typ]; ok {
		sc.e.m.set.GetOrCreateCounter(`orchestrator_schedule_slots_total{outcome="` + o + `"}`).AddInt64(n)
	}
}

// start starts a run of a schedule's workflow with an idempotency key;
// change makes the schedule's change its commit writes too.
func (sc *scheduler) start(ctx context.Context, s *Schedule, sp *slotSpec, slot time.Time, key string, origin *Origin,
	by Caller, change func(runID string) (*ScheduleChange, error)) (*Run, bool, error) {
	if sc.e.tenantFunc != nil {
		// A suspended tenant's calls are refused: so are its schedules'
		// starts, recorded as failed slots.
		t, err := sc.e.tenantFunc(ctx, s.TenantID)
		switch {
		case errors.Is(err, ErrTenantNotFound):
			return nil, false, fmt.Errorf("tenant %s: %w", s.TenantID, ErrNotFound)
		case err != nil:
			return nil, false, err
		case t.State == TenantSuspended:
			return nil, false, fmt.Errorf("tenant %s: %w", s.TenantID, ErrTenantSuspended)
		}
	}
	name, version, err := sc.e.resolveWorkflowRef(ctx, s.TenantID, sp.spec.Workflow)
	if err != nil {
		return nil, false, err
	}
	input, err := renderScheduleInput(sp.spec.Input, s.ID, slot)
	if err != nil {
		return nil, false, &FieldError{Field: "input", Reason: err.Error()}
	}
	return sc.e.StartRunIdempotent(ctx, StartRequest{TenantID: s.TenantID, Workflow: name, Version: version,
		Input: input, By: by, IdempotencyKey: key, RequestHash: keyHash(key), Origin: origin,
		scheduleFunc: change})
}

// slotRefused reports an error that starting the same slot again cannot
// mend: it is recorded as the slot's failure.
func slotRefused(err error) bool {
	var fe *FieldError
	var ve *definition.ValidationError
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrIdempotencyMismatch) ||
		errors.Is(err, ErrTenantSuspended) ||
		errors.As(err, &fe) || errors.As(err, &ve)
}

// scheduleChange makes the change of one event of a schedule: the event,
// chained to prev, and the row it produces (applyScheduleEvent, the same
// function that replays the log).
func scheduleChange(prev *Schedule, by Caller, now time.Time, typ ScheduleEventType, d *ScheduleEventData) (*ScheduleChange, error) {
	if d == nil {
		d = &ScheduleEventData{}
	}
	ev := ScheduleEvent{TenantID: prev.TenantID, ScheduleID: prev.ID, Seq: prev.Seq + 1, Type: typ,
		Actor: by.actor(), OnBehalf: by.OnBehalf, At: now}
	if by.Policy != nil {
		d.Policy = by.Policy
	}
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	if string(data) != "{}" {
		ev.Data = data
	}
	ev.Hash = ev.ComputeHash(prev.LastHash)
	next, err := applyScheduleEvent(prev, &ev, d)
	if err != nil {
		return nil, err
	}
	return &ScheduleChange{Schedule: *next, Insert: prev.Seq == 0, PrevSeq: prev.Seq, Events: []ScheduleEvent{ev}}, nil
}
