package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// schedEnv is an engine without a scheduler loop, on a real store, whose
// clock the test moves; wf is a definition of one noop task, slow one of
// an external task that keeps its run active until cancelled.
type schedEnv struct {
	e       *engine.Engine
	db      *store.DB
	clock   *clock
	metrics *metrics.Set
}

func newSchedEnv(t *testing.T, start time.Time) *schedEnv {
	t.Helper()
	db := openTestStore(t)
	c := &clock{t: start}
	set := metrics.NewSet()
	e := startEngineWith(t, db, engine.Config{NoScheduleLoop: true, ExternalTypes: true, NowFunc: c.Now, Metrics: set}, nil)
	for _, def := range []string{`{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`,
		`{"name":"slow","tasks":[{"id":"a","type":"ext"}]}`} {
		if _, _, err := e.RegisterDefinition(t.Context(), "default", []byte(def)); err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	return &schedEnv{e: e, db: db, clock: c, metrics: set}
}

// tick moves the clock by d and decides every schedule.
func (env *schedEnv) tick(t *testing.T, d time.Duration) {
	t.Helper()
	env.clock.Add(d)
	if err := env.e.RunSchedules(t.Context()); err != nil {
		t.Fatalf("run schedules: %v", err)
	}
}

// runs returns the runs a schedule started, by slot.
func (env *schedEnv) runs(t *testing.T, id string) []engine.Run {
	t.Helper()
	runs, _, err := env.e.ListRuns(t.Context(), engine.RunFilter{TenantID: "default", OriginKind: engine.OriginSchedule,
		OriginID: id, Limit: engine.MaxPage})
	if err != nil {
		t.Fatalf("list runs: %v", err)
	}
	slices.SortFunc(runs, func(a, b engine.Run) int { return a.Origin.Slot.Compare(b.Origin.Slot) })
	return runs
}

func (env *schedEnv) get(t *testing.T, id string) *engine.Schedule {
	t.Helper()
	s, err := env.e.GetSchedule(t.Context(), "default", id)
	if err != nil {
		t.Fatalf("get schedule: %v", err)
	}
	return s
}

// verify checks the schedule's log chain against its row.
func (env *schedEnv) verify(t *testing.T, id string) []engine.ScheduleEvent {
	t.Helper()
	s, err := env.db.GetSchedule(t.Context(), "default", id)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := env.db.ScheduleEvents(t.Context(), "default", id, 0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.VerifyScheduleLog(s, evs); err != nil {
		t.Fatal(err)
	}
	return evs
}

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func TestSchedule_FiresEachSlotOnceWithItsKeyAndOrigin(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	_, err := env.e.CreateSchedule(t.Context(), engine.By("tester"), "default", "s1", engine.ScheduleSpec{
		Cron: "@every 1s", Workflow: "wf", Overlap: engine.OverlapAllowAll, Input: json.RawMessage(`{"at":"${schedule.time}","id":"${schedule.id}","n":1}`)})
	is.NoErr(err) // create
	for range 3 {
		env.tick(t, time.Second)
	}
	env.tick(t, 0) // deciding again fires nothing more
	runs := env.runs(t, "s1")
	is.Equal(len(runs), 3) // one run per slot
	for i, r := range runs {
		slot := t0.Add(time.Duration(i+1) * time.Second)
		is.True(r.Origin.Slot.Equal(slot)) // the run carries its slot
		full, _, err := env.e.GetRun(t.Context(), "default", r.ID)
		is.NoErr(err)
		is.Equal(string(full.Input), `{"at":"`+slot.Format(time.RFC3339Nano)+`","id":"s1","n":1}`) // rendered input
		runID, _, err := env.db.FindIdempotencyKey(t.Context(), "default", engine.SlotKey("s1", slot))
		is.NoErr(err)
		is.Equal(runID, r.ID) // started under the slot's key
	}
	s := env.get(t, "s1")
	is.Equal(s.Fired, int64(3))
	evs := env.verify(t, "s1")
	is.Equal(evs[0].Type, engine.ScheduleCreated)
	is.Equal(evs[0].Actor, "tester") // the change records its caller
}

func TestSchedule_CatchupWindowFiresRecentSlotsAndRecordsOlderAsMissed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "s1", engine.ScheduleSpec{
		Cron: "@every 1s", Workflow: "wf", Overlap: engine.OverlapAllowAll, CatchupWindow: 5 * time.Second})
	is.NoErr(err)
	env.tick(t, 20*time.Second) // downtime: 20 slots due at once
	runs := env.runs(t, "s1")
	is.Equal(len(runs), 6) // slots 15..20 are within 5 s of now
	is.True(runs[0].Origin.Slot.Equal(t0.Add(15 * time.Second)))
	s := env.get(t, "s1")
	is.Equal(s.Missed, int64(14)) // slots 1..14 are missed
	missed, err := env.e.ScheduleEvents(t.Context(), "default", "s1", 0, engine.ScheduleSlotsMissed, 10)
	is.NoErr(err)
	is.Equal(len(missed), 1) // one event for the range
	var d engine.ScheduleEventData
	is.NoErr(json.Unmarshal(missed[0].Data, &d))
	is.True(d.First.Equal(t0.Add(time.Second)) && d.Last.Equal(t0.Add(14*time.Second)) && d.Count == 14)
	env.verify(t, "s1")
	is.Equal(env.metrics.GetOrCreateCounter(`orchestrator_schedule_slots_total{outcome="missed"}`).Get(), uint64(14)) // counted
	is.Equal(env.metrics.GetOrCreateCounter(`orchestrator_schedule_slots_total{outcome="fired"}`).Get(), uint64(6))
}

