package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// scheduleStore is the store's ScheduleStore; a store without one fails.
func scheduleStore(t *testing.T, s engine.Store) engine.ScheduleStore {
	t.Helper()
	ss, ok := s.(engine.ScheduleStore)
	if !ok {
		t.Fatalf("%T does not implement engine.ScheduleStore", s)
	}
	return ss
}

// scheduleAt makes the change that moves prev (nil: none) to a schedule in
// state st with one event of type typ, as the engine would.
func scheduleAt(tenant, id string, prev *engine.Schedule, st engine.ScheduleState, typ engine.ScheduleEventType) *engine.ScheduleChange {
	now := micro(time.Now())
	next := engine.Schedule{TenantID: tenant, ID: id, State: st, Version: 1, Cursor: now, CreatedAt: now,
		Spec: engine.ScheduleSpec{Cron: "@every 1s", TimeZone: "UTC", Workflow: "wf", Overlap: engine.OverlapSkip,
			CatchupWindow: time.Minute}}
	var seq int64
	hash := ""
	if prev != nil {
		next = *prev
		next.State = st
		seq, hash = prev.Seq, prev.LastHash
		if st != prev.State {
			next.Version++ // a change of state by a caller, as the engine counts it
		}
	}
	ev := engine.ScheduleEvent{TenantID: tenant, ScheduleID: id, Seq: seq + 1, Type: typ, Actor: "tester", At: now}
	if typ == engine.ScheduleCreated {
		ev.Data, _ = json.Marshal(engine.ScheduleEventData{Spec: &next.Spec})
	}
	ev.Hash = ev.ComputeHash(hash)
	next.Seq, next.LastHash, next.UpdatedAt = ev.Seq, ev.Hash, now
	return &engine.ScheduleChange{Schedule: next, Insert: prev == nil, PrevSeq: seq, Events: []engine.ScheduleEvent{ev}}
}

