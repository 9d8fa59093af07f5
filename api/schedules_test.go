package api_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
)

const schedules = "/api/v1/tenants/default/schedules"

// scheduleRows counts the schedules and schedule events stored.
func (ts *testServer) scheduleRows(t *testing.T) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+ts.DB.Path()+"?_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM schedules) + (SELECT count(*) FROM schedule_events)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSchedulesAPI_BadFieldsAnswer400NamingTheFieldAndWriteNothing(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	ts.register(t, `{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`)
	cases := map[string]string{
		"cron":           `{"cron":"every day","workflow":"wf"}`,
		"time_zone":      `{"cron":"@daily","time_zone":"Nowhere/City","workflow":"wf"}`,
		"overlap":        `{"cron":"@daily","workflow":"wf","overlap":"never"}`,
		"end_at":         `{"cron":"@daily","workflow":"wf","start_at":"2026-02-01T00:00:00Z","end_at":"2026-01-01T00:00:00Z"}`,
		"jitter":         `{"cron":"@daily","workflow":"wf","jitter":"48h"}`,
		"catchup_window": `{"cron":"@daily","workflow":"wf","catchup_window":"soon"}`,
		"workflow":       `{"cron":"@daily","workflow":"missing"}`,
		"input":          `{"cron":"@daily","workflow":"wf","input":{"a":"${schedule.nope}"}}`,
		"id":             `{"id":"no spaces","cron":"@daily","workflow":"wf"}`,
		"extra":          `{"cron":"@daily","workflow":"wf","extra":1}`,
	}
	for field, body := range cases {
		t.Run(field, func(t *testing.T) {
			is := is.New(t)
			before := ts.scheduleRows(t)
			p := problemOf(t, ts.postJSON(t, schedules, body), http.StatusBadRequest, wire.CodeInvalidRequest)
			is.Equal(len(p.Errors), 1)
			is.Equal(p.Errors[0].Field, field)         // the problem names the field
			is.Equal(ts.scheduleRows(t), before)       // nothing written
			is.True(strings.Contains(p.Detail, field)) // and says it
		})
	}
}