func TestSchedule_OverlapPolicies(t *testing.T) {
	t.Parallel()
	create := func(t *testing.T, p engine.OverlapPolicy) *schedEnv {
		env := newSchedEnv(t, t0)
		if _, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "s", engine.ScheduleSpec{
			Cron: "@every 1s", Workflow: "slow", Overlap: p}); err != nil {
			t.Fatal(err)
		}
		env.tick(t, time.Second) // slot 1 fires: its run stays active
		return env
	}
	cancel := func(t *testing.T, env *schedEnv, id string) {
		if _, err := env.e.Cancel(t.Context(), "default", id, engine.Caller{}); err != nil {
			t.Fatal(err)
		}
		waitRun(t, env.db, id, engine.RunCancelled)
	}
	t.Run("skip skips slots while the previous run is active", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		env := create(t, engine.OverlapSkip)
		env.tick(t, time.Second)
		env.tick(t, time.Second)
		is.Equal(len(env.runs(t, "s")), 1) // slots 2 and 3 skipped
		is.Equal(env.get(t, "s").Skipped, int64(2))
		cancel(t, env, env.runs(t, "s")[0].ID)
		env.tick(t, time.Second)
		runs := env.runs(t, "s")
		is.Equal(len(runs), 2)                                      // slot 4 fires
		is.True(runs[1].Origin.Slot.Equal(t0.Add(4 * time.Second))) // the next slot, not a skipped one
	})
	t.Run("buffer_one keeps one slot until the previous run ends", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		env := create(t, engine.OverlapBufferOne)
		env.tick(t, time.Second)
		env.tick(t, time.Second)
		s := env.get(t, "s")
		is.Equal(len(s.Buffered), 1)  // slot 2 buffered
		is.Equal(s.Skipped, int64(1)) // slot 3 skipped
		cancel(t, env, env.runs(t, "s")[0].ID)
		env.tick(t, 0)
		runs := env.runs(t, "s")
		is.Equal(len(runs), 2)
		is.True(runs[1].Origin.Slot.Equal(t0.Add(2 * time.Second))) // the buffered slot fired
		is.Equal(len(env.get(t, "s").Buffered), 0)
		env.verify(t, "s")
	})
	t.Run("buffer_all fires every buffered slot in order", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		env := create(t, engine.OverlapBufferAll)
		env.tick(t, time.Second)
		env.tick(t, time.Second)
		is.Equal(len(env.get(t, "s").Buffered), 2) // slots 2 and 3
		for want := 2; want <= 3; want++ {
			runs := env.runs(t, "s")
			cancel(t, env, runs[len(runs)-1].ID)
			env.tick(t, 0)
			runs = env.runs(t, "s")
			is.Equal(len(runs), want)
			is.True(runs[want-1].Origin.Slot.Equal(t0.Add(time.Duration(want) * time.Second))) // in slot order
		}
		is.Equal(env.get(t, "s").Skipped, int64(0))
		env.verify(t, "s") // the log folds to the row, buffer included
	})
	t.Run("cancel_other cancels the previous run and fires", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		env := create(t, engine.OverlapCancelOther)
		first := env.runs(t, "s")[0].ID
		env.tick(t, time.Second)
		runs := env.runs(t, "s")
		is.Equal(len(runs), 2) // slot 2 fired
		waitRun(t, env.db, first, engine.RunCancelled)
		env.verify(t, "s")
	})
	t.Run("allow_all fires whatever runs", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		env := create(t, engine.OverlapAllowAll)
		env.tick(t, time.Second)
		env.tick(t, time.Second)
		is.Equal(len(env.runs(t, "s")), 3)
	})
}

