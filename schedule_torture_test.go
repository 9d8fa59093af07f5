package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// TestScheduleTorture runs a schedule of @every 1s while the server is
// killed with SIGKILL again and again, after random uptimes and downtimes
// (some longer than the catch-up window), for SCHEDULE_TORTURE_SECONDS
// (default 12). After the last restart it pauses the schedule and checks
// through the store that every slot from the first to the last decided has
// exactly one run or lies in a recorded miss, older than the catch-up window
// when the miss was recorded, and that no slot has two runs.
func TestScheduleTorture(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	seconds := 12
	if v := os.Getenv("SCHEDULE_TORTURE_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		is.NoErr(err) // SCHEDULE_TORTURE_SECONDS is a number
		seconds = n
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("SCHEDULE_TORTURE_SECONDS=%d seed=%d", seconds, seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	dbPath := filepath.Join(t.TempDir(), "schedules.db")
	client := newClient()
	const catchup = 3 * time.Second

	c := startChild(t, dbPath)
	code, body, err := postJSON(client, c.url("/v1/workflows"), `{"name":"tick","tasks":[{"id":"a","type":"noop"}]}`)
	is.NoErr(err)
	is.Equal(code, http.StatusCreated) // definition stored
	code, body, err = postJSON(client, c.url("/api/v1/tenants/default/schedules"),
		`{"id":"every","cron":"@every 1s","workflow":"tick","overlap":"allow_all","catchup_window":"3s",
		  "input":{"slot":"${schedule.time}"}}`)
	is.NoErr(err)
	if code != http.StatusCreated {
		t.Fatalf("create schedule: %d %s", code, body)
	}

	end := time.Now().Add(time.Duration(seconds) * time.Second)
	kills, long := 0, false
	for time.Now().Before(end) {
		// Up for a random while, then killed mid-whatever.
		up := time.Duration(200+rng.IntN(1800)) * time.Millisecond
		time.Sleep(up)
		c.kill(t)
		kills++
		// Down: often a restart at once, sometimes past the catch-up window.
		var down time.Duration
		switch r := rng.IntN(10); {
		case kills == 2 || r < 2:
			down, long = catchup+time.Duration(500+rng.IntN(1500))*time.Millisecond, true
		case r < 5:
			down = time.Duration(rng.IntN(1500)) * time.Millisecond
		}
		time.Sleep(down)
		c = startChild(t, dbPath)
	}
	// Wait until the last life has decided what its downtime left due,
	// then stop the slots.
	restarted := time.Now()
	deadline := restarted.Add(30 * time.Second)
	for {
		resp, err := client.Get(c.url("/api/v1/tenants/default/schedules/every"))
		is.NoErr(err)
		var s struct{ Cursor time.Time }
		is.NoErr(json.NewDecoder(resp.Body).Decode(&s))
		resp.Body.Close()
		if s.Cursor.After(restarted) {
			break // a slot after the restart is decided: the backlog is
		}
		if time.Now().After(deadline) {
			t.Fatalf("the schedule's cursor stays at %s after a restart at %s", s.Cursor, restarted)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body, err = postJSON(client, c.url("/api/v1/tenants/default/schedules/every/pause"), `{}`)
	is.NoErr(err)
	is.Equal(code, http.StatusOK) // paused
	c.kill(t)
	t.Logf("%d kills, a downtime past the catch-up window: %v", kills, long)

	ctx := context.Background()
	db, err := store.Open(ctx, dbPath, store.Options{})
	is.NoErr(err)
	defer db.Close()
	s, err := db.GetSchedule(ctx, "default", "every")
	is.NoErr(err)
	evs, err := db.ScheduleEvents(ctx, "default", "every", 0, "", 0)
	is.NoErr(err)
	is.NoErr(engine.VerifyScheduleLog(s, evs)) // the log is whole and chained

	// Every run of the schedule, by slot: none twice.
	fired := map[time.Time]string{}
	f := engine.RunFilter{TenantID: "default", OriginKind: engine.OriginSchedule, OriginID: "every", Limit: engine.MaxPage}
	for {
		runs, next, err := db.ListRuns(ctx, f)
		is.NoErr(err)
		for _, r := range runs {
			if other, dup := fired[r.Origin.Slot]; dup {
				t.Fatalf("slot %s has two runs: %s and %s", r.Origin.Slot, other, r.ID)
			}
			fired[r.Origin.Slot] = r.ID
		}
		if next == nil {
			break
		}
		f.Cursor = next
	}
	// The missed slots, as the log recorded them.
	missed := map[time.Time]bool{}
	firedEvents := 0
	for _, ev := range evs {
		var d engine.ScheduleEventData
		if len(ev.Data) > 0 {
			is.NoErr(json.Unmarshal(ev.Data, &d))
		}
		switch ev.Type {
		case engine.ScheduleSlotsMissed:
			is.True(ev.At.Sub(d.Last) > catchup) // missed only when older than the window
			for at := d.First; !at.After(d.Last); at = at.Add(time.Second) {
				missed[at] = true
			}
			is.Equal(int64(len(missed)) <= s.Missed, true)
		case engine.ScheduleSlotFired:
			firedEvents++
			is.Equal(fired[d.Slot], d.RunID) // the event names the slot's run
		case engine.ScheduleSlotSkipped, engine.ScheduleSlotFailed:
			t.Fatalf("slot %s: %s under allow_all", d.Slot, ev.Type)
		}
	}
	is.Equal(firedEvents, len(fired))      // each run was recorded as its slot's
	is.Equal(int64(len(fired)), s.Fired)   // and counted
	is.Equal(int64(len(missed)), s.Missed) // each miss counted once
	// Every slot of the grid, from the first to the cursor, has exactly one
	// outcome.
	var slots []time.Time
	for at := range fired {
		is.True(!missed[at]) // a fired slot is not also missed
		slots = append(slots, at)
	}
	for at := range missed {
		slots = append(slots, at)
	}
	slices.SortFunc(slots, func(a, b time.Time) int { return a.Compare(b) })
	is.True(len(slots) > 0)
	for i := 1; i < len(slots); i++ {
		if d := slots[i].Sub(slots[i-1]); d != time.Second {
			t.Fatalf("slots %s and %s are %s apart: a slot between them has no outcome", slots[i-1], slots[i], d)
		}
	}
	is.True(slots[len(slots)-1].Equal(s.Cursor)) // up to the last slot decided
	t.Logf("%d slots: %d fired, %d missed", len(slots), len(fired), len(missed))
	if long {
		is.True(len(missed) > 0) // a downtime past the window left misses
	}
}

// TestCommand_VerifyChecksScheduleLogs: verify folds every schedule's log
// and reports one whose row was changed behind the engine's back.
func TestCommand_VerifyChecksScheduleLogs(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := store.Open(ctx, path, store.Options{})
	is.NoErr(err)
	e, err := engine.New(engine.Config{Store: db, NoScheduleLoop: true})
	is.NoErr(err)
	is.NoErr(e.Start(ctx))
	_, _, err = e.RegisterDefinition(ctx, "default", []byte(`{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`))
	is.NoErr(err)
	for _, id := range []string{"s1", "s2"} {
		_, err = e.CreateSchedule(ctx, engine.By("tester"), "default", id, engine.ScheduleSpec{Cron: "@daily", Workflow: "wf"})
		is.NoErr(err)
	}
	_, err = e.PauseSchedule(ctx, engine.By("tester"), "default", "s2")
	is.NoErr(err)
	is.NoErr(e.Stop(ctx))
	is.NoErr(db.Close())

	code, out, _ := runCmd("verify", "--database-url", path)
	is.Equal(code, 0)                                                      // a clean log verifies
	is.True(strings.Contains(out, "verified 2 schedules: 2 ok, 0 differ")) // every schedule

	raw, err := sql.Open("sqlite", "file:"+path)
	is.NoErr(err)
	_, err = raw.Exec(`UPDATE schedules SET missed = 7 WHERE id = 's2'`)
	is.NoErr(err)
	is.NoErr(raw.Close())
	code, out, _ = runCmd("verify", "--database-url", path)
	is.Equal(code, 1)                                              // a changed row fails
	is.True(strings.Contains(out, "MISMATCH schedule default/s2")) // naming the schedule
}
