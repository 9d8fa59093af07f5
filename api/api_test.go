package api_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
	"github.com/orchestrator/orchestrator/store"
)

// waitTimeout bounds every wait on the API; pollInterval is how often it asks.
const (
	waitTimeout  = 10 * time.Second
	pollInterval = 5 * time.Millisecond
)

// Content types the API answers with.
const (
	typeJSON    = "application/json"
	typeProblem = "application/problem+json"
)

// quickStartDef is the definition of the README quick start: two tasks of a
// type no handler runs here, so they wait for an external worker.
const quickStartDef = `{"name":"wf1","tasks":[{"id":"t1","type":"http"},{"id":"t2","type":"http","depends_on":["t1"]}]}`

// testServer is the API on 127.0.0.1 over a real engine and SQLite file.
type testServer struct {
	URL    string
	DB     *store.DB
	Engine *engine.Engine
	Keys   *engine.Keys  // with serverOptions.Access
	Admin  *engine.Admin // with serverOptions.Access
	// Triggers keeps webhooks and stream triggers over the store.
	Triggers *engine.Triggers
	// Handler is the API itself, for requests that the real server on
	// 127.0.0.1 cannot send (from another host).
	Handler http.Handler
	client  *http.Client
}

// serverOptions change what newServer builds.
type serverOptions struct {
	Handlers      map[string]engine.Handler // in-process task types to register
	MaxBodyBytes  int64                     // 0: the API's default
	MaxPageBytes  int                       // 0: the API's default
	Logger        *slog.Logger              // nil: none
	Authenticator api.Authenticator         // nil: the API's default
	Authorizer    api.Authorizer            // nil: the API's default
	// Access wires API keys and the tenant registry over the store, as
	// main.go does: engine.Keys (clock KeysNow), engine.Admin, the
	// engine's TenantFunc.
	Access        bool
	KeysNow       func() time.Time
	AuthMode      api.AuthMode
	MetricsPublic bool
	Policy        *policy.Engine
	// Streams: the API's stream bounds and keepalive (0: its defaults).
	MaxStreams, MaxStreamsPerTenant int
	StreamKeepAlive                 time.Duration
	WriteTimeout                    time.Duration // the API's: streams get it anew for each write
	TenantReplayMax                 int           // 0: the API's bound
	// EngineNow is the engine's clock (nil: time.Now).
	EngineNow func() time.Time
	Overload  engine.OverloadConfig // the zero value: the engine's defaults
}

// newServer opens a store in t.TempDir(), starts an engine on it and serves
// the API; everything is closed at cleanup (server, engine, store). One
// metrics set is shared by store, engine and API, as main.go wires them.
func newServer(t *testing.T, opts serverOptions) *testServer {
	t.Helper()
	ctx := context.Background()
	set := metrics.NewSet()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "api.db"), store.Options{Metrics: set})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	var keys *engine.Keys
	var admin *engine.Admin
	cfg := engine.Config{Store: db, ExternalTypes: true, Metrics: set, NowFunc: opts.EngineNow, Overload: opts.Overload}
	if opts.Access {
		if keys, err = engine.NewKeys(engine.KeysConfig{Store: db, NowFunc: opts.KeysNow}); err != nil {
			t.Fatalf("new keys: %v", err)
		}
		t.Cleanup(func() { keys.Stop() })
		admin = &engine.Admin{Store: db, Keys: keys}
		cfg.TenantFunc = keys.Tenant
	}
	eng, err := engine.New(cfg)
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	for typ, h := range opts.Handlers {
		if err := eng.Register(typ, h); err != nil {
			t.Fatalf("register %s: %v", typ, err)
		}
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatalf("start engine: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Stop(ctx)
	})
	trig := &engine.Triggers{Store: db, Engine: eng}
	srv := &api.Server{Engine: eng, Metrics: set, MaxBodyBytes: opts.MaxBodyBytes, MaxPageBytes: opts.MaxPageBytes,
		Logger: opts.Logger, Authenticator: opts.Authenticator, Authorizer: opts.Authorizer,
		Keys: keys, Admin: admin, Triggers: trig, AuthMode: opts.AuthMode, MetricsPublic: opts.MetricsPublic, Policy: opts.Policy,
		MaxStreams: opts.MaxStreams, MaxStreamsPerTenant: opts.MaxStreamsPerTenant, StreamKeepAlive: opts.StreamKeepAlive,
		WriteTimeout: opts.WriteTimeout}
	if opts.TenantReplayMax > 0 {
		srv.SetTenantReplayMax(opts.TenantReplayMax)
	}
	h := srv.Handler()
	ts := serve(t, h, db, eng)
	ts.Keys, ts.Admin, ts.Handler, ts.Triggers = keys, admin, h, trig
	return ts
}

// tenant registers a tenant as the local admin.
func (ts *testServer) tenant(t *testing.T, id string, s engine.TenantSettings) {
	t.Helper()
	if _, err := ts.Admin.CreateTenant(context.Background(), engine.LocalAdmin(), id, "", s); err != nil {
		t.Fatalf("create tenant %s: %v", id, err)
	}
}

// newKey creates an API key as the local admin and returns the key and its
// token.
func (ts *testServer) newKey(t *testing.T, r engine.KeyRequest) (*engine.APIKey, string) {
	t.Helper()
	k, token, err := ts.Admin.CreateKey(context.Background(), engine.LocalAdmin(), r)
	if err != nil {
		t.Fatalf("create key %s: %v", r.Name, err)
	}
	return k, token
}

// bearer is the header of a request with an API key.
func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token, "Content-Type": typeJSON}
}

// serve serves h on 127.0.0.1 until cleanup.
func serve(t *testing.T, h http.Handler, db *store.DB, eng *engine.Engine) *testServer {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.Timeout = waitTimeout
	return &testServer{URL: srv.URL, DB: db, Engine: eng, client: client}
}

// response is an answer read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// send sends a request with the given body and Content-Type ("" for none).
func (ts *testServer) send(t *testing.T, method, path, contentType string, body io.Reader) *response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return &response{Status: res.StatusCode, Header: res.Header, Body: data}
}

// do sends body as a string with the given Content-Type.
func (ts *testServer) do(t *testing.T, method, path, contentType, body string) *response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return ts.send(t, method, path, contentType, r)
}

// postJSON posts body with Content-Type application/json.
func (ts *testServer) postJSON(t *testing.T, path, body string) *response {
	t.Helper()
	return ts.do(t, http.MethodPost, path, typeJSON, body)
}

// get sends a GET.
func (ts *testServer) get(t *testing.T, path string) *response {
	t.Helper()
	return ts.do(t, http.MethodGet, path, "", "")
}

// getJSON sends a GET that must answer 200 JSON and decodes it into v.
func (ts *testServer) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	decodeJSON(t, ts.get(t, path), http.StatusOK, v)
}