func TestSchedule_JitterIsDeterministicAndInRange(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	spec := engine.ScheduleSpec{Cron: "@every 1m", Workflow: "wf", Jitter: 30 * time.Second}
	for _, tenant := range []string{"default", "other"} {
		if tenant == "other" {
			_, _, err := env.e.RegisterDefinition(t.Context(), "other", []byte(`{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`))
			is.NoErr(err)
		}
		_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, tenant, "j", spec)
		is.NoErr(err)
	}
	a, err := env.e.NextFireTimes(t.Context(), "default", "j", 20)
	is.NoErr(err)
	b, err := env.e.NextFireTimes(t.Context(), "other", "j", 20)
	is.NoErr(err)
	distinct := map[time.Duration]bool{}
	for i := range a {
		is.True(a[i].At.Equal(b[i].At)) // same id and slot: same jitter, wherever computed
		d := a[i].At.Sub(a[i].Slot)
		is.True(d >= 0 && d < 30*time.Second) // within the jitter
		distinct[d] = true
	}
	is.True(len(distinct) > 10) // the jitter differs between slots
	// The slot fires at its jittered time, not before.
	first := a[0]
	env.clock.t = first.At.Add(-time.Microsecond)
	env.tick(t, 0)
	is.Equal(len(env.runs(t, "j")), 0) // not yet
	env.clock.t = first.At
	env.tick(t, 0)
	is.Equal(len(env.runs(t, "j")), 1) // at its fire time
}

func TestSchedule_DSTFiresEachWallClockSlotAtMostOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ny, err := time.LoadLocation("America/New_York")
	is.NoErr(err)
	// The night of 2026-11-01, 01:00-02:00 happens twice in New York.
	env := newSchedEnv(t, time.Date(2026, 10, 31, 12, 0, 0, 0, ny).UTC())
	_, err = env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "daily", engine.ScheduleSpec{
		Cron: "30 1 * * *", TimeZone: "America/New_York", Workflow: "wf", Overlap: engine.OverlapAllowAll})
	is.NoErr(err)
	_, err = env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "half", engine.ScheduleSpec{
		Cron: "*/30 * * * *", TimeZone: "America/New_York", Workflow: "wf", Overlap: engine.OverlapAllowAll,
		StartAt: time.Date(2026, 11, 1, 0, 45, 0, 0, ny)})
	is.NoErr(err)
	next, err := env.e.NextFireTimes(t.Context(), "default", "daily", 2)
	is.NoErr(err)
	is.Equal(next[0].Slot.In(ny).Format("2006-01-02 15:04 MST"), "2026-11-01 01:30 EDT") // once on the night...
	is.Equal(next[1].Slot.In(ny).Format("2006-01-02 15:04 MST"), "2026-11-02 01:30 EST") // ...then the next day
	half, err := env.e.NextFireTimes(t.Context(), "default", "half", 4)
	is.NoErr(err)
	var got []string
	for _, f := range half {
		got = append(got, f.Slot.In(ny).Format("15:04 MST"))
	}
	is.Equal(got, []string{"01:00 EDT", "01:30 EDT", "02:00 EST", "02:30 EST"}) // the repeated hour is not taken again
	// Fire through the night, a minute at a time, as the loop would.
	for env.clock.Now().Before(time.Date(2026, 11, 1, 3, 0, 0, 0, ny)) {
		env.tick(t, 10*time.Minute)
	}
	is.Equal(len(env.runs(t, "daily")), 1) // 01:30 fired once
	is.Equal(len(env.runs(t, "half")), 5)  // 01:00 EDT, 01:30 EDT, 02:00, 02:30, 03:00 EST
}

