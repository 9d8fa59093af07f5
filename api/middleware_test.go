package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
)

// logBuffer collects the JSON lines of a slog logger; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// logger logs everything down to debug into b.
func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitLine waits for a line whose message is msg and whose attributes
// include want, and returns it.
func (b *logBuffer) waitLine(t *testing.T, msg string, want map[string]any) map[string]any {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		b.mu.Lock()
		lines := strings.Split(b.buf.String(), "\n")
		b.mu.Unlock()
		for _, l := range lines {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) != nil || m["msg"] != msg {
				continue
			}
			ok := true
			for k, v := range want {
				ok = ok && m[k] == v
			}
			if ok {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q with %v in:\n%s", msg, want, strings.Join(lines, "\n"))
		}
		time.Sleep(pollInterval)
	}
}

// request sends a request with the given headers and reads the answer.
func (ts *testServer) request(t *testing.T, method, path, body string, header map[string]string) *response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") == "text/event-stream" {
		// An event stream does not end: its status and headers are the answer.
		return &response{Status: res.StatusCode, Header: res.Header}
	}
	var buf bytes.Buffer
	buf.ReadFrom(res.Body)
	return &response{Status: res.StatusCode, Header: res.Header, Body: buf.Bytes()}
}

func TestMiddleware_RequestID(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})

	t.Run("one is made up when the request has none", func(t *testing.T) {
		is := is.New(t)
		a := ts.get(t, "/health").Header.Get(api.HeaderRequestID)
		b := ts.get(t, "/health").Header.Get(api.HeaderRequestID)
		is.True(len(a) >= 16) // an id long enough to be unique
		is.True(a != b)       // and one per request
	})
	t.Run("the request's own is sent back", func(t *testing.T) {
		is := is.New(t)
		r := ts.request(t, "GET", "/health", "", map[string]string{api.HeaderRequestID: "trace-42"})
		is.Equal(r.Header.Get(api.HeaderRequestID), "trace-42") // echoed
	})
	t.Run("an unusable one is replaced", func(t *testing.T) {
		is := is.New(t)
		for _, bad := range []string{strings.Repeat("x", 129), "two words", "tab\there"} {
			got := ts.request(t, "GET", "/health", "", map[string]string{api.HeaderRequestID: bad}).Header.Get(api.HeaderRequestID)
			is.True(got != "" && got != bad) // a fresh id instead
		}
	})
	t.Run("problem answers carry it too", func(t *testing.T) {
		is := is.New(t)
		r := ts.request(t, "GET", "/no/such/route", "", map[string]string{api.HeaderRequestID: "trace-404"})
		problemOf(t, r, http.StatusNotFound, wire.CodeNotFound)
		is.Equal(r.Header.Get(api.HeaderRequestID), "trace-404") // on a 404 of the router
		r = ts.request(t, "GET", "/v1/runs/nope", "", map[string]string{api.HeaderRequestID: "trace-run"})
		problemOf(t, r, http.StatusNotFound, wire.CodeNotFound)
		is.Equal(r.Header.Get(api.HeaderRequestID), "trace-run") // and of a handler
	})
}