// decodeJSON checks that r is a JSON answer with the given status and decodes it into v.
func decodeJSON(t *testing.T, r *response, status int, v any) {
	t.Helper()
	is := is.New(t)
	is.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, r.Body)
	}
	is.Equal(r.Header.Get("Content-Type"), typeJSON) // answers are application/json
	is.NoErr(json.Unmarshal(r.Body, v))              // the body is JSON of the expected shape
}

// problemOf checks that r is a problem document with the given status and
// code and returns it.
func problemOf(t *testing.T, r *response, status int, code string) api.Problem {
	t.Helper()
	is := is.New(t)
	is.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, r.Body)
	}
	is.Equal(r.Header.Get("Content-Type"), typeProblem) // errors are application/problem+json
	var p api.Problem
	is.NoErr(json.Unmarshal(r.Body, &p))   // the body is a problem document
	is.Equal(p.Status, status)             // the document repeats the HTTP status
	is.Equal(p.Code, code)                 // the stable code clients switch on
	is.True(p.Type != "" && p.Title != "") // type and title are filled
	return p
}

// fieldOf returns the field the single entry of p.Errors names.
func fieldOf(t *testing.T, p api.Problem) string {
	t.Helper()
	if len(p.Errors) != 1 {
		t.Fatalf("problem %+v: want exactly one entry in errors", p)
	}
	return p.Errors[0].Field
}

// workflowJSON is a definition version as the API shows it.
type workflowJSON struct {
	Name       string          `json:"name"`
	Version    int             `json:"version"`
	Created    bool            `json:"created"`
	Hash       string          `json:"hash"`
	CreatedAt  time.Time       `json:"created_at"`
	Definition json.RawMessage `json:"definition"`
}

// runJSON is GET /v1/runs/{id}: the run, its progress and its tasks.
type runJSON struct {
	engine.Run
	Progress struct {
		Total   int            `json:"total"`
		Done    int            `json:"done"`
		Percent float64        `json:"percent"`
		States  map[string]int `json:"states"`
	} `json:"progress"`
	Tasks []engine.Task `json:"tasks"`
}

// task returns the task with the given id, or a zero Task.
func (r *runJSON) task(id string) engine.Task {
	for _, t := range r.Tasks {
		if t.TaskID == id {
			return t
		}
	}
	return engine.Task{}
}

// eventsJSON is a page of GET /v1/runs/{id}/events.
type eventsJSON struct {
	RunID     string         `json:"run_id"`
	Events    []engine.Event `json:"events"`
	NextAfter int64          `json:"next_after"`
}

// register posts a definition that must be accepted as a new version.
func (ts *testServer) register(t *testing.T, def string) workflowJSON {
	t.Helper()
	var wf workflowJSON
	decodeJSON(t, ts.postJSON(t, "/v1/workflows", def), http.StatusCreated, &wf)
	return wf
}

// startRun starts a run that must be accepted and returns it.
func (ts *testServer) startRun(t *testing.T, body string) runJSON {
	t.Helper()
	var run runJSON
	decodeJSON(t, ts.postJSON(t, "/v1/run", body), http.StatusCreated, &run)
	if run.ID == "" {
		t.Fatalf("POST /v1/run answered no id")
	}
	return run
}

// waitFor asks cond every pollInterval until it holds; it fails the test
// after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollInterval)
	}
}

// waitRun polls GET /v1/runs/{id} until cond holds, failing after waitTimeout.
func (ts *testServer) waitRun(t *testing.T, id, what string, cond func(*runJSON) bool) *runJSON {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		var run runJSON
		ts.getJSON(t, "/v1/runs/"+id, &run)
		if cond(&run) {
			return &run
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("run %s: waited %s for %s; last seen: state %s, tasks %+v", id, waitTimeout, what, run.State, run.Tasks)
		}
	}
}

// waitState waits until the run is in state s.
func (ts *testServer) waitState(t *testing.T, id string, s engine.RunState) *runJSON {
	t.Helper()
	return ts.waitRun(t, id, "state "+string(s), func(r *runJSON) bool { return r.State == s })
}

// waitTask waits until task of the run is in state s with the given attempts.
func (ts *testServer) waitTask(t *testing.T, id, task string, s engine.TaskState, attempts int) *runJSON {
	t.Helper()
	return ts.waitRun(t, id, fmt.Sprintf("task %s %s at attempt %d", task, s, attempts), func(r *runJSON) bool {
		tk := r.task(task)
		return tk.State == s && tk.Attempt == attempts
	})
}

