package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// unauthorized checks a 401: a problem, with WWW-Authenticate: Bearer.
func unauthorized(t *testing.T, r *response) api.Problem {
	t.Helper()
	if got := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		t.Errorf("WWW-Authenticate %q, want Bearer", got)
	}
	return problemOf(t, r, http.StatusUnauthorized, wire.CodeUnauthenticated)
}

func TestKeyAuthenticator_LocalMode(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{Access: true}) // AUTH=local, the default
	_, viewer := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleViewer, Name: "v"})

	t.Run("a loopback caller without a key is the local admin", func(t *testing.T) {
		is := is.New(t)
		r := ts.get(t, "/api/v1/tenants")
		is.Equal(r.Status, http.StatusOK) // an admin-only route
		r = ts.postJSON(t, "/v1/workflows", quickStartDef)
		is.Equal(r.Status, http.StatusCreated) // and writes
	})

	t.Run("a forwarded loopback request is not local", func(t *testing.T) {
		for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"} {
			before := ts.writes(t)
			r := ts.request(t, "POST", "/v1/run", `{"workflow":"wf1"}`, map[string]string{h: "203.0.113.7", "Content-Type": typeJSON})
			p := unauthorized(t, r)
			is.New(t).True(strings.Contains(p.Detail, "needs an API key")) // it needs a key
			is.New(t).Equal(ts.writes(t), before)                          // and wrote nothing
		}
	})

	t.Run("a key sent is always checked, on loopback too", func(t *testing.T) {
		is := is.New(t)
		r := ts.request(t, "GET", "/health", "", map[string]string{"Authorization": "Bearer nope"})
		unauthorized(t, r) // even on the public route
		r = ts.request(t, "POST", "/v1/run", `{"workflow":"wf1"}`, bearer(viewer))
		p := problemOf(t, r, http.StatusForbidden, wire.CodeForbidden)
		is.Equal(p.Permission, string(api.PermRunsStart)) // the key's role decides, not the address
	})

	t.Run("a caller on another host needs a key", func(t *testing.T) {
		is := is.New(t)
		h := ts.Handler
		req := httptest.NewRequest("GET", "/v1/runs/r1", nil)
		req.RemoteAddr = "198.51.100.4:5555"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		is.Equal(rec.Code, http.StatusUnauthorized)                                // refused
		is.True(strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer")) // asking for a bearer token
		req.Header.Set("Authorization", "Bearer "+viewer)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		is.Equal(rec.Code, http.StatusNotFound) // with a key it is served (the run does not exist)
	})
}

func TestKeyAuthenticator_RequiredMode(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired})
	_, viewer := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleViewer, Name: "v"})
	is := is.New(t)
	is.Equal(ts.get(t, "/health").Status, http.StatusOK) // health needs no key
	for _, path := range []string{"/metrics", "/openapi.json", "/v1/runs/r1", "/api/v1/tenants"} {
		unauthorized(t, ts.get(t, path)) // everything else does, loopback or not
	}
	unauthorized(t, ts.get(t, "/api/v1/tenants/bad%20id/workflows")) // the key is asked for before anything else is read
	r := ts.request(t, "GET", "/openapi.json", "", bearer(viewer))
	is.Equal(r.Status, http.StatusOK) // any key reads the document
	r = ts.request(t, "GET", "/metrics", "", bearer(viewer))
	p := problemOf(t, r, http.StatusForbidden, wire.CodeForbidden)
	is.Equal(p.Permission, string(api.PermServerMetrics)) // the server's metrics are the admin's

	public := newServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired, MetricsPublic: true})
	is.Equal(public.get(t, "/metrics").Status, http.StatusOK) // unless METRICS_PUBLIC
	unauthorized(t, public.get(t, "/v1/runs/r1"))             // which opens nothing else
}

func TestKeyAuthenticator_BadCredentials(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired})
	_, op := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "op"})
	k, revoked := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "old"})
	if _, err := ts.Admin.RevokeKey(context.Background(), engine.LocalAdmin(), "default", k.ID); err != nil {
		t.Fatal(err)
	}
	_, wrongSecret, _ := strings.Cut(op[len(engine.KeyPrefix):], "_")
	id := op[len(engine.KeyPrefix) : len(op)-len(wrongSecret)-1]
	for _, c := range []struct{ name, auth, detail string }{
		{"a scheme other than Bearer", "Basic b3A6b3A=", "want Bearer"},
		{"Bearer without a token", "Bearer", "want Bearer"},
		{"a token with a space", "Bearer a b", "want Bearer"},
		{"a token without the prefix", "Bearer " + op[len(engine.KeyPrefix):], "malformed"},
		{"a token too short", "Bearer orch_abc_def", "malformed"},
		{"an unknown key", "Bearer orch_0123456789abcdef_" + strings.Repeat("cd", 32), "invalid API key"},
		{"a known id with a wrong secret", "Bearer " + engine.KeyPrefix + id + "_" + strings.Repeat("0", 64), "invalid API key"},
		{"a revoked key", "Bearer " + revoked, "revoked"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			before := ts.writes(t)
			r := ts.request(t, "POST", "/v1/run", `{"definition":`+quickStartDef+`}`, map[string]string{"Authorization": c.auth, "Content-Type": typeJSON})
			p := unauthorized(t, r)
			is.True(strings.Contains(p.Detail, c.detail)) // saying what is wrong
			is.True(!strings.Contains(p.Detail, op))      // never echoing a key
			is.Equal(ts.writes(t), before)                // and nothing is written
		})
	}
	t.Run("two Authorization headers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", ts.URL+"/v1/runs/r1", nil)
		req.Header.Add("Authorization", "Bearer "+op)
		req.Header.Add("Authorization", "Bearer "+op)
		res, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		is.New(t).Equal(res.StatusCode, http.StatusUnauthorized) // ambiguous: refused
	})
}

