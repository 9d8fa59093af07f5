package web_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orchestrator/orchestrator/engine"
)

// TestUI_RunsShowTheirOriginAndFilterByIt: a run a schedule's slot started
// shows "schedule nightly HH:MM" in the list and on its page, and the
// origin filter lists only the runs of that schedule.
func TestUI_RunsShowTheirOriginAndFilterByIt(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	direct := s.start(t, quick)
	slot := time.Date(2026, 3, 4, 12, 0, 0, 0, time.Local)
	run, err := s.Engine.StartRun(context.Background(), engine.StartRequest{TenantID: "default", Workflow: "quick",
		Origin: &engine.Origin{Kind: engine.OriginSchedule, ID: "nightly", Slot: slot}})
	if err != nil {
		t.Fatalf("start the scheduled run: %v", err)
	}
	s.waitRun(t, run.ID, func(d runDetails) bool { return d.State == "completed" })
	b := newBrowser(t)

	b.open(t, s, "#/runs")
	b.waitJS(t, "both runs", `document.querySelectorAll('#runs-body tr[data-run]').length === 2`)
	b.waitJS(t, "the origin badge", `(document.querySelector('#runs-body tr[data-run="`+run.ID+`"] [data-origin="schedule/nightly"]') || {}).textContent === 'schedule nightly 12:00'`)
	if n := b.count(t, `#runs-body tr[data-run="`+direct+`"] [data-origin]`); n != 0 {
		t.Errorf("the direct run shows %d origin badges, want none", n)
	}

	b.do(t, "filter by origin", chromedp.SetValue(chromedp.CSS(`#run-filters select[name=origin_kind]`), "schedule"),
		chromedp.SendKeys(chromedp.CSS(`#run-filters input[name=origin_id]`), "nightly"), click(`#run-filters button`))
	b.waitJS(t, "only the scheduled run", `location.hash.includes('origin_kind=schedule') && location.hash.includes('origin_id=nightly') &&
		document.querySelectorAll('#runs-body tr[data-run]').length === 1 && !!document.querySelector('#runs-body tr[data-run="`+run.ID+`"]')`)
	b.waitJS(t, "the stream", `document.getElementById('live').textContent.includes('live')`)

	// Runs started now arrive through the stream: the schedule's joins the
	// filtered list, a direct one does not.
	other := s.start(t, quick)
	later, err := s.Engine.StartRun(context.Background(), engine.StartRequest{TenantID: "default", Workflow: "quick",
		Origin: &engine.Origin{Kind: engine.OriginSchedule, ID: "nightly", Slot: slot.Add(24 * time.Hour)}})
	if err != nil {
		t.Fatalf("start the second scheduled run: %v", err)
	}
	b.waitJS(t, "the new scheduled run, live", `!!document.querySelector('#runs-body tr[data-run="`+later.ID+`"]')`)
	if n := b.count(t, `#runs-body tr[data-run="`+other+`"], #runs-body tr[data-run="`+direct+`"]`); n != 0 {
		t.Errorf("the filtered list shows %d direct runs", n)
	}

	b.open(t, s, "#/runs/"+run.ID)
	b.waitJS(t, "the origin on the run page", `(document.querySelector('#run-origin') || {}).textContent === ' · started by schedule nightly 12:00'`)
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_SchedulesPausesUnpausesAndTriggers: a schedule created through the
// API is listed with its next fire time; pausing it from the page (after
// the confirmation) changes its state; an unpause the page did not know
// was needed answers 409 and the page says so; trigger-now starts a run
// the runs list shows as the schedule's.
func TestUI_SchedulesPausesUnpausesAndTriggers(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	s.start(t, quick)
	if st := s.call(t, "POST", "/api/v1/tenants/default/schedules",
		`{"id":"nightly","cron":"0 3 * * *","time_zone":"Europe/Paris","workflow":"quick"}`, nil); st != http.StatusCreated {
		t.Fatalf("create the schedule: %d", st)
	}
	b := newBrowser(t)
	b.open(t, s, "#/schedules")
	row := `document.querySelector('#schedules-body tr[data-schedule=nightly]')`
	b.waitJS(t, "the schedule", row+` && `+row+`.dataset.state === 'active' && `+row+`.textContent.includes('0 3 * * *') && `+row+`.textContent.includes('Europe/Paris')`)
	if next := evalJS[string](t, b, row+`.querySelector('.next-fire').textContent`); next == "—" || next == "" {
		t.Errorf("the next fire time is %q", next)
	}

	b.do(t, "pause", click(`#schedules-body tr[data-schedule=nightly] button[data-action=pause]`), chromedp.WaitVisible(chromedp.CSS(`#confirm-yes`)))
	if text := evalJS[string](t, b, `document.getElementById('confirm-text').textContent`); text != "Pause schedule nightly?" {
		t.Errorf("the confirmation says %q", text)
	}
	b.do(t, "confirm", click(`#confirm-yes`))
	b.waitJS(t, "paused", row+`.dataset.state === 'paused' && !!`+row+`.querySelector('button[data-action=unpause]')`)
	var sc struct{ State string }
	if s.call(t, "GET", "/api/v1/tenants/default/schedules/nightly", "", &sc); sc.State != "paused" {
		t.Errorf("the stored schedule is %q", sc.State)
	}

	if st := s.call(t, "POST", "/api/v1/tenants/default/schedules/nightly/unpause", "", nil); st != http.StatusOK {
		t.Fatalf("unpause behind the page's back: %d", st)
	}
	b.do(t, "stale unpause", click(`#schedules-body tr[data-schedule=nightly] button[data-action=unpause]`), chromedp.WaitVisible(chromedp.CSS(`#confirm-yes`)), click(`#confirm-yes`))
	b.waitJS(t, "the 409", `document.getElementById('flash').textContent.startsWith('unpause refused (409)')`)
	b.waitJS(t, "active again", row+`.dataset.state === 'active'`)

	b.do(t, "trigger", click(`#schedules-body tr[data-schedule=nightly] button[data-action=trigger]`), chromedp.WaitVisible(chromedp.CSS(`#confirm-yes`)), click(`#confirm-yes`))
	b.waitJS(t, "the run started", `document.getElementById('flash').textContent.startsWith('trigger: started run ')`)
	b.do(t, "its runs", click(`#schedules-body tr[data-schedule=nightly] td a`))
	b.waitJS(t, "the schedule's run", `location.hash.includes('origin_id=nightly') && document.querySelectorAll('#runs-body tr[data-run]').length === 1 &&
		!!document.querySelector('#runs-body [data-origin="schedule/nightly"]')`)
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_TriggersShowsWebhooksAndStreamTriggersWithTheirState: the
// triggers page lists a webhook (never its secret) and a stream trigger
// with what its consumer reports: connected, lag and the last error.
func TestUI_TriggersShowsWebhooksAndStreamTriggersWithTheirState(t *testing.T) {
	s := newUIServer(t, uiOptions{TriggerStatus: func(tenantID, name string) *engine.TriggerStatus {
		if tenantID == "default" && name == "orders" {
			return &engine.TriggerStatus{Connected: true, Lag: 7, Messages: 3, RunsStarted: 2, Errors: 1, LastError: "body: must be JSON"}
		}
		return nil
	}})
	s.start(t, quick)
	var hook struct{ Secret string }
	if st := s.call(t, "POST", "/api/v1/tenants/default/webhooks", `{"name":"gh","workflow":"quick","webhook":{"verify":"github"}}`, &hook); st != http.StatusCreated || hook.Secret == "" {
		t.Fatalf("create the webhook: %d, secret %q", st, hook.Secret)
	}
	if st := s.call(t, "POST", "/api/v1/tenants/default/triggers", `{"name":"orders","kind":"nats","workflow":"quick",
		"nats":{"servers":["nats://127.0.0.1:4222"],"stream":"ORDERS","subject":"orders.*"}}`, nil); st != http.StatusCreated {
		t.Fatalf("create the stream trigger: %d", st)
	}
	b := newBrowser(t)
	b.open(t, s, "#/triggers")
	b.waitJS(t, "the webhook", `(document.querySelector('#webhooks tr[data-trigger=gh]') || {}).textContent.includes('github')`)
	orders := `document.querySelector('#stream-triggers tr[data-trigger=orders]')`
	b.waitJS(t, "the stream trigger and its consumer", orders+` && `+orders+`.querySelector('.connected').dataset.connected === 'true' &&
		`+orders+`.querySelector('.lag').textContent === '7' && `+orders+`.querySelector('.last-error').textContent.startsWith('body: must be JSON')`)
	if evalJS[bool](t, b, `document.body.innerHTML.includes(`+strconvQuote(hook.Secret)+`)`) {
		t.Error("the page shows the webhook's secret")
	}
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_KeysListsATenantsKeysWithoutSecrets: an operator is shown the
// server's refusal; an owner logged in sees the tenant's keys (name, role,
// status) and no key's secret.
func TestUI_KeysListsATenantsKeysWithoutSecrets(t *testing.T) {
	s := newUIServer(t, uiOptions{AuthRequired: true})
	ctx := context.Background()
	_, owner, err := s.Admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleOwner, Name: "boss"})
	if err != nil {
		t.Fatal(err)
	}
	_, worker, err := s.Admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleWorker, Name: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	_, operator, err := s.Admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "op"})
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	b.open(t, s, "#/keys")
	b.waitJS(t, "the login form", `document.getElementById('login-form')`)
	b.do(t, "log in as an operator", chromedp.SendKeys(chromedp.CSS(`#login-form input[name=key]`), operator), click(`#login-form button`))
	b.waitJS(t, "the refusal", `location.hash === '#/keys' && document.querySelector('#main p.error[role=alert]') && !document.getElementById('keys')`)
	b.do(t, "log out", click(`#logout`))
	b.waitJS(t, "the login form again", `document.getElementById('login-form')`)
	b.do(t, "log in as the owner", chromedp.SendKeys(chromedp.CSS(`#login-form input[name=key]`), owner), click(`#login-form button`))
	b.waitJS(t, "logged in", `document.getElementById('logout')`)
	b.open(t, s, "#/keys")
	b.waitJS(t, "the three keys", `document.querySelectorAll('#keys tr[data-key]').length === 3 &&
		[...document.querySelectorAll('#keys tr[data-key]')].some(r => r.textContent.includes('w1') && r.textContent.includes('worker') && r.dataset.status === 'active')`)
	for _, secret := range []string{owner, worker, operator} {
		if evalJS[bool](t, b, `document.body.innerHTML.includes(`+strconvQuote(secret)+`)`) {
			t.Error("the page shows a key's secret")
		}
	}
	b.noErrors(t)
	s.Key = owner
	b.documented(t, s)
}