// countRows counts the rows of a table straight from the SQLite file.
func (ts *testServer) countRows(t *testing.T, table string) int {
	t.Helper()
	switch table {
	case "runs", "tasks", "events", "workflows", "tenants", "api_keys", "admin_log":
	default:
		t.Fatalf("countRows: unexpected table %q", table)
	}
	db, err := sql.Open("sqlite", "file:"+ts.DB.Path()+"?_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open %s: %v", ts.DB.Path(), err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// writes counts every row a request could write (definitions, events, and
// the admin log, which every change of a tenant or key appends to), to tell
// that a refused request wrote nothing.
func (ts *testServer) writes(t *testing.T) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+ts.DB.Path()+"?_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open %s: %v", ts.DB.Path(), err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM workflows) + (SELECT count(*) FROM events) +
		(SELECT count(*) FROM admin_log) + (SELECT count(*) FROM triggers)`).Scan(&n); err != nil {
		t.Fatalf("count writes: %v", err)
	}
	return n
}

// asAny decodes JSON to compare documents whatever their spacing and key order.
func asAny(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

// metricValue returns the value of the series named exactly name in a
// Prometheus text exposition.
func metricValue(t *testing.T, text, name string) (float64, bool) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v, true
	}
	return 0, false
}

// scrape returns GET /metrics, which must answer 200 text.
func (ts *testServer) scrape(t *testing.T) string {
	t.Helper()
	is := is.New(t)
	is.Helper()
	r := ts.get(t, "/metrics")
	is.Equal(r.Status, http.StatusOK)                                      // metrics are served
	is.True(strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain")) // in the Prometheus text format
	return string(r.Body)
}

func TestAPI_QuickStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		contentType string
	}{
		{"JSON content type is accepted", "application/json"},
		{"curl's default form content type is accepted", "application/x-www-form-urlencoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			ts := newServer(t, serverOptions{})

			r := ts.do(t, http.MethodPost, "/v1/workflows", tc.contentType, quickStartDef)
			var wf workflowJSON
			decodeJSON(t, r, http.StatusCreated, &wf)
			is.Equal(wf.Name, "wf1")                                               // the definition's name
			is.Equal(wf.Version, 1)                                                // versions start at 1
			is.True(wf.Created)                                                    // a new version
			is.True(wf.Hash != "")                                                 // the hash of the definition
			is.Equal(r.Header.Get("Location"), "/v1/workflows?name=wf1&version=1") // where the version lives

			r = ts.do(t, http.MethodPost, "/v1/run", tc.contentType, `{"workflow":"wf1"}`)
			var run runJSON
			decodeJSON(t, r, http.StatusCreated, &run)
			is.True(run.ID != "")                                  // the run has an id
			is.Equal(r.Header.Get("Location"), "/v1/runs/"+run.ID) // where the run lives
			is.Equal(run.Workflow, "wf1")                          // of the registered workflow
			is.Equal(run.Version, 1)                               // pinned to the latest version
			is.Equal(run.TenantID, api.DefaultTenant)              // of the default tenant
			is.Equal(run.State, engine.RunRunning)                 // started at once

			var got runJSON
			ts.getJSON(t, r.Header.Get("Location"), &got)
			is.Equal(got.ID, run.ID)                           // Location resolves to the run
			is.Equal(got.State, engine.RunRunning)             // waiting for an external worker
			is.Equal(got.task("t1").State, engine.TaskReady)   // t1 waits, ready, for a worker
			is.Equal(got.task("t2").State, engine.TaskPending) // t2 waits for t1
			is.Equal(got.Progress.Total, 2)                    // two tasks
			is.Equal(got.Progress.Done, 0)                     // none done
			is.Equal(got.Progress.Percent, 0.0)                // 0 %
			is.Equal(got.Progress.States["ready"], 1)          // t1
			is.Equal(got.Progress.States["pending"], 1)        // t2
		})
	}
}

func TestAPI_RegisterWorkflow(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	const v1 = `{"name":"wf1","tasks":[{"id":"t1","type":"noop"},{"id":"t2","type":"noop","depends_on":["t1"]}]}`
	const v2 = `{"name":"wf1","tasks":[{"id":"t1","type":"noop"},{"id":"t2","type":"noop","depends_on":["t1"]},{"id":"t3","type":"noop","depends_on":["t2"]}]}`
	var first workflowJSON

	t.Run("a new definition is version 1", func(t *testing.T) {
		is := is.New(t)
		first = ts.register(t, v1)
		is.Equal(first.Version, 1) // the first version
		is.True(first.Created)     // stored now
	})

	t.Run("the identical definition again is unchanged", func(t *testing.T) {
		is := is.New(t)
		r := ts.postJSON(t, "/v1/workflows", v1)
		var wf workflowJSON
		decodeJSON(t, r, http.StatusOK, &wf)
		is.Equal(wf.Version, 1)                // same version
		is.True(!wf.Created)                   // nothing stored
		is.Equal(wf.Hash, first.Hash)          // same hash
		is.Equal(r.Header.Get("Location"), "") // no new resource
	})

	t.Run("the same definition reformatted is unchanged", func(t *testing.T) {
		is := is.New(t)
		reformatted := `{
			"tasks": [ {"type":"noop", "id":"t1"}, {"depends_on":["t1"], "type":"noop", "id":"t2"} ],
			"name": "wf1"
		}`
		var wf workflowJSON
		decodeJSON(t, ts.postJSON(t, "/v1/workflows", reformatted), http.StatusOK, &wf)
		is.Equal(wf.Version, 1) // key order and spacing do not make a version
		is.True(!wf.Created)    // nothing stored
	})

	t.Run("a changed definition is version 2", func(t *testing.T) {
		is := is.New(t)
		wf := ts.register(t, v2)
		is.Equal(wf.Version, 2)        // the next version
		is.True(wf.Hash != first.Hash) // another hash
	})

	t.Run("GET by name returns the latest version with its definition", func(t *testing.T) {
		is := is.New(t)
		var wf workflowJSON
		ts.getJSON(t, "/v1/workflows?name=wf1", &wf)
		is.Equal(wf.Name, "wf1")                                // the name asked for
		is.Equal(wf.Version, 2)                                 // the latest
		is.Equal(asAny(t, wf.Definition), asAny(t, []byte(v2))) // the definition as registered
	})

	t.Run("GET with version=1 returns version 1", func(t *testing.T) {
		is := is.New(t)
		var wf workflowJSON
		ts.getJSON(t, "/v1/workflows?name=wf1&version=1", &wf)
		is.Equal(wf.Version, 1)                                 // the version asked for
		is.Equal(wf.Hash, first.Hash)                           // its hash
		is.Equal(asAny(t, wf.Definition), asAny(t, []byte(v1))) // its definition
	})

	t.Run("GET without a name is 400 naming the field", func(t *testing.T) {
		is := is.New(t)
		p := problemOf(t, ts.get(t, "/v1/workflows"), http.StatusBadRequest, wire.CodeInvalidRequest)
		is.Equal(fieldOf(t, p), "name") // the missing parameter
	})

	for _, v := range []string{"abc", "0", "-1", "1.5"} {
		t.Run("GET with version="+v+" is 400", func(t *testing.T) {
			is := is.New(t)
			p := problemOf(t, ts.get(t, "/v1/workflows?name=wf1&version="+v), http.StatusBadRequest, wire.CodeInvalidRequest)
			is.Equal(fieldOf(t, p), "version") // the bad parameter
		})
	}

	t.Run("GET of an unknown name is 404", func(t *testing.T) {
		problemOf(t, ts.get(t, "/v1/workflows?name=nope"), http.StatusNotFound, wire.CodeNotFound)
	})

	t.Run("GET of an unknown version is 404", func(t *testing.T) {
		problemOf(t, ts.get(t, "/v1/workflows?name=wf1&version=3"), http.StatusNotFound, wire.CodeNotFound)
	})

	t.Run("a definition sent as text/plain is 415 and stores nothing", func(t *testing.T) {
		r := ts.do(t, http.MethodPost, "/v1/workflows", "text/plain", `{"name":"plain","tasks":[{"id":"a","type":"noop"}]}`)
		problemOf(t, r, http.StatusUnsupportedMediaType, wire.CodeUnsupportedMedia)
		problemOf(t, ts.get(t, "/v1/workflows?name=plain"), http.StatusNotFound, wire.CodeNotFound)
	})

	t.Run("malformed JSON is 400 and stores nothing", func(t *testing.T) {
		is := is.New(t)
		p := problemOf(t, ts.postJSON(t, "/v1/workflows", `{"name":"broken","tasks":[`), http.StatusBadRequest, wire.CodeInvalidJSON)
		is.True(strings.Contains(p.Detail, "JSON")) // the JSON is cut short
		problemOf(t, ts.get(t, "/v1/workflows?name=broken"), http.StatusNotFound, wire.CodeNotFound)
	})

	t.Run("a run can pin version 1", func(t *testing.T) {
		is := is.New(t)
		run := ts.startRun(t, `{"workflow":"wf1","version":1}`)
		is.Equal(run.Version, 1) // the version asked for, not the latest
		got := ts.waitState(t, run.ID, engine.RunCompleted)
		is.Equal(len(got.Tasks), 2) // the tasks of version 1
		latest := ts.startRun(t, `{"workflow":"wf1"}`)
		is.Equal(latest.Version, 2) // without a version: the latest
	})

	t.Run("a refused definition leaves the versions alone", func(t *testing.T) {
		is := is.New(t)
		is.Equal(ts.countRows(t, "workflows"), 2) // v1 and v2 only
	})
}

func TestAPI_RegisterWorkflow_Concurrent(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	var mu sync.Mutex
	statuses := map[int]int{}
	versions := map[int]int{}
	t.Run("registrations", func(t *testing.T) {
		for i := range 8 {
			t.Run(fmt.Sprintf("register %d", i), func(t *testing.T) {
				t.Parallel()
				r := ts.postJSON(t, "/v1/workflows", quickStartDef)
				var wf workflowJSON
				decodeJSON(t, r, r.Status, &wf)
				mu.Lock()
				statuses[r.Status]++
				versions[wf.Version]++
				mu.Unlock()
			})
		}
	})
	is.Equal(statuses[http.StatusCreated], 1) // exactly one registration stores it
	is.Equal(statuses[http.StatusOK], 7)      // the others find it unchanged
	is.Equal(versions[1], 8)                  // all see version 1
	is.Equal(ts.countRows(t, "workflows"), 1) // one row
}

func TestAPI_RegisterWorkflow_Validation(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})

	t.Run("every problem comes in one 400 answer", func(t *testing.T) {
		is := is.New(t)
		def := `{"name":"bad","tasks":[
			{"id":"a","type":"noop","depends_on":["c"]},
			{"id":"c","type":"noop","depends_on":["a"]},
			{"id":"b","type":"noop","depends_on":["missing"]},
			{"id":"d","type":"noop"},
			{"id":"d","type":"noop"},
			{"id":"bad id!","type":"noop"},
			{"id":"e","type":"noop","colour":"red"}
		]}`
		p := problemOf(t, ts.postJSON(t, "/v1/workflows", def), http.StatusBadRequest, wire.CodeInvalidDefinition)
		for _, e := range p.Errors {
			is.True(e.Field != "" && e.Message != "") // every entry names a field and says what is wrong
		}
		find := func(task, field, contains string) bool {
			for _, e := range p.Errors {
				if e.Task == task && e.Field == field && strings.Contains(e.Message, contains) {
					return true
				}
			}
			return false
		}
		is.True(find("b", "depends_on", `"missing"`))                    // the unknown dependency
		is.True(find("d", "id", "duplicate"))                            // the duplicate id
		is.True(find("tasks[5]", "id", "must match"))                    // the bad id, named by position
		is.True(find("e", "colour", "unknown field"))                    // the unknown field
		is.True(find("a", "depends_on", "cycle: a -> c -> a"))           // the cycle, spelled out
		is.Equal(len(p.Errors), 5)                                       // all five problems at once, each once
		is.True(strings.Contains(p.Detail, strconv.Itoa(len(p.Errors)))) // the detail counts them
	})

	t.Run("a refused definition stores nothing", func(t *testing.T) {
		is := is.New(t)
		problemOf(t, ts.get(t, "/v1/workflows?name=bad"), http.StatusNotFound, wire.CodeNotFound)
		is.Equal(ts.countRows(t, "workflows"), 0) // no version of anything
	})

	t.Run("one problem is one entry", func(t *testing.T) {
		is := is.New(t)
		p := problemOf(t, ts.postJSON(t, "/v1/workflows", `{"tasks":[{"id":"a","type":"noop"}]}`), http.StatusBadRequest, wire.CodeInvalidDefinition)
		is.Equal(len(p.Errors), 1)          // just the missing name
		is.Equal(p.Errors[0].Field, "name") // naming the field
		is.Equal(p.Errors[0].Task, "")      // of the definition as a whole
	})
}

func TestAPI_RunLifecycle(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	inputs := map[string]string{
		"a": `{"n":1,"html":"<b>&</b>"}`,
		"b": `[1,2,3]`,
		"c": `"last"`,
		"d": `{"side":true}`,
	}
	ts.register(t, `{"name":"chain","tasks":[
		{"id":"a","type":"noop","input":`+inputs["a"]+`},
		{"id":"b","type":"noop","depends_on":["a"],"input":`+inputs["b"]+`},
		{"id":"c","type":"noop","depends_on":["b"],"input":`+inputs["c"]+`},
		{"id":"d","type":"noop","depends_on":["a"],"input":`+inputs["d"]+`}
	]}`)
	run := ts.startRun(t, `{"workflow":"chain","input":{"order":42}}`)
	done := ts.waitState(t, run.ID, engine.RunCompleted)

	t.Run("the run shows its state and progress", func(t *testing.T) {
		is := is.New(t)
		is.Equal(done.ID, run.ID)                                        // the run asked for
		is.Equal(asAny(t, done.Input), asAny(t, []byte(`{"order":42}`))) // the input it was started with
		is.True(!done.StartedAt.IsZero() && !done.EndedAt.IsZero())      // started and ended
		is.True(!done.EndedAt.Before(done.StartedAt))                    // in that order
		is.Equal(done.Error, nil)                                        // no error
		is.Equal(done.Progress.Total, 4)                                 // four tasks
		is.Equal(done.Progress.Done, 4)                                  // all done
		is.Equal(done.Progress.Percent, 100.0)                           // 100 %
		is.Equal(len(done.Progress.States), len(engine.TaskStates()))    // every task state is counted
		is.Equal(done.Progress.States["completed"], 4)                   // all completed
		is.Equal(done.Progress.States["pending"], 0)                     // none left
	})

	t.Run("each noop task completed once with its input as output", func(t *testing.T) {
		is := is.New(t)
		is.Equal(len(done.Tasks), 4) // every task is listed
		for id, in := range inputs {
			tk := done.task(id)
			is.Equal(tk.TaskID, id)                                 // the task is listed
			is.Equal(tk.State, engine.TaskCompleted)                // completed
			is.Equal(tk.Attempt, 1)                                 // at the first attempt
			is.True(!tk.StartedAt.IsZero() && !tk.EndedAt.IsZero()) // started and ended
			is.True(!tk.EndedAt.Before(tk.StartedAt))               // in that order
			is.Equal(asAny(t, tk.Output), asAny(t, []byte(in)))     // noop echoes its input
		}
	})

	t.Run("the run output holds the outputs of the sink tasks", func(t *testing.T) {
		is := is.New(t)
		want := `{"c":` + inputs["c"] + `,"d":` + inputs["d"] + `}`
		is.Equal(asAny(t, done.Output), asAny(t, []byte(want))) // c and d have no dependents
	})

	var all eventsJSON
	t.Run("events are the whole history in order", func(t *testing.T) {
		is := is.New(t)
		ts.getJSON(t, "/v1/runs/"+run.ID+"/events", &all)
		is.Equal(all.RunID, run.ID)        // of the run asked for
		is.Equal(len(all.Events), 2+3*4+1) // created, started, ready/started/completed per task, completed
		for i, e := range all.Events {
			is.Equal(e.Seq, int64(i+1)) // seq 1..n without gaps
			is.Equal(e.RunID, run.ID)   // all of this run
		}
		is.Equal(all.Events[0].Type, engine.EventRunCreated)                   // first run.created
		is.Equal(all.Events[len(all.Events)-1].Type, engine.EventRunCompleted) // last run.completed
		is.Equal(all.Events[0].Actor, "local")                                 // the local admin created it
		is.Equal(all.NextAfter, int64(0))                                      // nothing more
		is.NoErr(engine.VerifyChain(all.Events))                               // the served history verifies as a hash chain
	})

	t.Run("pages of two walk every event", func(t *testing.T) {
		is := is.New(t)
		var seqs []int64
		after := int64(0)
		for pages := 0; ; pages++ {
			is.True(pages <= len(all.Events)) // the walk ends
			var page eventsJSON
			ts.getJSON(t, fmt.Sprintf("/v1/runs/%s/events?limit=2&after=%d", run.ID, after), &page)
			is.True(len(page.Events) <= 2) // at most the limit
			for _, e := range page.Events {
				seqs = append(seqs, e.Seq)
			}
			if page.NextAfter == 0 {
				break
			}
			is.Equal(page.NextAfter, page.Events[len(page.Events)-1].Seq) // next_after is the last seq of the page
			after = page.NextAfter
		}
		is.Equal(len(seqs), len(all.Events)) // every event once
		for i, s := range seqs {
			is.Equal(s, int64(i+1)) // in order
		}
	})

	t.Run("after the last event the page is empty", func(t *testing.T) {
		is := is.New(t)
		r := ts.get(t, fmt.Sprintf("/v1/runs/%s/events?after=%d", run.ID, len(all.Events)))
		var page eventsJSON
		decodeJSON(t, r, http.StatusOK, &page)
		is.Equal(len(page.Events), 0)                            // nothing left
		is.True(strings.Contains(string(r.Body), `"events":[]`)) // an empty array, not null
	})

	for _, q := range []struct{ query, field string }{
		{"after=-1", "after"}, {"after=x", "after"}, {"limit=0", "limit"}, {"limit=10001", "limit"}, {"limit=x", "limit"},
	} {
		t.Run("events with "+q.query+" is 400", func(t *testing.T) {
			is := is.New(t)
			p := problemOf(t, ts.get(t, "/v1/runs/"+run.ID+"/events?"+q.query), http.StatusBadRequest, wire.CodeInvalidRequest)
			is.Equal(fieldOf(t, p), q.field) // the bad parameter
		})
	}

	t.Run("an unknown run is 404", func(t *testing.T) {
		problemOf(t, ts.get(t, "/v1/runs/nope"), http.StatusNotFound, wire.CodeNotFound)
		problemOf(t, ts.get(t, "/v1/runs/nope/events"), http.StatusNotFound, wire.CodeNotFound)
	})
}

func TestAPI_ConcurrentRuns(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	ts.register(t, `{"name":"pair","tasks":[{"id":"a","type":"noop","input":1},{"id":"b","type":"noop","depends_on":["a"],"input":2}]}`)
	var mu sync.Mutex
	ids := map[string]bool{}
	t.Run("starts", func(t *testing.T) {
		for i := range 16 {
			t.Run(fmt.Sprintf("start %d", i), func(t *testing.T) {
				t.Parallel()
				run := ts.startRun(t, fmt.Sprintf(`{"workflow":"pair","input":%d}`, i))
				mu.Lock()
				ids[run.ID] = true
				mu.Unlock()
			})
		}
	})
	is.Equal(len(ids), 16) // every run got its own id
	for id := range ids {
		ts.waitState(t, id, engine.RunCompleted)
	}
	is.Equal(ts.countRows(t, "runs"), 16) // one row per run
}

// sleepDef is a run that stays active: a one-hour durable sleep, then a noop.
const sleepDef = `{"name":"sleepy","tasks":[{"id":"s","type":"sleep","config":{"duration":"1h"}},{"id":"n","type":"noop","depends_on":["s"]}]}`

func TestAPI_Control(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	ts.register(t, sleepDef)
	id := ts.startRun(t, `{"workflow":"sleepy"}`).ID
	ts.waitTask(t, id, "s", engine.TaskRunning, 1)

	// control posts a verb and returns the answer.
	control := func(t *testing.T, verb string) *response {
		t.Helper()
		return ts.postJSON(t, "/v1/runs/"+id+"/"+verb, "")
	}
	// controlOK posts a verb that must succeed and checks the state it answers.
	controlOK := func(t *testing.T, verb string, want engine.RunState) {
		t.Helper()
		is := is.New(t)
		var run engine.Run
		decodeJSON(t, control(t, verb), http.StatusOK, &run)
		is.Equal(run.ID, id)      // the run asked for
		is.Equal(run.State, want) // in its new state
		var got runJSON
		ts.getJSON(t, "/v1/runs/"+id, &got)
		is.Equal(got.State, want) // the new state is durable
	}
	// refused posts a verb the state forbids.
	refused := func(t *testing.T, verb string, state engine.RunState) {
		t.Helper()
		is := is.New(t)
		before := ts.countRows(t, "events")
		p := problemOf(t, control(t, verb), http.StatusConflict, wire.CodeInvalidTransition)
		is.Equal(p.State, string(state))            // the problem names the current state
		is.Equal(ts.countRows(t, "events"), before) // nothing is recorded
	}

	t.Run("pause answers 200 paused", func(t *testing.T) { controlOK(t, "pause", engine.RunPaused) })
	t.Run("pause again is 409 naming state paused", func(t *testing.T) { refused(t, "pause", engine.RunPaused) })
	t.Run("retry of a paused run is 409", func(t *testing.T) { refused(t, "retry", engine.RunPaused) })
	t.Run("resume answers running", func(t *testing.T) { controlOK(t, "resume", engine.RunRunning) })
	t.Run("resume again is 409 naming state running", func(t *testing.T) { refused(t, "resume", engine.RunRunning) })

	t.Run("a body other than an empty object is 400 and changes nothing", func(t *testing.T) {
		is := is.New(t)
		p := problemOf(t, ts.postJSON(t, "/v1/runs/"+id+"/cancel", `{"force":true}`), http.StatusBadRequest, wire.CodeInvalidRequest)
		is.Equal(fieldOf(t, p), "force") // the unknown field
		problemOf(t, ts.do(t, http.MethodPost, "/v1/runs/"+id+"/cancel", "text/plain", "{}"), http.StatusUnsupportedMediaType, wire.CodeUnsupportedMedia)
		var got runJSON
		ts.getJSON(t, "/v1/runs/"+id, &got)
		is.Equal(got.State, engine.RunRunning) // still running
	})

	t.Run("cancel with an empty object answers cancelled and cancels the tasks", func(t *testing.T) {
		is := is.New(t)
		var run engine.Run
		decodeJSON(t, ts.postJSON(t, "/v1/runs/"+id+"/cancel", `{}`), http.StatusOK, &run)
		is.Equal(run.State, engine.RunCancelled) // cancelled
		var got runJSON
		ts.getJSON(t, "/v1/runs/"+id, &got)
		is.Equal(got.State, engine.RunCancelled)            // durable
		is.True(!got.EndedAt.IsZero())                      // ended
		is.Equal(got.task("s").State, engine.TaskCancelled) // the running sleep is cancelled
		is.Equal(got.task("n").State, engine.TaskCancelled) // the pending noop too
		is.Equal(got.Progress.Done, 2)                      // both done
	})

	t.Run("cancel again is 409 naming state cancelled", func(t *testing.T) { refused(t, "cancel", engine.RunCancelled) })
	t.Run("pause of a cancelled run is 409", func(t *testing.T) { refused(t, "pause", engine.RunCancelled) })

	t.Run("retry runs it again and the sleep's attempts carry on", func(t *testing.T) {
		is := is.New(t)
		controlOK(t, "retry", engine.RunRunning)
		got := ts.waitTask(t, id, "s", engine.TaskRunning, 2)
		is.Equal(got.State, engine.RunRunning)            // running again
		is.True(got.EndedAt.IsZero())                     // no longer ended
		is.Equal(got.task("n").State, engine.TaskPending) // n waits for s again
		var ev eventsJSON
		ts.getJSON(t, "/v1/runs/"+id+"/events", &ev)
		retried := false
		for _, e := range ev.Events {
			if e.Type == engine.EventRunRetried {
				retried = true
				is.Equal(e.Actor, "local") // the local admin asked for it
			}
		}
		is.True(retried)                        // the retry is in the history
		is.NoErr(engine.VerifyChain(ev.Events)) // which still chains
	})

	t.Run("retry of a completed run is 409 naming state completed", func(t *testing.T) {
		is := is.New(t)
		ts.register(t, `{"name":"quick","tasks":[{"id":"a","type":"noop"}]}`)
		done := ts.startRun(t, `{"workflow":"quick"}`).ID
		ts.waitState(t, done, engine.RunCompleted)
		p := problemOf(t, ts.postJSON(t, "/v1/runs/"+done+"/retry", ""), http.StatusConflict, wire.CodeInvalidTransition)
		is.Equal(p.State, string(engine.RunCompleted)) // the current state
		var got runJSON
		ts.getJSON(t, "/v1/runs/"+done, &got)
		is.Equal(got.State, engine.RunCompleted) // still completed
	})

	for _, verb := range []string{"pause", "resume", "cancel", "retry"} {
		t.Run(verb+" of an unknown run is 404", func(t *testing.T) {
			t.Parallel()
			problemOf(t, ts.postJSON(t, "/v1/runs/no-such-run/"+verb, ""), http.StatusNotFound, wire.CodeNotFound)
		})
	}
}

func TestAPI_Control_Concurrent(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	ts.register(t, sleepDef)
	id := ts.startRun(t, `{"workflow":"sleepy"}`).ID
	ts.waitTask(t, id, "s", engine.TaskRunning, 1)

	// race posts verb n times at once and counts the answers by status and
	// by the state a 409 names.
	race := func(t *testing.T, verb string, n int) (map[int]int, map[string]int) {
		var mu sync.Mutex
		statuses, states := map[int]int{}, map[string]int{}
		t.Run(verb, func(t *testing.T) {
			for i := range n {
				t.Run(fmt.Sprintf("%s %d", verb, i), func(t *testing.T) {
					t.Parallel()
					r := ts.postJSON(t, "/v1/runs/"+id+"/"+verb, "")
					var p api.Problem
					if r.Status == http.StatusConflict {
						p = problemOf(t, r, http.StatusConflict, wire.CodeInvalidTransition)
					}
					mu.Lock()
					statuses[r.Status]++
					states[p.State]++
					mu.Unlock()
				})
			}
		})
		return statuses, states
	}
	// count counts the events of a type in the run's history.
	count := func(t *testing.T, typ engine.EventType) int {
		var ev eventsJSON
		ts.getJSON(t, "/v1/runs/"+id+"/events", &ev)
		n := 0
		for _, e := range ev.Events {
			if e.Type == typ {
				n++
			}
		}
		return n
	}

	t.Run("of 8 cancels at once one wins", func(t *testing.T) {
		is := is.New(t)
		statuses, states := race(t, "cancel", 8)
		is.Equal(statuses[http.StatusOK], 1)             // one cancel
		is.Equal(statuses[http.StatusConflict], 7)       // the others are refused
		is.Equal(states[string(engine.RunCancelled)], 7) // because the run is cancelled
		is.Equal(count(t, engine.EventRunCancelled), 1)  // one cancellation in the history
	})

	t.Run("of 8 retries at once one wins", func(t *testing.T) {
		is := is.New(t)
		statuses, states := race(t, "retry", 8)
		is.Equal(statuses[http.StatusOK], 1)           // one retry
		is.Equal(statuses[http.StatusConflict], 7)     // the others are refused
		is.Equal(states[string(engine.RunRunning)], 7) // because the run runs again
		is.Equal(count(t, engine.EventRunRetried), 1)  // one retry in the history
		got := ts.waitTask(t, id, "s", engine.TaskRunning, 2)
		is.Equal(got.State, engine.RunRunning) // and it runs
	})
}

func TestAPI_RunTimeout(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	ts.register(t, `{"name":"slow","timeout":"100ms","tasks":[{"id":"s","type":"sleep","config":{"duration":"1h"}}]}`)
	id := ts.startRun(t, `{"workflow":"slow"}`).ID

	got := ts.waitState(t, id, engine.RunTimedOut)
	is.True(got.Error != nil && got.Error.Code == "run_timed_out") // the run says why it ended
	is.Equal(got.task("s").State, engine.TaskCancelled)            // its sleep is cancelled
	is.True(!got.Deadline.IsZero())                                // the deadline is shown

	var run engine.Run
	decodeJSON(t, ts.postJSON(t, "/v1/runs/"+id+"/retry", ""), http.StatusOK, &run)
	is.Equal(run.State, engine.RunRunning)    // a timed-out run can be retried
	is.True(run.Deadline.After(got.Deadline)) // with a fresh deadline
	got = ts.waitRun(t, id, "timed out again", func(r *runJSON) bool {
		return r.State == engine.RunTimedOut && r.task("s").Attempt == 2
	})
	is.Equal(got.task("s").State, engine.TaskCancelled) // cancelled again at its second attempt
}

func TestAPI_PauseLetsRunningTasksFinish(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	ts := newServer(t, serverOptions{Handlers: map[string]engine.Handler{
		"gate": engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
			select {
			case <-gate:
				return json.RawMessage(`"opened"`), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}),
	}})
	t.Cleanup(open) // runs before the engine stops
	ts.register(t, `{"name":"gated","tasks":[{"id":"g","type":"gate"},{"id":"n","type":"noop","depends_on":["g"]}]}`)
	id := ts.startRun(t, `{"workflow":"gated"}`).ID
	ts.waitTask(t, id, "g", engine.TaskRunning, 1)

	var run engine.Run
	decodeJSON(t, ts.postJSON(t, "/v1/runs/"+id+"/pause", ""), http.StatusOK, &run)
	is.Equal(run.State, engine.RunPaused) // paused while g runs
	open()
	got := ts.waitTask(t, id, "g", engine.TaskCompleted, 1)
	is.Equal(got.State, engine.RunPaused)           // the run stays paused
	is.Equal(got.task("n").State, engine.TaskReady) // n may run but does not start
	is.Equal(got.task("n").Attempt, 0)              // not even once

	decodeJSON(t, ts.postJSON(t, "/v1/runs/"+id+"/resume", ""), http.StatusOK, &run)
	is.Equal(run.State, engine.RunRunning) // resumed
	got = ts.waitState(t, id, engine.RunCompleted)
	is.Equal(got.task("n").State, engine.TaskCompleted) // n ran after the resume
}

func TestAPI_StartRun_BadInput(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{MaxBodyBytes: 1024})
	ts.register(t, `{"name":"wf1","tasks":[{"id":"a","type":"noop"}]}`)
	big := `{"workflow":"wf1","input":"` + strings.Repeat("x", 4096) + `"}`

	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		code, field             string
	}{
		{"malformed JSON is 400 invalid_json", typeJSON, `{"workflow":`, 400, wire.CodeInvalidJSON, ""},
		{"an empty body is 400 invalid_json", typeJSON, ``, 400, wire.CodeInvalidJSON, ""},
		{"an array is 400 invalid_json", typeJSON, `[]`, 400, wire.CodeInvalidJSON, ""},
		{"a number for workflow is 400 naming workflow", typeJSON, `{"workflow":1}`, 400, wire.CodeInvalidRequest, "workflow"},
		{"an unknown field is 400 naming it", typeJSON, `{"workflow":"wf1","colour":"red"}`, 400, wire.CodeInvalidRequest, "colour"},
		{"a missing workflow is 400 naming workflow", typeJSON, `{"input":{}}`, 400, wire.CodeInvalidRequest, "workflow"},
		{"a negative version is 400 naming version", typeJSON, `{"workflow":"wf1","version":-1}`, 400, wire.CodeInvalidRequest, "version"},
		{"an unknown workflow is 404", typeJSON, `{"workflow":"nope"}`, 404, wire.CodeNotFound, ""},
		{"an unknown version is 404", typeJSON, `{"workflow":"wf1","version":7}`, 404, wire.CodeNotFound, ""},
		{"text/plain is 415", "text/plain", `{"workflow":"wf1"}`, 415, wire.CodeUnsupportedMedia, ""},
		{"a bad Content-Type is 415", "application/", `{"workflow":"wf1"}`, 415, wire.CodeUnsupportedMedia, ""},
		{"a body over the limit is 413", typeJSON, big, 413, wire.CodeBodyTooLarge, ""},
		{"trailing garbage is 400", typeJSON, `{"workflow":"wf1"} x`, 400, wire.CodeInvalidJSON, ""},
		{"a second object is 400", typeJSON, `{"workflow":"wf1"}{"workflow":"wf1"}`, 400, wire.CodeInvalidJSON, ""},
		{"a stray closing brace is 400", typeJSON, `{"workflow":"wf1"}}`, 400, wire.CodeInvalidJSON, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			p := problemOf(t, ts.do(t, http.MethodPost, "/v1/run", tc.contentType, tc.body), tc.status, tc.code)
			if tc.field != "" {
				is.Equal(fieldOf(t, p), tc.field) // the field at fault
			}
		})
	}

	t.Run("a chunked body over the limit is 413", func(t *testing.T) {
		// io.NopCloser hides the length, so the client sends it chunked.
		r := ts.send(t, http.MethodPost, "/v1/run", typeJSON, io.NopCloser(strings.NewReader(big)))
		problemOf(t, r, http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge)
	})

	t.Run("a definition over the limit is 413 and is not stored", func(t *testing.T) {
		def := `{"name":"huge","description":"` + strings.Repeat("x", 4096) + `","tasks":[{"id":"a","type":"noop"}]}`
		problemOf(t, ts.postJSON(t, "/v1/workflows", def), http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge)
		problemOf(t, ts.get(t, "/v1/workflows?name=huge"), http.StatusNotFound, wire.CodeNotFound)
	})

	t.Run("no refused request created a run", func(t *testing.T) {
		is := is.New(t)
		is.Equal(ts.countRows(t, "runs"), 0)   // no run rows
		is.Equal(ts.countRows(t, "events"), 0) // no events
	})

	// sized returns a valid start request of exactly n bytes.
	sized := func(n int) string {
		head, tail := `{"workflow":"wf1","input":"`, `"}`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}

	t.Run("a body of exactly the limit is accepted", func(t *testing.T) {
		ts.startRun(t, sized(1024))
	})

	t.Run("one byte over the limit is 413", func(t *testing.T) {
		problemOf(t, ts.postJSON(t, "/v1/run", sized(1025)), http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge)
	})
}

func TestAPI_EngineStopped(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	ts.register(t, sleepDef)
	id := ts.startRun(t, `{"workflow":"sleepy"}`).ID
	ts.waitTask(t, id, "s", engine.TaskRunning, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	is.NoErr(ts.Engine.Stop(ctx)) // the engine shuts down; the server still serves

	t.Run("starting a run is 503", func(t *testing.T) {
		problemOf(t, ts.postJSON(t, "/v1/run", `{"workflow":"sleepy"}`), http.StatusServiceUnavailable, wire.CodeUnavailable)
	})

	t.Run("a control verb is 503", func(t *testing.T) {
		problemOf(t, ts.postJSON(t, "/v1/runs/"+id+"/pause", ""), http.StatusServiceUnavailable, wire.CodeUnavailable)
	})

	t.Run("reads still work and nothing changed", func(t *testing.T) {
		is := is.New(t)
		var got runJSON
		ts.getJSON(t, "/v1/runs/"+id, &got)
		is.Equal(got.State, engine.RunRunning) // not paused
		is.Equal(ts.countRows(t, "runs"), 1)   // no second run
	})
}

func TestAPI_Routes(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})

	t.Run("an unknown route is a 404 problem", func(t *testing.T) {
		t.Parallel()
		problemOf(t, ts.get(t, "/v1/nope"), http.StatusNotFound, wire.CodeNotFound)
	})

	t.Run("DELETE /v1/run is a 405 problem", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		r := ts.do(t, http.MethodDelete, "/v1/run", "", "")
		problemOf(t, r, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)
		is.True(strings.Contains(r.Header.Get("Allow"), http.MethodPost)) // Allow names the method that works
	})

	t.Run("GET /v1/run is a 405 problem", func(t *testing.T) {
		t.Parallel()
		problemOf(t, ts.get(t, "/v1/run"), http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)
	})

	t.Run("problems tell browsers not to sniff", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		r := ts.get(t, "/v1/nope")
		is.Equal(r.Header.Get("X-Content-Type-Options"), "nosniff") // set on every problem
	})
}

func TestAPI_Health(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})

	t.Run("a reachable database is 200 ok", func(t *testing.T) {
		is := is.New(t)
		var h map[string]string
		ts.getJSON(t, "/health", &h)
		is.Equal(h["status"], "ok") // healthy
	})

	t.Run("a closed database is 503 and storage errors stay inside", func(t *testing.T) {
		is := is.New(t)
		is.NoErr(ts.DB.Close()) // the database goes away
		var h map[string]string
		decodeJSON(t, ts.get(t, "/health"), http.StatusServiceUnavailable, &h)
		is.Equal(h["status"], "unavailable") // unhealthy
		r := ts.get(t, "/v1/runs/some-run")
		p := problemOf(t, r, http.StatusInternalServerError, wire.CodeInternal)
		is.True(!strings.Contains(strings.ToLower(string(r.Body)), "sql")) // no storage text reaches the client
		is.True(!strings.Contains(p.Detail, "closed"))                     // nor the cause
	})
}

func TestAPI_Metrics(t *testing.T) {
	t.Parallel()

	t.Run("counters move when a run completes", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts := newServer(t, serverOptions{})
		ts.register(t, `{"name":"m","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
		id := ts.startRun(t, `{"workflow":"m"}`).ID
		ts.waitState(t, id, engine.RunCompleted)
		text := ts.scrape(t)
		events, ok := metricValue(t, text, "orchestrator_events_appended_total")
		is.True(ok)         // the store's event counter is exposed
		is.True(events > 0) // and counted the run's events
		runs, ok := metricValue(t, text, `orchestrator_runs_total{outcome="completed"}`)
		is.True(ok)         // runs are counted by outcome
		is.Equal(runs, 1.0) // one completed
		running, ok := metricValue(t, text, "orchestrator_tasks_running")
		is.True(ok)            // the running gauge is exposed
		is.Equal(running, 0.0) // nothing runs any more
		active, ok := metricValue(t, text, "orchestrator_runs_active")
		is.True(ok)           // the active gauge is exposed
		is.Equal(active, 0.0) // the run is over
	})

	// waitingRun starts the quick start's run, whose t1 waits, ready, for an
	// external worker.
	waitingRun := func(t *testing.T) (*testServer, string) {
		ts := newServer(t, serverOptions{})
		ts.register(t, quickStartDef)
		id := ts.startRun(t, `{"workflow":"wf1"}`).ID
		ts.waitTask(t, id, "t1", engine.TaskReady, 0)
		return ts, id
	}

	t.Run("the ready gauge counts a task waiting for an external worker once", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts, _ := waitingRun(t)
		ready, ok := metricValue(t, ts.scrape(t), "orchestrator_tasks_ready")
		is.True(ok)          // the ready gauge is exposed
		is.Equal(ready, 1.0) // t1 is the one ready task
	})

	t.Run("the ready gauge drops when the waiting run is cancelled", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts, id := waitingRun(t)
		var run engine.Run
		decodeJSON(t, ts.postJSON(t, "/v1/runs/"+id+"/cancel", ""), http.StatusOK, &run)
		is.Equal(run.State, engine.RunCancelled) // cancelled
		text := ts.scrape(t)
		active, _ := metricValue(t, text, "orchestrator_runs_active")
		is.Equal(active, 0.0) // the run is no longer active
		ready, _ := metricValue(t, text, "orchestrator_tasks_ready")
		is.Equal(ready, 0.0) // so none of its tasks is ready
	})
}