func TestSchedulesAPI_Lifecycle(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	ts.register(t, `{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`)

	var s wire.Schedule
	decodeJSON(t, ts.postJSON(t, schedules, `{"id":"nightly","cron":"0 3 * * *","time_zone":"Europe/Paris","workflow":"wf@1",
		"jitter":"10m","input":{"when":"${schedule.time}"}}`), http.StatusCreated, &s)
	is.Equal(s.State, "active")
	is.Equal(s.Overlap, "skip")       // the default policy
	is.Equal(s.CatchupWindow, "1m0s") // and window
	problemOf(t, ts.postJSON(t, schedules, `{"id":"nightly","cron":"@daily","workflow":"wf"}`), http.StatusConflict, wire.CodeConflict)

	decodeJSON(t, ts.get(t, schedules+"/nightly?next=3"), http.StatusOK, &s)
	is.Equal(len(s.Next), 3) // the next fire times
	paris, _ := time.LoadLocation("Europe/Paris")
	for i, f := range s.Next {
		is.Equal(f.Slot.In(paris).Hour(), 3)                               // 03:00 in Paris
		is.True(!f.At.Before(f.Slot) && f.At.Sub(f.Slot) < 10*time.Minute) // plus the jitter
		if i > 0 {
			is.True(f.Slot.Sub(s.Next[i-1].Slot) >= 23*time.Hour) // a day apart
		}
	}
	problemOf(t, ts.get(t, schedules+"/nightly?next=500"), http.StatusBadRequest, wire.CodeInvalidRequest)

	// Replace: with the version read, not another.
	put := func(version int64) *response {
		return ts.request(t, http.MethodPut, schedules+"/nightly",
			fmt.Sprintf(`{"version":%d,"cron":"@hourly","workflow":"wf","overlap":"allow_all"}`, version), map[string]string{"Content-Type": typeJSON})
	}
	problemOf(t, put(7), http.StatusConflict, wire.CodeConflict)
	decodeJSON(t, put(1), http.StatusOK, &s)
	is.Equal(s.Version, int64(2))
	is.Equal(s.Cron, "@hourly")

	decodeJSON(t, ts.postJSON(t, schedules+"/nightly/pause", ``), http.StatusOK, &s)
	is.Equal(s.State, "paused")
	problemOf(t, ts.postJSON(t, schedules+"/nightly/pause", ``), http.StatusConflict, wire.CodeInvalidTransition)
	decodeJSON(t, ts.postJSON(t, schedules+"/nightly/unpause", ``), http.StatusOK, &s)
	is.Equal(s.State, "active")

	// Trigger now: the same Idempotency-Key, the same run.
	hdr := map[string]string{"Content-Type": typeJSON, "Idempotency-Key": "k1"}
	r1 := ts.request(t, http.MethodPost, schedules+"/nightly/trigger", ``, hdr)
	var run1, run2 wire.Run
	decodeJSON(t, r1, http.StatusCreated, &run1)
	r2 := ts.request(t, http.MethodPost, schedules+"/nightly/trigger", ``, hdr)
	decodeJSON(t, r2, http.StatusCreated, &run2)
	is.Equal(run2.ID, run1.ID)
	is.Equal(r2.Header.Get("Idempotent-Replayed"), "true")
	is.Equal(run1.Origin.Kind, "schedule")
	is.Equal(run1.Origin.ID, "nightly")

	// Backfill the last three hours, twice: the same runs.
	now := time.Now().UTC()
	body := fmt.Sprintf(`{"from":%q,"to":%q}`, now.Add(-3*time.Hour).Format(time.RFC3339), now.Format(time.RFC3339))
	var b1, b2 wire.Backfill
	decodeJSON(t, ts.postJSON(t, schedules+"/nightly/backfill", body), http.StatusOK, &b1)
	is.Equal(len(b1.Slots), 3)
	decodeJSON(t, ts.postJSON(t, schedules+"/nightly/backfill", body), http.StatusOK, &b2)
	for i := range b2.Slots {
		is.True(b2.Slots[i].Replayed)                  // fired before
		is.Equal(b2.Slots[i].RunID, b1.Slots[i].RunID) // keeps its run
	}
	future := fmt.Sprintf(`{"from":%q,"to":%q}`, now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	p := problemOf(t, ts.postJSON(t, schedules+"/nightly/backfill", future), http.StatusBadRequest, wire.CodeInvalidRequest)
	is.Equal(p.Errors[0].Field, "to")

	// The runs list filters the schedule's runs.
	var page wire.RunsPage[wire.Run]
	decodeJSON(t, ts.get(t, "/api/v1/tenants/default/workflows?origin_kind=schedule&origin_id=nightly"), http.StatusOK, &page)
	is.Equal(len(page.Runs), 4) // one triggered, three backfilled

	// The log: every change with its caller.
	var evs wire.ScheduleEventsPage
	decodeJSON(t, ts.get(t, schedules+"/nightly/events"), http.StatusOK, &evs)
	var types []string
	for _, e := range evs.Events {
		types = append(types, e.Type)
	}
	is.Equal(types[:5], []string{"schedule.created", "schedule.updated", "schedule.paused", "schedule.unpaused", "schedule.triggered"})
	is.Equal(evs.Events[0].Actor, "local") // the caller of the local API
	decodeJSON(t, ts.get(t, schedules+"/nightly/events?type=schedule.backfilled"), http.StatusOK, &evs)
	is.Equal(len(evs.Events), 2)
	problemOf(t, ts.get(t, schedules+"/nightly/events?type=nope"), http.StatusBadRequest, wire.CodeInvalidRequest)

	// List pages; a deleted schedule is gone.
	decodeJSON(t, ts.postJSON(t, schedules, `{"id":"second","cron":"@daily","workflow":"wf"}`), http.StatusCreated, &s)
	var list wire.SchedulesPage
	decodeJSON(t, ts.get(t, schedules+"?limit=1"), http.StatusOK, &list)
	is.Equal(len(list.Schedules), 1)
	is.Equal(list.Schedules[0].ID, "nightly")
	decodeJSON(t, ts.get(t, schedules+"?limit=1&page_token="+list.NextPageToken), http.StatusOK, &list)
	is.Equal(list.Schedules[0].ID, "second")
	r := ts.request(t, http.MethodDelete, schedules+"/second", ``, nil)
	is.Equal(r.Status, http.StatusNoContent)
	problemOf(t, ts.get(t, schedules+"/second"), http.StatusNotFound, wire.CodeNotFound)
}

// An @every interval the cron parser would round (under a second, zero,
// negative, a fraction of a second) is refused naming cron: accepted, such
// a schedule fired every second whatever it showed.
func TestSchedulesAPI_EveryIntervalTheParserWouldChangeIsRefused(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	ts.register(t, `{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`)
	for _, every := range []string{"0s", "-1s", "1ns", "500ms", "1.5s", "90s500ms"} {
		t.Run(every, func(t *testing.T) {
			is := is.New(t)
			before := ts.scheduleRows(t)
			p := problemOf(t, ts.postJSON(t, schedules, `{"cron":"@every `+every+`","workflow":"wf"}`), http.StatusBadRequest, wire.CodeInvalidRequest)
			is.Equal(fieldOf(t, p), "cron")      // names the field
			is.Equal(ts.scheduleRows(t), before) // and writes nothing
		})
	}
	for _, every := range []string{"1s", "90s", "1h30m"} {
		r := ts.postJSON(t, schedules, `{"cron":"@every `+every+`","workflow":"wf"}`)
		is.New(t).Equal(r.Status, http.StatusCreated) // whole seconds stay accepted
	}
}

// A time field whose value is not an RFC 3339 string is a 400
// invalid_request naming the field, like any other wrong value, not an
// invalid_json that leaves the caller to guess which field.
func TestSchedulesAPI_BadTimeNamesTheField(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	ts.register(t, `{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`)
	is.New(t).Equal(ts.postJSON(t, schedules, `{"id":"s","cron":"@daily","workflow":"wf"}`).Status, http.StatusCreated)
	for _, c := range []struct{ name, path, body, field string }{
		{"start_at text", schedules, `{"cron":"@daily","workflow":"wf","start_at":"tomorrow"}`, "start_at"},
		{"end_at number", schedules, `{"cron":"@daily","workflow":"wf","end_at":1767225600}`, "end_at"},
		{"update start_at", schedules + "/s", `{"version":1,"cron":"@daily","workflow":"wf","start_at":"2026-13-01T00:00:00Z"}`, "start_at"},
		{"backfill from", schedules + "/s/backfill", `{"from":"yesterday","to":"2026-01-02T00:00:00Z"}`, "from"},
		{"backfill to", schedules + "/s/backfill", `{"from":"2026-01-01T00:00:00Z","to":true}`, "to"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			before := ts.scheduleRows(t)
			method := "POST"
			if c.name == "update start_at" {
				method = "PUT"
			}
			p := problemOf(t, ts.request(t, method, c.path, c.body, map[string]string{"Content-Type": typeJSON}), http.StatusBadRequest, wire.CodeInvalidRequest)
			is.Equal(fieldOf(t, p), c.field)     // names the field
			is.Equal(ts.scheduleRows(t), before) // and writes nothing
		})
	}
}

// The next fire times of an @every schedule with a long interval move
// forward and stop at the last time a schedule may have (2200): the slot
// after 2198 used to overflow and go back to 1727, then 1855, 1970...
func TestSchedulesAPI_NextFireTimesOfALongIntervalOnlyMoveForward(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	ts.register(t, `{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`)
	is.Equal(ts.postJSON(t, schedules, `{"id":"long","cron":"@every 1000000h","workflow":"wf"}`).Status, http.StatusCreated)
	var sc wire.Schedule
	ts.getJSON(t, schedules+"/long?next=10", &sc)
	is.True(len(sc.Next) > 0)
	last := time.Now()
	for _, f := range sc.Next {
		is.True(f.Slot.After(last))                                         // forward
		is.True(!f.Slot.After(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))) // within the range of schedule times
		last = f.Slot
	}
	// One whose first slot is past that range never fires: refused naming cron.
	p := problemOf(t, ts.postJSON(t, schedules, `{"cron":"@every 2562047h","workflow":"wf"}`), http.StatusBadRequest, wire.CodeInvalidRequest)
	is.Equal(fieldOf(t, p), "cron")
}