func TestMiddleware_RequestLog(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	ts := newServer(t, serverOptions{Logger: logs.logger()})
	r := ts.request(t, "GET", "/api/v1/tenants/acme/workflows", "", map[string]string{api.HeaderRequestID: "list-1"})
	if r.Status != http.StatusOK {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	line := logs.waitLine(t, "request", map[string]any{"request_id": "list-1"})
	is := is.New(t)
	is.Equal(line["method"], "GET")                          // what was asked
	is.Equal(line["path"], "/api/v1/tenants/acme/workflows") // where
	is.Equal(line["status"], float64(http.StatusOK))         // what it got
	is.Equal(line["tenant_id"], "acme")                      // in which tenant
	is.Equal(line["permission"], string(api.PermRunsRead))   // needing which permission
	is.Equal(line["actor"], "local")                         // by whom: the local admin
	ts.request(t, "POST", "/v1/runs/nope/pause", "", map[string]string{api.HeaderRequestID: "pause-1", "X-Actor": "alice"})
	line = logs.waitLine(t, "request", map[string]any{"request_id": "pause-1"})
	is.Equal(line["on_behalf"], "alice") // and for whom
	ts.request(t, "GET", "/api/v1/tenants/bad%20id/workflows", "", map[string]string{api.HeaderRequestID: "bad-tenant"})
	line = logs.waitLine(t, "request", map[string]any{"request_id": "bad-tenant"})
	is.Equal(line["status"], float64(http.StatusBadRequest)) // a refused request is logged with its status
}

// recordingAuthorizer records what it was asked and refuses one action in
// one tenant.
type recordingAuthorizer struct {
	mu     sync.Mutex
	asked  []authorized
	refuse api.Permission
	tenant string
}

type authorized struct {
	in      policy.Input
	fromCtx authorizedCtx // what the request's context says
}

type authorizedCtx struct {
	principal *engine.Principal
	tenant    string
	perm      api.Permission
	requestID string
}

func (a *recordingAuthorizer) Authorize(ctx context.Context, in *policy.Input) (*engine.PolicyDecision, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, authorized{*in, authorizedCtx{api.PrincipalFrom(ctx), api.TenantFrom(ctx),
		api.PermissionFrom(ctx), api.RequestIDFrom(ctx)}})
	if api.Permission(in.Action) == a.refuse && in.Tenant == a.tenant {
		return nil, &api.Problem{Problem: wire.Problem{Type: wire.ProblemType(wire.CodeForbidden), Title: wire.Title(wire.CodeForbidden),
			Status: http.StatusForbidden, Code: wire.CodeForbidden, Detail: "refused by the test's authorizer"}}
	}
	return &engine.PolicyDecision{ID: "d-" + decisionName(in), Allow: true, PolicyHash: "test"}, nil
}

// decisionName names a decision after what it was about.
func decisionName(in *policy.Input) string { return in.Action + "/" + in.Operation }

func (a *recordingAuthorizer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.asked)
}

func (a *recordingAuthorizer) last() authorized {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked[len(a.asked)-1]
}

func TestServer_Authorizer(t *testing.T) {
	t.Parallel()
	authz := &recordingAuthorizer{refuse: api.PermRunsStart, tenant: "locked"}
	ts := newServer(t, serverOptions{Authorizer: authz})
	local := engine.LocalAdmin()

	t.Run("it is asked on every route acting on a tenant, with its action, tenant, principal and resource", func(t *testing.T) {
		is := is.New(t)
		for _, c := range []struct {
			method, path, body string
			tenant             string
			perm               api.Permission
			op                 string
			res                policy.Resource
		}{
			{"GET", "/v1/runs/r1", "", api.DefaultTenant, api.PermRunsRead, "get", policy.Resource{RunID: "r1"}},
			{"POST", "/v1/runs/r1/cancel", "", api.DefaultTenant, api.PermRunsControl, "cancel", policy.Resource{RunID: "r1"}},
			{"GET", "/api/v1/tenants/acme/events", "", "acme", api.PermEventsRead, "audit", policy.Resource{}},
			{"POST", "/api/v1/tenants/acme/workflows/r1/retry", "", "acme", api.PermRunsControl, "retry", policy.Resource{RunID: "r1"}},
			{"POST", "/api/v1/tenants/acme/workflows", `{"workflow":"wf9","version":2,"input":{"k":1}}`, "acme", api.PermRunsStart, "start",
				policy.Resource{Workflow: "wf9", Version: 2, InputSize: 7}},
			{"POST", "/api/v1/tenants/acme/tasks/poll", `{"types":["py"],"worker_id":"w1"}`, "acme", api.PermWorkersPoll, "poll",
				policy.Resource{TaskType: "py"}},
			{"POST", "/api/v1/tenants/acme/definitions", `{"name":"d1","tasks":[]}`, "acme", api.PermDefinitionsWrite, "register",
				policy.Resource{Workflow: "d1"}},
			{"GET", "/api/v1/tenants/acme/definitions/d1/versions/3", "", "acme", api.PermDefinitionsRead, "get",
				policy.Resource{Workflow: "d1", Version: 3}},
		} {
			ts.request(t, c.method, c.path, c.body, map[string]string{api.HeaderRequestID: "authz-" + c.path, "Content-Type": typeJSON})
			got := authz.last()
			is.Equal(got.in.Action, string(c.perm))                                          // the route's permission
			is.Equal(got.in.Operation, c.op)                                                 // and operation
			is.Equal(got.in.Tenant, c.tenant)                                                // the request's tenant
			is.Equal(got.in.Principal, local)                                                // the local admin
			is.Equal(got.in.Resource, c.res)                                                 // what the route knows of the resource
			is.Equal(got.fromCtx, authorizedCtx{local, c.tenant, c.perm, "authz-" + c.path}) // all in the request's context
		}
	})

	t.Run("routes outside any tenant are not asked", func(t *testing.T) {
		is := is.New(t)
		before := authz.count()
		for _, path := range []string{"/health", "/openapi.json", "/metrics"} {
			is.Equal(ts.get(t, path).Status, http.StatusOK) // served
		}
		is.Equal(ts.postJSON(t, "/api/v1/dag/validate", quickStartDef).Status, http.StatusOK) // served
		is.Equal(authz.count(), before)                                                       // without asking
	})

	t.Run("its refusal is answered before anything is written", func(t *testing.T) {
		is := is.New(t)
		body := `{"definition":` + quickStartDef + `}`
		r := ts.request(t, "POST", "/api/v1/tenants/locked/workflows", body, map[string]string{"Content-Type": typeJSON})
		p := problemOf(t, r, http.StatusForbidden, wire.CodeForbidden)
		is.Equal(p.Detail, "refused by the test's authorizer") // the authorizer's answer
		is.Equal(ts.countRows(t, "workflows"), 0)              // the inline definition was not registered
		is.Equal(ts.countRows(t, "runs"), 0)                   // nor a run started
		r = ts.request(t, "POST", "/api/v1/tenants/open/workflows", body, map[string]string{"Content-Type": typeJSON})
		is.Equal(r.Status, http.StatusCreated) // another tenant may
		var run engine.Run
		is.NoErr(json.Unmarshal(r.Body, &run))
		events, err := ts.DB.RunEvents(context.Background(), "open", run.ID, 0, 0)
		is.NoErr(err)
		var d engine.EventData
		is.NoErr(json.Unmarshal(events[0].Data, &d))
		is.Equal(d.Policy, &engine.PolicyDecision{ID: "d-runs.start/start", Allow: true, PolicyHash: "test"}) // the decision is recorded in run.created
		is.True(!strings.Contains(string(events[1].Data), "policy"))                                          // and only there
	})
}