func TestAPI_TaskPanic(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{Handlers: map[string]engine.Handler{
		"boom": engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
			panic("boom")
		}),
	}})
	ts.register(t, `{"name":"boom","tasks":[{"id":"x","type":"boom"},{"id":"y","type":"noop","depends_on":["x"]}]}`)
	id := ts.startRun(t, `{"workflow":"boom"}`).ID

	got := ts.waitState(t, id, engine.RunFailed)
	x := got.task("x")
	is.Equal(x.State, engine.TaskFailed)                         // the panicking task failed
	is.Equal(x.Attempt, 1)                                       // after its one attempt
	is.True(x.Error != nil && x.Error.Code == "panic")           // recorded as a panic
	is.Equal(got.task("y").State, engine.TaskSkipped)            // its dependent is skipped
	is.True(got.Error != nil && got.Error.Code == "task_failed") // the run says why it failed

	var h map[string]string
	ts.getJSON(t, "/health", &h)
	is.Equal(h["status"], "ok") // the server still answers

	var run engine.Run
	decodeJSON(t, ts.postJSON(t, "/v1/runs/"+id+"/retry", ""), http.StatusOK, &run)
	is.Equal(run.State, engine.RunRunning) // a failed run can be retried
	got = ts.waitRun(t, id, "failed again at attempt 2", func(r *runJSON) bool {
		return r.State == engine.RunFailed && r.task("x").Attempt == 2
	})
	is.Equal(got.task("x").Error.Code, "panic") // and panics again
}

func TestAPI_HandlerPanic(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	// No HTTP request can make a handler of a complete Server panic, so this
	// server has no Engine: the handlers that use it dereference nil.
	base := newServer(t, serverOptions{})
	ts := serve(t, (&api.Server{}).Handler(), base.DB, nil)

	r := ts.postJSON(t, "/v1/workflows", quickStartDef)
	p := problemOf(t, r, http.StatusInternalServerError, wire.CodeInternal)
	is.True(!strings.Contains(string(r.Body), "nil pointer")) // the panic stays in the log
	is.True(p.Detail != "")                                   // a detail says where to look

	is.Equal(ts.get(t, "/openapi.json").Status, http.StatusOK) // the server keeps serving
	problemOf(t, ts.postJSON(t, "/v1/run", `{"workflow":"wf1"}`), http.StatusInternalServerError, wire.CodeInternal)
}