func TestIsLocal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		addr   string
		header string
		want   bool
	}{
		{"127.0.0.1:1234", "", true},
		{"[::1]:1234", "", true},
		{"127.0.0.1:1234", "X-Forwarded-For", false},
		{"127.0.0.1:1234", "Forwarded", false},
		{"10.0.0.1:1234", "", false},
		{"[2001:db8::1]:80", "", false},
		{"garbage", "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.addr
		if c.header != "" {
			r.Header.Set(c.header, "for=203.0.113.7")
		}
		if got := api.IsLocal(r); got != c.want {
			t.Errorf("%s with %q: local %v, want %v", c.addr, c.header, got, c.want)
		}
	}
}

func TestAccess_TenantChecks(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{Access: true})
	ts.tenant(t, "acme", engine.TenantSettings{})
	_, acmeOp := ts.newKey(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOperator, Name: "op"})
	body := `{"definition":` + quickStartDef + `}`

	t.Run("an unknown tenant is 404 tenant_not_found", func(t *testing.T) {
		is := is.New(t)
		before := ts.writes(t)
		p := problemOf(t, ts.postJSON(t, "/api/v1/tenants/nobody/workflows", body), http.StatusNotFound, wire.CodeTenantNotFound)
		is.True(strings.Contains(p.Detail, `tenant "nobody"`)) // naming what is missing
		problemOf(t, ts.get(t, "/api/v1/tenants/nobody"), http.StatusNotFound, wire.CodeTenantNotFound)
		is.Equal(ts.writes(t), before) // nothing written
	})

	r := ts.request(t, "POST", "/api/v1/tenants/acme/workflows", body, bearer(acmeOp))
	if r.Status != http.StatusCreated {
		t.Fatalf("start: %d %s", r.Status, r.Body)
	}
	var run engine.Run
	json.Unmarshal(r.Body, &run)

	t.Run("a suspended tenant's calls are 403 tenant_suspended and its runs keep their state", func(t *testing.T) {
		is := is.New(t)
		r := ts.postJSON(t, "/api/v1/tenants/acme/suspend", "")
		is.Equal(r.Status, http.StatusOK) // suspended by the admin
		before := ts.writes(t)
		problemOf(t, ts.request(t, "POST", "/api/v1/tenants/acme/workflows", body, bearer(acmeOp)), http.StatusForbidden, wire.CodeTenantSuspended)
		problemOf(t, ts.postJSON(t, "/api/v1/tenants/acme/workflows/"+run.ID+"/cancel", ""), http.StatusForbidden, wire.CodeTenantSuspended)
		problemOf(t, ts.get(t, "/api/v1/tenants/acme/workflows"), http.StatusForbidden, wire.CodeTenantSuspended)
		is.Equal(ts.writes(t), before) // nothing written
		got, _, err := ts.DB.LoadRun(context.Background(), "acme", run.ID)
		is.NoErr(err)
		is.Equal(got.State, engine.RunRunning) // its run is still running
		var tn wire.Tenant
		ts.getJSON(t, "/api/v1/tenants/acme", &tn)
		is.Equal(tn.State, wire.TenantSuspended)                                                                   // the admin still reads it
		is.Equal(ts.postJSON(t, "/api/v1/tenants/acme/resume", "").Status, http.StatusOK)                          // and resumes it
		is.Equal(ts.request(t, "GET", "/api/v1/tenants/acme/workflows", "", bearer(acmeOp)).Status, http.StatusOK) // its key works again at once
	})
}