func TestSchedule_BadInputIsRefusedNamingTheFieldAndWritesNothing(t *testing.T) {
	t.Parallel()
	env := newSchedEnv(t, t0)
	good := engine.ScheduleSpec{Cron: "*/5 * * * *", Workflow: "wf"}
	cases := []struct {
		name, field string
		mutate      func(s *engine.ScheduleSpec)
	}{
		{"invalid cron", "cron", func(s *engine.ScheduleSpec) { s.Cron = "61 * * * *" }},
		{"empty cron", "cron", func(s *engine.ScheduleSpec) { s.Cron = "" }},
		{"a zone in the cron", "cron", func(s *engine.ScheduleSpec) { s.Cron = "CRON_TZ=UTC * * * * *" }},
		{"unknown zone", "time_zone", func(s *engine.ScheduleSpec) { s.TimeZone = "Mars/Olympus" }},
		{"unknown overlap policy", "overlap", func(s *engine.ScheduleSpec) { s.Overlap = "sometimes" }},
		{"end before start", "end_at", func(s *engine.ScheduleSpec) { s.StartAt, s.EndAt = t0, t0.Add(-time.Hour) }},
		{"start far in the future", "start_at", func(s *engine.ScheduleSpec) { s.StartAt = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"a date that never comes", "cron", func(s *engine.ScheduleSpec) { s.Cron = "0 0 30 2 *" }},
		{"an end in the past", "end_at", func(s *engine.ScheduleSpec) { s.EndAt = t0.Add(-time.Hour) }},
		{"negative jitter", "jitter", func(s *engine.ScheduleSpec) { s.Jitter = -time.Second }},
		{"jitter too large", "jitter", func(s *engine.ScheduleSpec) { s.Jitter = 25 * time.Hour }},
		{"catch-up window too large", "catchup_window", func(s *engine.ScheduleSpec) { s.CatchupWindow = 30 * 24 * time.Hour }},
		{"unknown workflow", "workflow", func(s *engine.ScheduleSpec) { s.Workflow = "nope" }},
		{"unknown version", "workflow", func(s *engine.ScheduleSpec) { s.Workflow = "wf@7" }},
		{"malformed workflow", "workflow", func(s *engine.ScheduleSpec) { s.Workflow = "wf@" }},
		{"input not JSON", "input", func(s *engine.ScheduleSpec) { s.Input = json.RawMessage(`{`) }},
		{"unknown schedule field", "input", func(s *engine.ScheduleSpec) { s.Input = json.RawMessage(`{"x":"${schedule.name}"}`) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			spec := good
			c.mutate(&spec)
			_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "bad", spec)
			var fe *engine.FieldError
			is.True(errors.As(err, &fe)) // a field error
			is.Equal(fe.Field, c.field)  // naming the field
		})
	}
	is := is.New(t)
	_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "bad id!", good)
	var fe *engine.FieldError
	is.True(errors.As(err, &fe) && fe.Field == "id")
	list, err := env.e.ListSchedules(t.Context(), engine.ScheduleFilter{TenantID: "default", Limit: 10})
	is.NoErr(err)
	is.Equal(len(list), 0) // nothing written
	_, err = env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "ok", good)
	is.NoErr(err)
	_, err = env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "ok", good)
	is.True(errors.Is(err, engine.ErrConflict)) // the id is taken
	_, err = env.e.UpdateSchedule(t.Context(), engine.Caller{}, "default", "ok", 9, good)
	var ve *engine.VersionError
	is.True(errors.As(err, &ve) && ve.Have == 1) // a stale version is refused
}

