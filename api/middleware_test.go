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
	r := ts.request(t, "GET", "/api/v1/tenants/acme/workflows", "", map[string]string{api.HeaderRequestID: "list-1", "X-Actor": "alice"})
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
	is.Equal(line["actor"], "alice")                         // by whom
	ts.request(t, "GET", "/api/v1/tenants/bad%20id/workflows", "", map[string]string{api.HeaderRequestID: "bad-tenant"})
	line = logs.waitLine(t, "request", map[string]any{"request_id": "bad-tenant"})
	is.Equal(line["status"], float64(http.StatusBadRequest)) // a refused request is logged with its status
}

// recordingAuthorizer records what it was asked and refuses one permission
// in one tenant.
type recordingAuthorizer struct {
	mu     sync.Mutex
	asked  []authorized
	refuse api.Permission
	tenant string
}

type authorized struct {
	principal api.Principal
	tenant    string
	perm      api.Permission
	fromCtx   authorizedCtx // the same, read from the request's context
}

type authorizedCtx struct {
	principal api.Principal
	tenant    string
	perm      api.Permission
	requestID string
}

func (a *recordingAuthorizer) Authorize(ctx context.Context, p api.Principal, tenant string, perm api.Permission) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, authorized{p, tenant, perm, authorizedCtx{api.PrincipalFrom(ctx), api.TenantFrom(ctx),
		api.PermissionFrom(ctx), api.RequestIDFrom(ctx)}})
	if perm == a.refuse && tenant == a.tenant {
		return &api.Problem{Problem: wire.Problem{Type: wire.ProblemType(wire.CodeNotFound), Title: wire.Title(wire.CodeNotFound),
			Status: http.StatusNotFound, Code: wire.CodeNotFound, Detail: "refused by the test's authorizer"}}
	}
	return nil
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
	anon := api.Principal{ID: api.Anonymous, Actor: "api"}

	t.Run("it is asked with the route's permission, the tenant and the principal", func(t *testing.T) {
		is := is.New(t)
		for _, c := range []struct {
			method, path string
			tenant       string
			perm         api.Permission
		}{
			{"GET", "/health", "", api.PermHealthRead},
			{"GET", "/openapi.json", "", api.PermAPIDocRead},
			{"POST", "/api/v1/dag/validate", "", api.PermDefinitionsValidate},
			{"GET", "/v1/runs/r1", api.DefaultTenant, api.PermRunsRead},
			{"POST", "/v1/runs/r1/cancel", api.DefaultTenant, api.PermRunsCancel},
			{"GET", "/api/v1/tenants/acme/events", "acme", api.PermEventsRead},
			{"POST", "/api/v1/tenants/acme/workflows/r1/retry", "acme", api.PermRunsRetry},
			{"POST", "/api/v1/tenants/acme/tasks/poll", "acme", api.PermTasksPoll},
			{"POST", "/api/v1/tenants/acme/tasks/x~y~1/fail", "acme", api.PermTasksReport},
			{"POST", "/api/v1/tenants/acme/definitions", "acme", api.PermDefinitionsRegister},
		} {
			ts.request(t, c.method, c.path, `{}`, map[string]string{api.HeaderRequestID: "authz-" + c.path})
			got := authz.last()
			is.Equal(got.perm, c.perm)                                                      // the route's permission
			is.Equal(got.tenant, c.tenant)                                                  // the request's tenant
			is.Equal(got.principal, anon)                                                   // the anonymous local caller
			is.Equal(got.fromCtx, authorizedCtx{anon, c.tenant, c.perm, "authz-" + c.path}) // all in the request's context
		}
	})

	t.Run("its refusal is answered before the handler runs", func(t *testing.T) {
		is := is.New(t)
		body := `{"definition":` + quickStartDef + `}`
		r := ts.request(t, "POST", "/api/v1/tenants/locked/workflows", body, map[string]string{"Content-Type": typeJSON})
		p := problemOf(t, r, http.StatusNotFound, wire.CodeNotFound)
		is.Equal(p.Detail, "refused by the test's authorizer") // the authorizer's answer
		is.Equal(ts.countRows(t, "workflows"), 0)              // the inline definition was not registered
		is.Equal(ts.countRows(t, "runs"), 0)                   // nor a run started
		r = ts.request(t, "POST", "/api/v1/tenants/open/workflows", body, map[string]string{"Content-Type": typeJSON})
		is.Equal(r.Status, http.StatusCreated) // another tenant may
	})
}

// keyAuthenticator names callers by an Authorization header, as API keys
// will, and refuses a request without one.
type keyAuthenticator struct{}

func (keyAuthenticator) Authenticate(r *http.Request) (api.Principal, error) {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return api.Principal{}, &api.Problem{Problem: wire.Problem{Type: wire.ProblemType(wire.CodeInvalidRequest),
			Title: wire.Title(wire.CodeInvalidRequest), Status: http.StatusBadRequest, Code: wire.CodeInvalidRequest,
			Detail: "Authorization: required"}}
	}
	return api.Principal{ID: key, Actor: "key:" + key}, nil
}

func TestServer_Authenticator(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{Authenticator: keyAuthenticator{}})
	hdr := map[string]string{"Content-Type": typeJSON, "Authorization": "Bearer ci", "X-Actor": "mallory"}
	r := ts.request(t, "POST", "/v1/run", `{"definition":`+quickStartDef+`}`, hdr)
	is.Equal(r.Status, http.StatusCreated) // started with a key
	var run engine.Run
	is.NoErr(json.Unmarshal(r.Body, &run))
	r = ts.request(t, "POST", "/v1/runs/"+run.ID+"/pause", "", hdr)
	is.Equal(r.Status, http.StatusOK) // paused with it
	events, err := ts.DB.RunEvents(context.Background(), "default", run.ID, 0, 0)
	is.NoErr(err)
	actors := map[engine.EventType]string{}
	for _, e := range events {
		actors[e.Type] = e.Actor
	}
	is.Equal(actors[engine.EventRunCreated], "key:ci") // the principal's actor is recorded, not X-Actor
	is.Equal(actors[engine.EventRunPaused], "key:ci")  // on every event the calls caused

	r = ts.request(t, "POST", "/v1/runs/"+run.ID+"/cancel", "", map[string]string{"X-Actor": "mallory"})
	p := problemOf(t, r, http.StatusBadRequest, wire.CodeInvalidRequest)
	is.Equal(p.Detail, "Authorization: required") // refused by the authenticator
	var got runJSON
	decodeJSON(t, ts.request(t, "GET", "/v1/runs/"+run.ID, "", hdr), http.StatusOK, &got)
	is.Equal(got.State, engine.RunPaused) // and nothing changed
}
