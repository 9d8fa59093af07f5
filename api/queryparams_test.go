package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// paramsEnv is the API over a real engine and SQLite file in t.TempDir().
type paramsEnv struct {
	url string
	db  *store.DB
	eng *engine.Engine
}

func newParamsEnv(t *testing.T, now func() time.Time) *paramsEnv {
	t.Helper()
	ctx := context.Background()
	set := metrics.NewSet()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "params.db"), store.Options{Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	eng, err := engine.New(engine.Config{Store: db, ExternalTypes: true, Metrics: set, NowFunc: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Stop(ctx)
	})
	srv := httptest.NewServer((&api.Server{Engine: eng, Metrics: set}).Handler())
	t.Cleanup(srv.Close)
	return &paramsEnv{url: srv.URL, db: db, eng: eng}
}

func (e *paramsEnv) call(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, data
}

func (e *paramsEnv) countRuns(t *testing.T) int {
	t.Helper()
	runs, _, err := e.db.ListRuns(context.Background(), engine.RunFilter{TenantID: "acme", Limit: engine.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

// README: "Unknown query parameters are refused (400) rather than ignored"
// and "A refused request writes nothing". No POST route takes a query
// parameter: a misspelt one (dry_run) is refused before anything is done.
func TestAPI_PostRoutesRefuseUnknownQueryParameters(t *testing.T) {
	e := newParamsEnv(t, nil)
	def := `{"name":"wf","tasks":[{"id":"a","type":"python"}]}`
	if st, body := e.call(t, "POST", "/api/v1/tenants/acme/definitions", def); st != 201 {
		t.Fatalf("register: %d %s", st, body)
	}
	cases := []struct{ path, body string }{
		{"/api/v1/tenants/acme/workflows?dry_run=true", `{"workflow":"wf"}`},
		{"/api/v1/tenants/acme/definitions?validate_only=true", `{"name":"wf2","tasks":[{"id":"a","type":"python"}]}`},
	}
	for _, c := range cases {
		before := e.countRuns(t)
		defsBefore, _ := e.db.ListDefinitions(context.Background(), "acme")
		st, body := e.call(t, "POST", c.path, c.body)
		defsAfter, _ := e.db.ListDefinitions(context.Background(), "acme")
		if st != http.StatusBadRequest {
			_ = body
			t.Errorf("POST %s: status %d, want 400 naming the unknown parameter; runs %d -> %d, definitions %d -> %d",
				c.path, st, before, e.countRuns(t), len(defsBefore), len(defsAfter))
		}
	}
}

// The runs list filters on what started a run: origin_kind must be a kind,
// and origin_id needs it.
func TestAPI_ListRunsByOrigin(t *testing.T) {
	e := newParamsEnv(t, nil)
	if st, body := e.call(t, "POST", "/api/v1/tenants/acme/definitions", `{"name":"wf","tasks":[{"id":"a","type":"python"}]}`); st != 201 {
		t.Fatalf("register: %d %s", st, body)
	}
	ctx := context.Background()
	_, err := e.eng.StartRun(ctx, engine.StartRequest{TenantID: "acme", Workflow: "wf",
		Origin: &engine.Origin{Kind: engine.OriginSchedule, ID: "nightly", Slot: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.StartRun(ctx, engine.StartRequest{TenantID: "acme", Workflow: "wf"}); err != nil {
		t.Fatal(err)
	}
	st, body := e.call(t, "GET", "/api/v1/tenants/acme/workflows?origin_kind=schedule&origin_id=nightly", "")
	if st != 200 || strings.Count(string(body), `"id":"nightly"`) != 1 || !strings.Contains(string(body), `"slot":"2026-01-02T03:00:00Z"`) {
		t.Errorf("by origin: %d %s, want the schedule's run alone, with its slot", st, body)
	}
	for _, q := range []string{"origin_kind=cron", "origin_id=nightly"} {
		st, body := e.call(t, "GET", "/api/v1/tenants/acme/workflows?"+q, "")
		field := strings.SplitN(q, "=", 2)[0]
		if st != http.StatusBadRequest || !strings.Contains(string(body), field) {
			t.Errorf("?%s: %d %s, want 400 naming %s", q, st, body, field)
		}
	}
	_, err = e.eng.StartRun(ctx, engine.StartRequest{TenantID: "acme", Workflow: "wf", Origin: &engine.Origin{Kind: "cron", ID: "x"}})
	if err == nil || e.countRuns(t) != 2 {
		t.Errorf("an origin of no kind: %v, %d runs; want refused, nothing written", err, e.countRuns(t))
	}
}

// GET .../run-counts counts the tenant's runs by state, every state
// present, with the runs list's filters, and refuses a status or a bad
// filter naming it.
func TestAPI_RunCounts(t *testing.T) {
	e := newParamsEnv(t, nil)
	if st, body := e.call(t, "POST", "/api/v1/tenants/acme/definitions", `{"name":"wf","tasks":[{"id":"a","type":"python"}]}`); st != 201 {
		t.Fatalf("register: %d %s", st, body)
	}
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		req := engine.StartRequest{TenantID: "acme", Workflow: "wf"}
		if i == 0 {
			req.Origin = &engine.Origin{Kind: engine.OriginWebhook, ID: "gh"}
		}
		r, err := e.eng.StartRun(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	if st, body := e.call(t, "POST", "/api/v1/tenants/acme/workflows/"+ids[1]+"/cancel", ""); st != 200 {
		t.Fatalf("cancel: %d %s", st, body)
	}
	st, body := e.call(t, "GET", "/api/v1/tenants/acme/run-counts", "")
	if st != 200 || !strings.Contains(string(body), `"running":2`) || !strings.Contains(string(body), `"cancelled":1`) ||
		!strings.Contains(string(body), `"paused":0`) || !strings.Contains(string(body), `"total":3`) {
		t.Errorf("counts: %d %s, want running 2, cancelled 1, paused 0 (every state), total 3", st, body)
	}
	st, body = e.call(t, "GET", "/api/v1/tenants/acme/run-counts?origin_kind=webhook&origin_id=gh", "")
	if st != 200 || !strings.Contains(string(body), `"total":1`) {
		t.Errorf("counts of the webhook's runs: %d %s, want 1", st, body)
	}
	for _, q := range []string{"status=running", "origin_kind=cron", "created_after=yesterday"} {
		st, body := e.call(t, "GET", "/api/v1/tenants/acme/run-counts?"+q, "")
		if st != http.StatusBadRequest || !strings.Contains(string(body), strings.SplitN(q, "=", 2)[0]) {
			t.Errorf("?%s: %d %s, want 400 naming it", q, st, body)
		}
	}
}

// A query parameter given twice, or a query string that does not decode,
// is refused naming the parameter, like an unknown one: read loosely, the
// first status of status=failed&status=running, or no status at all from
// status=failed%, would answer another question than the one asked.
func TestAPI_RepeatedOrMalformedQueryParametersAreRefused(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	for _, c := range []struct{ path, field string }{
		{"/api/v1/tenants/default/workflows?status=failed&status=running", "status"},
		{"/api/v1/tenants/default/events?actor=a&type=run.paused&actor=b", "actor"},
		{"/api/v1/tenants/default/run-counts?workflow=a&workflow=b", "workflow"},
		{"/api/v1/tenants/default/workflows?status=failed%", "status"},
		{"/api/v1/tenants/default/events?limit=5&type=run.paused%2", "type"},
		{"/api/v1/tenants/default/workflows?status=failed;limit=5", "status"},
		{"/api/v1/tenants/default/schedules?limit=1&limit=2", "limit"},
	} {
		t.Run(c.path, func(t *testing.T) {
			p := problemOf(t, ts.get(t, c.path), http.StatusBadRequest, wire.CodeInvalidRequest)
			is.New(t).Equal(fieldOf(t, p), c.field) // names the parameter
		})
	}
	is.New(t).Equal(ts.get(t, "/api/v1/tenants/default/workflows?status=failed&limit=5").Status, http.StatusOK) // each once is fine
}