func testSchedules(t *testing.T, open func(t *testing.T) engine.Store) {
	t.Run("a schedule is stored, read back and changed by compare-and-set", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		ss := scheduleStore(t, s)
		ch := scheduleAt("default", "s1", nil, engine.ScheduleActive, engine.ScheduleCreated)
		is.NoErr(ss.WriteSchedule(t.Context(), ch)) // insert
		got, err := ss.GetSchedule(t.Context(), "default", "s1")
		is.NoErr(err)
		is.Equal(*got, ch.Schedule)                                                                                                                            // read back as written
		is.True(errors.Is(ss.WriteSchedule(t.Context(), scheduleAt("default", "s1", nil, engine.ScheduleActive, engine.ScheduleCreated)), engine.ErrConflict)) // the id is taken
		paused := scheduleAt("default", "s1", got, engine.SchedulePaused, engine.SchedulePausedEv)
		is.NoErr(ss.WriteSchedule(t.Context(), paused)) // update after seq 1
		stale := scheduleAt("default", "s1", got, engine.ScheduleActive, engine.ScheduleUnpaused)
		is.True(errors.Is(ss.WriteSchedule(t.Context(), stale), engine.ErrConflict)) // after seq 1 again: refused
		got, err = ss.GetSchedule(t.Context(), "default", "s1")
		is.NoErr(err)
		is.Equal(got.State, engine.SchedulePaused) // the refused change wrote nothing
		evs, err := ss.ScheduleEvents(t.Context(), "default", "s1", 0, "", 0)
		is.NoErr(err)
		is.Equal(len(evs), 2)
		is.NoErr(engine.VerifyScheduleLog(got, evs)) // the chain holds
		only, err := ss.ScheduleEvents(t.Context(), "default", "s1", 0, engine.SchedulePausedEv, 10)
		is.NoErr(err)
		is.Equal(len(only), 1) // filtered by type
		ghost := scheduleAt("default", "ghost", got, engine.ScheduleActive, engine.ScheduleUnpaused)
		ghost.Schedule.ID, ghost.Events[0].ScheduleID = "ghost", "ghost"
		is.True(errors.Is(ss.WriteSchedule(t.Context(), ghost), engine.ErrNotFound)) // an update of no schedule
		_, err = ss.GetSchedule(t.Context(), "other", "s1")
		is.True(errors.Is(err, engine.ErrNotFound)) // another tenant's is not found
	})

	t.Run("lists skip deleted schedules and active ones span tenants", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ss := scheduleStore(t, open(t))
		for _, k := range [][2]string{{"a", "s1"}, {"a", "s2"}, {"a", "s3"}, {"b", "s1"}} {
			is.NoErr(ss.WriteSchedule(t.Context(), scheduleAt(k[0], k[1], nil, engine.ScheduleActive, engine.ScheduleCreated)))
		}
		s2, err := ss.GetSchedule(t.Context(), "a", "s2")
		is.NoErr(err)
		is.NoErr(ss.WriteSchedule(t.Context(), scheduleAt("a", "s2", s2, engine.ScheduleDeleted, engine.ScheduleDeletedEv)))
		page, err := ss.ListSchedules(t.Context(), engine.ScheduleFilter{TenantID: "a", Limit: 1})
		is.NoErr(err)
		is.Equal(len(page), 1)
		is.Equal(page[0].ID, "s1")
		page, err = ss.ListSchedules(t.Context(), engine.ScheduleFilter{TenantID: "a", After: "s1", Limit: 10})
		is.NoErr(err)
		is.Equal(len(page), 1)
		is.Equal(page[0].ID, "s3") // s2 is deleted
		var active []string
		is.NoErr(ss.EachSchedule(t.Context(), true, func(tenant, id string) error {
			active = append(active, tenant+"/"+id)
			return nil
		}))
		is.Equal(active, []string{"a/s1", "a/s3", "b/s1"}) // active ones
		var all []string
		is.NoErr(ss.EachSchedule(t.Context(), false, func(tenant, id string) error {
			all = append(all, tenant+"/"+id)
			return nil
		}))
		is.Equal(all, []string{"a/s1", "a/s2", "a/s3", "b/s1"}) // and every one
	})

	t.Run("a run commits with its schedule's change or not at all", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		ss := scheduleStore(t, s)
		plan := define(t, s, "default", wfJSON)
		is.NoErr(ss.WriteSchedule(t.Context(), scheduleAt("default", "s1", nil, engine.ScheduleActive, engine.ScheduleCreated)))
		sc, err := ss.GetSchedule(t.Context(), "default", "s1")
		is.NoErr(err)
		fired := scheduleAt("default", "s1", sc, engine.ScheduleActive, engine.ScheduleSlotFired)
		fired.Schedule.LastRunID, fired.Schedule.Fired = "r1", 1
		ch := newHistory(t, plan, "default", "r1").next(evCreated, evStarted)
		ch.IdempotencyKey, ch.RequestHash, ch.Schedule = "schedule:s1:slot", "h", fired
		is.NoErr(commit(t, s, ch)) // the run and the slot, together
		sc, err = ss.GetSchedule(t.Context(), "default", "s1")
		is.NoErr(err)
		is.Equal(sc.LastRunID, "r1") // the slot recorded
		is.Equal(sc.Seq, int64(2))

		// A second run whose schedule change is stale: neither is written.
		ch2 := newHistory(t, plan, "default", "r2").next(evCreated, evStarted)
		ch2.IdempotencyKey, ch2.RequestHash, ch2.Schedule = "schedule:s1:slot2", "h", fired
		is.True(errors.Is(commit(t, s, ch2), engine.ErrConflict)) // refused
		_, _, err = s.LoadRun(t.Context(), "default", "r2")
		is.True(errors.Is(err, engine.ErrNotFound)) // no run
		_, _, err = s.FindIdempotencyKey(t.Context(), "default", "schedule:s1:slot2")
		is.True(errors.Is(err, engine.ErrNotFound)) // no key
		again, err := ss.GetSchedule(t.Context(), "default", "s1")
		is.NoErr(err)
		is.Equal(*again, *sc) // the schedule unchanged
	})
}