func TestSchedule_PauseStopsSlotsAndUnpauseResumesFromNow(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "p", engine.ScheduleSpec{
		Cron: "@every 1s", Workflow: "wf", Overlap: engine.OverlapAllowAll})
	is.NoErr(err)
	env.tick(t, time.Second)
	_, err = env.e.PauseSchedule(t.Context(), engine.By("op"), "default", "p")
	is.NoErr(err)
	_, err = env.e.PauseSchedule(t.Context(), engine.By("op"), "default", "p")
	is.True(errors.Is(err, engine.ErrInvalidTransition)) // paused already
	env.tick(t, 10*time.Second)
	is.Equal(len(env.runs(t, "p")), 1) // nothing fires while paused
	s, err := env.e.UnpauseSchedule(t.Context(), engine.By("op"), "default", "p")
	is.NoErr(err)
	is.Equal(s.Version, int64(3))
	env.tick(t, time.Second)
	runs := env.runs(t, "p")
	is.Equal(len(runs), 2)                                       // the slot after the unpause fires...
	is.True(runs[1].Origin.Slot.Equal(t0.Add(12 * time.Second))) // ...not those of the pause
	is.Equal(env.get(t, "p").Missed, int64(0))                   // which are not missed either
	evs := env.verify(t, "p")
	is.Equal(evs[2].Type, engine.SchedulePausedEv)
	is.Equal(evs[2].Actor, "op")
	is.NoErr(env.e.DeleteSchedule(t.Context(), engine.By("op"), "default", "p"))
	env.tick(t, 5*time.Second)
	is.Equal(len(env.runs(t, "p")), 2) // a deleted schedule fires nothing
	_, err = env.e.GetSchedule(t.Context(), "default", "p")
	is.True(errors.Is(err, engine.ErrNotFound))
}

func TestSchedule_TriggerNowStartsOneRunPerToken(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "t", engine.ScheduleSpec{Cron: "@daily", Workflow: "wf"})
	is.NoErr(err)
	r1, replayed, err := env.e.TriggerSchedule(t.Context(), engine.By("op"), "default", "t", "tok")
	is.NoErr(err)
	is.True(!replayed)
	is.Equal(r1.Origin.Ref, "trigger")
	r2, replayed, err := env.e.TriggerSchedule(t.Context(), engine.By("op"), "default", "t", "tok")
	is.NoErr(err)
	is.True(replayed)      // the same token...
	is.Equal(r2.ID, r1.ID) // ...the same run
	r3, _, err := env.e.TriggerSchedule(t.Context(), engine.By("op"), "default", "t", "")
	is.NoErr(err)
	is.True(r3.ID != r1.ID) // a new request, a new run
	is.Equal(len(env.runs(t, "t")), 2)
	is.Equal(env.get(t, "t").LastRunID, r3.ID)
}

func TestSchedule_BackfillFiresEachSlotOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "b", engine.ScheduleSpec{
		Cron: "*/10 * * * * *", Workflow: "wf", Overlap: engine.OverlapAllowAll})
	is.NoErr(err)
	env.tick(t, 10*time.Second) // 12:00:10 fires on time
	from, to := t0.Add(-time.Minute), t0.Add(10*time.Second)
	out, err := env.e.BackfillSchedule(t.Context(), engine.By("op"), "default", "b", from, to)
	is.NoErr(err)
	is.Equal(len(out), 8)    // 11:59:00 .. 12:00:10
	is.True(out[7].Replayed) // 12:00:10 had fired: it keeps its run
	again, err := env.e.BackfillSchedule(t.Context(), engine.By("op"), "default", "b", from, to)
	is.NoErr(err)
	for i := range again {
		is.True(again[i].Replayed)             // every slot fired before...
		is.Equal(again[i].RunID, out[i].RunID) // ...keeps its run
	}
	is.Equal(len(env.runs(t, "b")), 8)
	_, err = env.e.BackfillSchedule(t.Context(), engine.By("op"), "default", "b", t0.Add(-24*time.Hour), t0)
	var fe *engine.FieldError
	is.True(errors.As(err, &fe) && fe.Field == "to") // more than 1000 slots
	_, err = env.e.BackfillSchedule(t.Context(), engine.By("op"), "default", "b", t0, t0.Add(time.Hour))
	is.True(errors.As(err, &fe) && fe.Field == "to") // the future fires on time
	env.tick(t, 10*time.Second)
	is.Equal(len(env.runs(t, "b")), 9) // the regular slots go on
	env.verify(t, "b")
}

func TestSchedule_ReplayedSlotIsRecordedAsFiredByItsRun(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "r", engine.ScheduleSpec{
		Cron: "@every 1s", Workflow: "wf", Overlap: engine.OverlapAllowAll})
	is.NoErr(err)
	// A run started under slot 1's key before the loop decided it (as a
	// backfill racing the loop would).
	key := engine.SlotKey("r", t0.Add(time.Second))
	_, err = env.e.StartRun(context.Background(), engine.StartRequest{TenantID: "default", Workflow: "wf",
		IdempotencyKey: key, RequestHash: engine.KeyHashOf(key)})
	is.NoErr(err)
	env.tick(t, time.Second)
	s := env.get(t, "r")
	is.True(s.Cursor.Equal(t0.Add(time.Second))) // the slot is decided...
	is.Equal(s.Fired, int64(1))                  // ...as fired, once
}

func TestScheduler_LoopFiresOnTimeAndStopsWithTheEngine(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e, err := engine.New(engine.Config{Store: db})
	is.NoErr(err)
	is.NoErr(e.Start(t.Context()))
	_, _, err = e.RegisterDefinition(t.Context(), "default", []byte(`{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`))
	is.NoErr(err)
	_, err = e.CreateSchedule(t.Context(), engine.Caller{}, "default", "loop", engine.ScheduleSpec{Cron: "@every 1s", Workflow: "wf",
		Overlap: engine.OverlapAllowAll})
	is.NoErr(err)
	env := &schedEnv{e: e, db: db}
	waitFor(t, "two slots fired by the loop", func() bool { return len(env.runs(t, "loop")) >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	is.NoErr(e.Stop(ctx)) // the loop and its goroutines end
	is.NoErr(e.Stop(ctx)) // twice is fine
	n := len(env.runs(t, "loop"))
	s, err := db.GetSchedule(t.Context(), "default", "loop")
	is.NoErr(err)
	is.Equal(s.Fired, int64(n)) // every run recorded as its slot's
}

func TestScheduler_BufferedSlotFiresWhenThePreviousRunEnds(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true}, nil)
	_, _, err := e.RegisterDefinition(t.Context(), "default", []byte(`{"name":"slow","tasks":[{"id":"a","type":"ext"}]}`))
	is.NoErr(err)
	_, err = e.CreateSchedule(t.Context(), engine.Caller{}, "default", "buf", engine.ScheduleSpec{
		Cron: "@every 1s", Workflow: "slow", Overlap: engine.OverlapBufferOne})
	is.NoErr(err)
	env := &schedEnv{e: e, db: db}
	waitFor(t, "the first slot fired", func() bool { return len(env.runs(t, "buf")) == 1 })
	waitFor(t, "a slot buffered", func() bool { return len(env.get(t, "buf").Buffered) == 1 })
	first := env.runs(t, "buf")[0]
	buffered := env.get(t, "buf").Buffered[0]
	_, err = e.Cancel(t.Context(), "default", first.ID, engine.Caller{})
	is.NoErr(err)
	// No slot is due for the loop's timer before the next second: the
	// buffered slot fires because the run it waited for ended.
	waitFor(t, "the buffered slot fired", func() bool { return len(env.runs(t, "buf")) >= 2 })
	runs := env.runs(t, "buf")
	is.True(runs[1].Origin.Slot.Equal(buffered)) // the buffered slot, not a later one
}