// TestUI_AuditFormShowsTheSearchsTimes: opened with a search bounded by
// since and until, the audit form shows both times in its fields, as it
// shows the other filters; searching again keeps them exactly, and a time
// field emptied drops its bound.
func TestUI_AuditFormShowsTheSearchsTimes(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	id := s.start(t, quick)
	s.waitRun(t, id, func(d runDetails) bool { return d.State == "completed" })
	now := time.Now()
	since := now.Add(-time.Hour).UTC().Truncate(time.Millisecond).Add(-1234 * time.Millisecond).Format(time.RFC3339Nano)
	until := now.Add(time.Hour).UTC().Truncate(time.Minute).Add(30 * time.Second).Format(time.RFC3339Nano)
	local := func(iso string) string {
		at, err := time.Parse(time.RFC3339Nano, iso)
		if err != nil {
			t.Fatal(err)
		}
		return at.In(time.Local).Format("2006-01-02T15:04")
	}
	b := newBrowser(t)
	b.open(t, s, "#/audit?"+url.Values{"type": {"run.created"}, "since": {since}, "until": {until}}.Encode())
	b.waitJS(t, "the run's creation", `document.querySelectorAll('#audit-body tr[data-type]').length === 1`)
	field := func(name string) string {
		return evalJS[string](t, b, `document.querySelector('#audit-filters [name=`+name+`]').value`)
	}
	if got := field("since"); got != local(since) {
		t.Errorf("since shows %q, want %q", got, local(since))
	}
	if got := field("until"); got != local(until) {
		t.Errorf("until shows %q, want %q", got, local(until))
	}
	if got := field("type"); got != "run.created" {
		t.Errorf("type shows %q", got)
	}
	param := func(name string) string {
		return evalJS[string](t, b, `new URLSearchParams(location.hash.split('?')[1] || '').get(`+strconvQuote(name)+`) || ''`)
	}

	b.do(t, "search every type", chromedp.SetValue(chromedp.CSS(`#audit-filters select[name=type]`), ""), click(`#audit-filters button`))
	b.waitJS(t, "every event of the run", `!location.hash.includes('type=') && document.querySelectorAll('#audit-body tr[data-type]').length >= 6`)
	if got, got2 := param("since"), param("until"); got != since || got2 != until {
		t.Errorf("the search again is since %q until %q, want %q and %q", got, got2, since, until)
	}

	b.do(t, "empty since", chromedp.Evaluate[chromedp.Void](`document.querySelector('#audit-filters [name=since]').value = ''`), click(`#audit-filters button`))
	b.waitJS(t, "since dropped", `!location.hash.includes('since=') && location.hash.includes('until=')`)
	if got := param("until"); got != until {
		t.Errorf("until became %q, want %q", got, until)
	}
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_RunsFilterKeepsTheSearchsTimes: the runs list's created-after and
// created-before fields show the search's times to the minute, and
// filtering again keeps them exactly, not rounded to the minute.
func TestUI_RunsFilterKeepsTheSearchsTimes(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	id := s.start(t, quick)
	s.waitRun(t, id, func(d runDetails) bool { return d.State == "completed" })
	now := time.Now()
	after := now.Add(-time.Hour).UTC().Truncate(time.Millisecond).Add(-1234 * time.Millisecond).Format(time.RFC3339Nano)
	before := now.Add(time.Hour).UTC().Truncate(time.Minute).Add(30 * time.Second).Format(time.RFC3339Nano)
	b := newBrowser(t)
	b.open(t, s, "#/runs?"+url.Values{"created_after": {after}, "created_before": {before}}.Encode())
	b.waitJS(t, "the run", `document.querySelectorAll('#runs-body tr').length === 1`)
	param := func(name string) string {
		return evalJS[string](t, b, `new URLSearchParams(location.hash.split('?')[1] || '').get(`+strconvQuote(name)+`) || ''`)
	}
	b.do(t, "filter by state", chromedp.SetValue(chromedp.CSS(`#run-filters select[name=status]`), "completed"), click(`#run-filters button`))
	b.waitJS(t, "the filter applied", `location.hash.includes('status=completed')`)
	if got, got2 := param("created_after"), param("created_before"); got != after || got2 != before {
		t.Errorf("filtered again with created after %q before %q, want %q and %q", got, got2, after, before)
	}
	b.noErrors(t)
}