// keyAuthenticator names callers by an Authorization header, and refuses a
// request without one.
type keyAuthenticator struct{}

func (keyAuthenticator) Authenticate(r *http.Request) (*engine.Principal, error) {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, &api.Problem{Problem: wire.Problem{Type: wire.ProblemType(wire.CodeInvalidRequest),
			Title: wire.Title(wire.CodeInvalidRequest), Status: http.StatusBadRequest, Code: wire.CodeInvalidRequest,
			Detail: "Authorization: required"}}
	}
	return &engine.Principal{KeyID: key, Name: "ci", TenantID: api.DefaultTenant, Role: engine.RoleOperator}, nil
}

func TestServer_Authenticator(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{Authenticator: keyAuthenticator{}})
	hdr := map[string]string{"Content-Type": typeJSON, "Authorization": "Bearer 0123456789abcdef", "X-Actor": "mallory"}
	r := ts.request(t, "POST", "/v1/run", `{"definition":`+quickStartDef+`}`, hdr)
	is.Equal(r.Status, http.StatusCreated) // started with a key
	var run engine.Run
	is.NoErr(json.Unmarshal(r.Body, &run))
	r = ts.request(t, "POST", "/v1/runs/"+run.ID+"/pause", "", hdr)
	is.Equal(r.Status, http.StatusOK) // paused with it
	events, err := ts.DB.RunEvents(context.Background(), "default", run.ID, 0, 0)
	is.NoErr(err)
	actors := map[engine.EventType][2]string{}
	for _, e := range events {
		actors[e.Type] = [2]string{e.Actor, e.OnBehalf}
	}
	is.Equal(actors[engine.EventRunCreated], [2]string{"key:0123456789abcdef:ci", "mallory"}) // the principal is the actor, X-Actor beside it
	is.Equal(actors[engine.EventRunPaused], [2]string{"key:0123456789abcdef:ci", "mallory"})  // on every event the calls caused

	r = ts.request(t, "POST", "/v1/runs/"+run.ID+"/cancel", "", map[string]string{"X-Actor": "mallory"})
	p := problemOf(t, r, http.StatusBadRequest, wire.CodeInvalidRequest)
	is.Equal(p.Detail, "Authorization: required") // refused by the authenticator
	var got runJSON
	decodeJSON(t, ts.request(t, "GET", "/v1/runs/"+run.ID, "", hdr), http.StatusOK, &got)
	is.Equal(got.State, engine.RunPaused) // and nothing changed
}