func TestSchedule_SuspendedTenantsSlotsFailAndStartNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	c := &clock{t: t0}
	var mu sync.Mutex
	state := engine.TenantActive
	tenant := func(_ context.Context, id string) (*engine.Tenant, error) {
		mu.Lock()
		defer mu.Unlock()
		return &engine.Tenant{ID: id, State: state}, nil
	}
	e := startEngineWith(t, db, engine.Config{NoScheduleLoop: true, NowFunc: c.Now, TenantFunc: tenant}, nil)
	_, _, err := e.RegisterDefinition(t.Context(), "default", []byte(`{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`))
	is.NoErr(err)
	_, err = e.CreateSchedule(t.Context(), engine.Caller{}, "default", "s", engine.ScheduleSpec{
		Cron: "@every 1s", Workflow: "wf", Overlap: engine.OverlapAllowAll})
	is.NoErr(err)
	env := &schedEnv{e: e, db: db, clock: c}
	env.tick(t, time.Second)
	is.Equal(len(env.runs(t, "s")), 1) // fires while active
	mu.Lock()
	state = engine.TenantSuspended
	mu.Unlock()
	env.tick(t, time.Second)
	env.tick(t, time.Second)
	is.Equal(len(env.runs(t, "s")), 1)         // nothing starts while suspended
	is.Equal(env.get(t, "s").Failed, int64(2)) // the slots are recorded as failed
	failed, err := e.ScheduleEvents(t.Context(), "default", "s", 0, engine.ScheduleSlotFailed, 10)
	is.NoErr(err)
	is.True(strings.Contains(string(failed[0].Data), "suspended")) // saying why
	env.verify(t, "s")
}

func TestSchedule_EverySlotsCountFromTheEpochWhateverTheCursor(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0.Add(123456*time.Microsecond))
	_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "e", engine.ScheduleSpec{
		Cron: "@every 90s", Workflow: "wf", Overlap: engine.OverlapAllowAll})
	is.NoErr(err)
	next, err := env.e.NextFireTimes(t.Context(), "default", "e", 3)
	is.NoErr(err)
	for _, f := range next {
		is.Equal(f.Slot.UnixNano()%int64(90*time.Second), int64(0)) // multiples of 90 s since the epoch
	}
	// A backfill of an hour takes the slots the loop takes: the one that
	// fired on time keeps its run.
	env.clock.t = next[0].Slot
	env.tick(t, 0)
	is.Equal(len(env.runs(t, "e")), 1)
	out, err := env.e.BackfillSchedule(t.Context(), engine.Caller{}, "default", "e", next[0].Slot.Add(-time.Hour), next[0].Slot)
	is.NoErr(err)
	is.Equal(len(out), 41)    // 40 slots of 90 s in the hour before, and the one that fired
	is.True(out[40].Replayed) // the same slot, the same run
}

func TestSchedule_CatchupSlotsFireUnderTheOverlapPolicy(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "c", engine.ScheduleSpec{
		Cron: "@every 1s", Workflow: "slow", CatchupWindow: 10 * time.Second})
	is.NoErr(err)
	env.tick(t, 5*time.Second)         // downtime: 5 slots within the window
	is.Equal(len(env.runs(t, "c")), 1) // the first fires...
	s := env.get(t, "c")
	is.Equal(s.Skipped, int64(4)) // ...the others find its run active and skip
	is.Equal(s.Missed, int64(0))
}

