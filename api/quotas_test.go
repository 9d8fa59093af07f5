package api_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// quotaServer serves tenant acme, whose quotas PATCH sets, with the
// definitions "held" (a run that waits for a worker nobody runs) and
// "keyed" (the same, one active run per customer, strategy given).
func quotaServer(t *testing.T, quotas, strategy string) *testServer {
	t.Helper()
	ts := newServer(t, serverOptions{Access: true})
	ts.tenant(t, "acme", engine.TenantSettings{})
	var tn wire.Tenant
	decodeJSON(t, ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"quotas":`+quotas+`}}`,
		map[string]string{"Content-Type": typeJSON}), http.StatusOK, &tn)
	for _, def := range []string{`{"name":"held","tasks":[{"id":"x","type":"remote"}]}`,
		`{"name":"keyed","concurrency":{"key":"${workflow.input.customer}","strategy":"` + strategy + `"},"tasks":[{"id":"x","type":"remote"}]}`} {
		r := ts.postJSON(t, "/api/v1/tenants/acme/definitions", def)
		if r.Status != http.StatusCreated {
			t.Fatalf("register: %d %s", r.Status, r.Body)
		}
	}
	return ts
}

func (ts *testServer) startAcme(t *testing.T, body string) *response {
	t.Helper()
	return ts.postJSON(t, "/api/v1/tenants/acme/workflows", body)
}

func headerInt(t *testing.T, r *response, name string) int {
	t.Helper()
	n, err := strconv.Atoi(r.Header.Get(name))
	if err != nil {
		t.Fatalf("header %s = %q: %v", name, r.Header.Get(name), err)
	}
	return n
}

func TestQuotasAPI_StartRateAnswers429WithRetryAfterAndRateLimitHeaders(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := quotaServer(t, `{"start_rate":0.5,"start_burst":2}`, "queue")
	r := ts.startAcme(t, `{"workflow":"held"}`)
	is.Equal(r.Status, http.StatusCreated)
	is.Equal(headerInt(t, r, "RateLimit-Limit"), 2)     // the burst
	is.Equal(headerInt(t, r, "RateLimit-Remaining"), 1) // one left
	is.Equal(headerInt(t, r, "RateLimit-Reset"), 2)     // a token takes 2 s at 0.5/s
	is.Equal(ts.startAcme(t, `{"workflow":"held"}`).Status, http.StatusCreated)
	before := ts.writes(t)
	r = ts.startAcme(t, `{"workflow":"held"}`)
	p := problemOf(t, r, http.StatusTooManyRequests, wire.CodeQuotaExceeded)
	is.Equal(p.Quota, "start_rate")
	ra := headerInt(t, r, "Retry-After")
	is.True(ra >= 1 && ra <= 2) // until the bucket holds a start
	is.Equal(headerInt(t, r, "RateLimit-Remaining"), 0)
	is.Equal(headerInt(t, r, "RateLimit-Limit"), 2)
	is.True(headerInt(t, r, "RateLimit-Reset") >= 3) // nearly 2 tokens missing
	is.Equal(ts.writes(t), before)                   // nothing recorded

	// The default tenant has no rate: no headers.
	ts.register(t, `{"name":"held","tasks":[{"id":"x","type":"remote"}]}`)
	r = ts.postJSON(t, "/v1/run", `{"workflow":"held"}`)
	is.Equal(r.Status, http.StatusCreated)
	is.Equal(r.Header.Get("RateLimit-Limit"), "")
}

// A start rate so low that a token takes longer than a time.Duration can
// hold still answers whole, non-negative seconds.
func TestQuotasAPI_TinyStartRateAnswersPlausibleSeconds(t *testing.T) {
	t.Parallel()
	for _, rate := range []string{"1e-9", "1e-300"} {
		t.Run(rate, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			ts := quotaServer(t, `{"start_rate":`+rate+`,"start_burst":1}`, "queue")
			r := ts.startAcme(t, `{"workflow":"held"}`)
			is.Equal(r.Status, http.StatusCreated)
			is.Equal(headerInt(t, r, "RateLimit-Remaining"), 0) // the one start is taken
			is.True(headerInt(t, r, "RateLimit-Reset") >= 1e9)  // and takes ages to come back, not a negative time
			r = ts.startAcme(t, `{"workflow":"held"}`)
			problemOf(t, r, http.StatusTooManyRequests, wire.CodeQuotaExceeded)
			is.True(headerInt(t, r, "Retry-After") >= 1e9)     // nor does the refusal's wait overflow
			is.True(headerInt(t, r, "RateLimit-Reset") >= 1e9) // or the bucket's
		})
	}
}

func TestQuotasAPI_ActiveRunsRejectAndQueue(t *testing.T) {
	t.Parallel()
	t.Run("reject answers 429", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts := quotaServer(t, `{"max_active_runs":1}`, "queue")
		is.Equal(ts.startAcme(t, `{"workflow":"held"}`).Status, http.StatusCreated)
		r := ts.startAcme(t, `{"workflow":"held"}`)
		p := problemOf(t, r, http.StatusTooManyRequests, wire.CodeQuotaExceeded)
		is.Equal(p.Quota, "max_active_runs")
		is.Equal(r.Header.Get("Retry-After"), "1")
	})
	t.Run("queue answers 201 pending, then the pending cap 429", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts := quotaServer(t, `{"max_active_runs":1,"on_active_limit":"queue","max_pending_runs":1}`, "queue")
		is.Equal(ts.startAcme(t, `{"workflow":"held"}`).Status, http.StatusCreated)
		var run wire.Run
		decodeJSON(t, ts.startAcme(t, `{"workflow":"held"}`), http.StatusCreated, &run)
		is.Equal(run.State, wire.RunState("pending")) // accepted, waiting
		p := problemOf(t, ts.startAcme(t, `{"workflow":"held"}`), http.StatusTooManyRequests, wire.CodeQuotaExceeded)
		is.Equal(p.Quota, "max_pending_runs")
	})
}

func TestQuotasAPI_InputSizeAnswers413NamingInput(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := quotaServer(t, `{"max_input_bytes":32}`, "queue")
	is.Equal(ts.startAcme(t, `{"workflow":"held","input":{"k":"short"}}`).Status, http.StatusCreated)
	p := problemOf(t, ts.startAcme(t, `{"workflow":"held","input":{"k":"`+strings.Repeat("x", 40)+`"}}`),
		http.StatusRequestEntityTooLarge, wire.CodeQuotaExceeded)
	is.Equal(fieldOf(t, p), "input")
	is.Equal(p.Quota, "max_input_bytes")
	is.True(strings.Contains(p.Detail, "32")) // names the limit
}

func TestQuotasAPI_ConcurrencyKeys(t *testing.T) {
	t.Parallel()
	t.Run("cancel_newest answers 409 naming the key", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts := quotaServer(t, `{}`, "cancel_newest")
		var run wire.Run
		decodeJSON(t, ts.startAcme(t, `{"workflow":"keyed","input":{"customer":"c1"}}`), http.StatusCreated, &run)
		is.Equal(run.ConcurrencyKey, "c1") // shown on the run
		p := problemOf(t, ts.startAcme(t, `{"workflow":"keyed","input":{"customer":"c1"}}`), http.StatusConflict, wire.CodeConcurrencyLimited)
		is.Equal(p.Key, "c1")
	})
	t.Run("a key the input cannot render is a 400 naming input", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts := quotaServer(t, `{}`, "queue")
		p := problemOf(t, ts.startAcme(t, `{"workflow":"keyed","input":{"client":"c1"}}`), http.StatusBadRequest, wire.CodeInvalidRequest)
		is.Equal(fieldOf(t, p), "input")
		is.True(strings.Contains(p.Detail, "workflow.input.customer")) // names the reference
	})
	t.Run("registration names the concurrency field", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts := quotaServer(t, `{}`, "queue")
		p := problemOf(t, ts.postJSON(t, "/api/v1/tenants/acme/definitions",
			`{"name":"bad","concurrency":{"key":"k","strategy":"later"},"tasks":[{"id":"x","type":"noop"}]}`), http.StatusBadRequest, wire.CodeInvalidDefinition)
		is.Equal(p.Errors[0].Field, "concurrency.strategy")
	})
}

func TestQuotasAPI_PatchChangesOnlyTheQuotasGiven(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := quotaServer(t, `{"max_active_runs":3,"start_rate":5}`, "queue")
	var tn wire.Tenant
	decodeJSON(t, ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"quotas":{"max_active_runs":-1,"on_active_limit":"queue"}}}`,
		map[string]string{"Content-Type": typeJSON}), http.StatusOK, &tn)
	is.Equal(tn.Settings.Quotas, wire.TenantQuotas{MaxActiveRuns: -1, StartRate: 5, OnActiveLimit: "queue"}) // start_rate stays
	p := problemOf(t, ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"quotas":{"max_pending_runs":-5}}}`,
		map[string]string{"Content-Type": typeJSON}), http.StatusBadRequest, wire.CodeInvalidRequest)
	is.Equal(fieldOf(t, p), "settings.quotas.max_pending_runs")
	p = problemOf(t, ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"quotas":{"burst":5}}}`,
		map[string]string{"Content-Type": typeJSON}), http.StatusBadRequest, wire.CodeInvalidRequest)
	is.Equal(fieldOf(t, p), "settings.quotas.burst") // unknown fields are refused
	for _, v := range []string{"1.5", "1e3", "1e20"} {
		p = problemOf(t, ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"quotas":{"max_active_runs":`+v+`}}}`,
			map[string]string{"Content-Type": typeJSON}), http.StatusBadRequest, wire.CodeInvalidRequest)
		is.Equal(fieldOf(t, p), "settings.quotas.max_active_runs")
		is.Equal(p.Errors[0].Message, "must be an integer, not number "+v) // a count is a whole number
	}

	var page wire.AdminLogPage
	ts.getJSON(t, "/api/v1/admin/log?tenant=acme", &page)
	last := page.Entries[len(page.Entries)-1]
	var data map[string]json.RawMessage
	is.NoErr(json.Unmarshal(last.Data, &data))
	is.True(strings.Contains(string(data["previous_settings"]), `"max_active_runs":3`)) // the old value
	is.True(strings.Contains(string(data["settings"]), `"max_active_runs":-1`))         // and the new
}

// A tenant's retention_days is set and changed alone, and a value out of
// range is refused naming it.
func TestTenantsAPI_RetentionDays(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := quotaServer(t, `{"max_active_runs":3}`, "queue")
	hdr := map[string]string{"Content-Type": typeJSON}
	var tn wire.Tenant
	decodeJSON(t, ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"retention_days":90}}`, hdr), http.StatusOK, &tn)
	is.Equal(tn.Settings.RetentionDays, 90)       // set
	is.Equal(tn.Settings.Quotas.MaxActiveRuns, 3) // and the quotas stay
	for _, bad := range []string{"-2", "36501"} {
		p := problemOf(t, ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"retention_days":`+bad+`}}`, hdr),
			http.StatusBadRequest, wire.CodeInvalidRequest)
		is.Equal(fieldOf(t, p), "settings.retention_days") // named
	}
	ts.getJSON(t, "/api/v1/tenants/acme", &tn)
	is.Equal(tn.Settings.RetentionDays, 90) // nothing changed by the refusals
}