func TestAccess_ActorIsTheCaller(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired})
	ctx := context.Background()
	opKey, op := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "ci"})
	wKey, worker := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleWorker, Name: "fleet", TaskTypes: []string{"http"}})
	_, viewer := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleViewer, Name: "v"})

	hdr := bearer(op)
	hdr["X-Actor"] = "alice"
	r := ts.request(t, "POST", "/v1/run", `{"definition":`+quickStartDef+`}`, hdr)
	if r.Status != http.StatusCreated {
		t.Fatalf("start: %d %s", r.Status, r.Body)
	}
	var run engine.Run
	json.Unmarshal(r.Body, &run)

	t.Run("an operator's key is the actor, its X-Actor beside it", func(t *testing.T) {
		is := is.New(t)
		events, err := ts.DB.RunEvents(ctx, "default", run.ID, 0, 0)
		is.NoErr(err)
		for _, e := range events {
			is.Equal(e.Actor, "key:"+opKey.ID+":ci") // the key, id and name
			is.Equal(e.OnBehalf, "alice")            // on behalf of the X-Actor
		}
		is.NoErr(engine.VerifyChain(events)) // and the chain covers both
	})

	t.Run("a role without actor.on_behalf may not name anyone", func(t *testing.T) {
		hdr := bearer(worker)
		hdr["X-Actor"] = "mallory"
		before := ts.writes(t)
		r := ts.request(t, "POST", "/v1/tasks/poll", `{"types":["http"],"worker_id":"w1"}`, hdr)
		p := problemOf(t, r, http.StatusForbidden, wire.CodeForbidden)
		is.New(t).Equal(p.Permission, engine.ActionActOnBehalf) // naming the permission
		is.New(t).Equal(ts.writes(t), before)                   // nothing leased
	})

	t.Run("a worker key leases only its task types", func(t *testing.T) {
		r := ts.request(t, "POST", "/v1/tasks/poll", `{"types":["python"],"worker_id":"w1"}`, bearer(worker))
		p := problemOf(t, r, http.StatusForbidden, wire.CodeForbidden)
		is.New(t).True(strings.Contains(p.Detail, "python")) // naming the type
	})

	var lease wire.Lease
	t.Run("a worker's events record its key and its worker id", func(t *testing.T) {
		is := is.New(t)
		decodeJSON(t, ts.request(t, "POST", "/v1/tasks/poll", `{"types":["http"],"worker_id":"w1"}`, bearer(worker)), http.StatusOK, &lease)
		r := ts.request(t, "POST", "/v1/tasks/"+lease.ID+"/complete", `{"lease_token":"`+lease.Token+`","output":{"ok":true}}`, bearer(worker))
		is.Equal(r.Status, http.StatusOK) // completed
		events, err := ts.DB.RunEvents(ctx, "default", run.ID, 0, 0)
		is.NoErr(err)
		n := 0
		for _, e := range events {
			if e.Type == engine.EventTaskStarted || e.Type == engine.EventTaskCompleted {
				n++
				is.Equal(e.Actor, "key:"+wKey.ID+":fleet") // the worker's key
				is.Equal(e.OnBehalf, "w1")                 // and the worker id
			}
		}
		is.Equal(n, 2)                       // started and completed
		is.NoErr(engine.VerifyChain(events)) // still chained
		page := eventsByQuery(t, ts, "/api/v1/tenants/default/events?on_behalf=w1", op)
		var types []engine.EventType
		for _, e := range page {
			types = append(types, e.Type)
		}
		// The audit query finds them by worker: with the task the
		// completion made ready, caused by the same call.
		is.Equal(types, []engine.EventType{engine.EventTaskStarted, engine.EventTaskCompleted, engine.EventTaskReady})
		page = eventsByQuery(t, ts, "/api/v1/tenants/default/events?actor=key:"+opKey.ID+":ci&on_behalf=alice", op)
		is.True(len(page) >= 2) // and by key and X-Actor together
		for _, e := range page {
			is.Equal(e.OnBehalf, "alice") // only those
		}
	})

	t.Run("a report on a lease of a type the key may not lease is refused", func(t *testing.T) {
		_, other := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleWorker, Name: "py", TaskTypes: []string{"python"}})
		r := ts.request(t, "POST", "/v1/tasks/"+lease.ID+"/heartbeat", `{"lease_token":"`+lease.Token+`"}`, bearer(other))
		p := problemOf(t, r, http.StatusForbidden, wire.CodeForbidden)
		is.New(t).True(strings.Contains(p.Detail, "http")) // the lease's type
	})

	t.Run("a viewer reads but does not start", func(t *testing.T) {
		is := is.New(t)
		is.Equal(ts.request(t, "GET", "/v1/runs/"+run.ID, "", bearer(viewer)).Status, http.StatusOK)
		p := problemOf(t, ts.request(t, "POST", "/v1/runs/"+run.ID+"/cancel", "", bearer(viewer)), http.StatusForbidden, wire.CodeForbidden)
		is.Equal(p.Permission, string(api.PermRunsControl))                            // naming the permission
		is.True(strings.Contains(p.Detail, "role viewer does not allow runs.control")) // and the role
	})
}

// eventsByQuery reads one page of a tenant's audit query with a key.
func eventsByQuery(t *testing.T, ts *testServer, path, key string) []engine.Event {
	t.Helper()
	var page struct{ Events []engine.Event }
	decodeJSON(t, ts.request(t, "GET", path, "", bearer(key)), http.StatusOK, &page)
	return page.Events
}