func TestSchedule_DSTSpringForwardSkipsTheTimeThatDoesNotExist(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ny, err := time.LoadLocation("America/New_York")
	is.NoErr(err)
	env := newSchedEnv(t, time.Date(2026, 3, 7, 12, 0, 0, 0, ny).UTC())
	_, err = env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "d", engine.ScheduleSpec{
		Cron: "30 2 * * *", TimeZone: "America/New_York", Workflow: "wf"})
	is.NoErr(err)
	next, err := env.e.NextFireTimes(t.Context(), "default", "d", 2)
	is.NoErr(err)
	is.Equal(next[0].Slot.In(ny).Format("2006-01-02 15:04 MST"), "2026-03-09 02:30 EDT") // 2026-03-08 02:30 does not exist
	is.Equal(next[1].Slot.In(ny).Format("2006-01-02 15:04 MST"), "2026-03-10 02:30 EDT")
}

// A schedule naming wf@alias starts each slot's run with the version the
// alias picks, and the run records the alias.
func TestSchedule_WorkflowByAlias(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	_, _, err := env.e.RegisterDefinition(t.Context(), "default", []byte(`{"name":"wf","tasks":[{"id":"b","type":"noop"}]}`))
	is.NoErr(err) // wf v2
	_, err = env.e.SetAlias(t.Context(), engine.Caller{}, "default", "wf", "live", engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 1, Weight: 100}}})
	is.NoErr(err)
	_, err = env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "al", engine.ScheduleSpec{Cron: "*/10 * * * * *", Workflow: "wf@live"})
	is.NoErr(err)
	env.tick(t, 10*time.Second)
	runs := env.runs(t, "al")
	is.Equal(len(runs), 1)          // the slot fired
	is.Equal(runs[0].Version, 1)    // the alias's version, not the latest
	is.Equal(runs[0].Alias, "live") // recorded
	// The next slot must find that run ended, or the default overlap
	// policy (skip) skips it before it looks at the alias.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	done, err := env.e.Wait(ctx, "default", runs[0].ID)
	is.NoErr(err)                             // the slot's run ends
	is.Equal(done.State, engine.RunCompleted) // and completes
	// A slot whose alias is gone is recorded as failed, naming the alias.
	is.NoErr(env.e.DeleteAlias(t.Context(), engine.Caller{}, "default", "wf", "live", 0))
	env.tick(t, 10*time.Second)
	is.Equal(len(env.runs(t, "al")), 1) // nothing started
	is.Equal(env.get(t, "al").Failed, int64(1))
	failed, err := env.e.ScheduleEvents(t.Context(), "default", "al", 0, engine.ScheduleSlotFailed, 10)
	is.NoErr(err)
	is.Equal(len(failed), 1)
	is.True(strings.Contains(string(failed[0].Data), "live")) // saying which alias
	env.verify(t, "al")
}

// A jitter longer than the schedule's interval never makes the loop miss
// slots while it runs: each slot's delay stays under the time to the next
// slot, so slots keep their order and each fires on its own time (before,
// a slot delayed 25 s held back the slots after it, which were then older
// than the catch-up window when their turn came and recorded as missed).
func TestSchedule_JitterLongerThanTheIntervalMissesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newSchedEnv(t, t0)
	spec := engine.ScheduleSpec{Cron: "@every 2s", Workflow: "wf", Overlap: engine.OverlapAllowAll,
		Jitter: 30 * time.Second, CatchupWindow: time.Second}
	_, err := env.e.CreateSchedule(t.Context(), engine.Caller{}, "default", "j", spec)
	is.NoErr(err)
	next, err := env.e.NextFireTimes(t.Context(), "default", "j", 30)
	is.NoErr(err)
	for i := 1; i < len(next); i++ {
		is.True(next[i-1].At.Before(next[i].Slot)) // each slot's run starts before the next slot
	}
	for range 600 { // a minute, every 100 ms: the loop never falls behind
		env.tick(t, 100*time.Millisecond)
	}
	s := env.get(t, "j")
	is.Equal(s.Missed, int64(0)) // nothing missed
	is.True(s.Fired >= 25)       // every slot up to now fired
	env.verify(t, "j")
}
