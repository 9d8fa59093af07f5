package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// accessRule is who may call a route: anyone (public), any valid key, or
// the tenant roles listed, in their own tenant. The admin may call every
// route, in any tenant. A signed route (a webhook delivery) reads no key at
// all: its signature is the credential, which its handler checks, so every
// caller reaches it, whatever key it sends.
type accessRule struct {
	public, anyKey, signed bool
	roles                  []engine.Role
}

var (
	readers   = []engine.Role{engine.RoleOwner, engine.RoleOperator, engine.RoleViewer}
	operators = []engine.Role{engine.RoleOwner, engine.RoleOperator}
	workers   = []engine.Role{engine.RoleOwner, engine.RoleWorker}
	owners    = []engine.Role{engine.RoleOwner}
	admins    = []engine.Role{} // the admin alone
)

// accessRules is the role matrix of the API, written out route by route
// rather than derived from the role table, so that a route added without a
// line here fails TestAccess_RoleMatrix, and a change of the role table
// shows here.
var accessRules = map[string]accessRule{
	"GET /health":       {public: true},
	"GET /metrics":      {roles: admins},
	"GET /openapi.json": {anyKey: true},
	"GET /ui/*filepath": {public: true},

	"POST /v1/workflows":         {roles: operators},
	"GET /v1/workflows":          {roles: readers},
	"POST /v1/run":               {roles: operators},
	"GET /v1/runs/:id":           {roles: readers},
	"GET /v1/runs/:id/events":    {roles: readers},
	"GET /v1/runs/:id/stream":    {roles: readers},
	"POST /v1/runs/:id/pause":    {roles: operators},
	"POST /v1/runs/:id/resume":   {roles: operators},
	"POST /v1/runs/:id/cancel":   {roles: operators},
	"POST /v1/runs/:id/retry":    {roles: operators},
	"POST /v1/tasks/:id":         {roles: workers},
	"POST /v1/tasks/:id/:verb":   {roles: workers},
	"POST /api/v1/dag/validate":  {roles: readers},
	"GET /api/v1/tenants":        {roles: admins},
	"POST /api/v1/tenants":       {roles: admins},
	"GET /api/v1/admin/log":      {roles: admins},
	"POST /api/v1/policy/reload": {roles: admins},

	"GET /api/v1/tenants/:tenantId/run-counts": {roles: readers},
	"POST /api/v1/admin/backup":                {roles: admins},
	"GET /api/v1/admin/checkpoints":            {roles: admins},
	"POST /api/v1/admin/checkpoints":           {roles: admins},
	"GET /api/v1/admin/checkpoints/export":     {roles: admins},

	"POST /api/v1/tenants/:tenantId/workflows":                          {roles: operators},
	"GET /api/v1/tenants/:tenantId/workflows":                           {roles: readers},
	"GET /api/v1/tenants/:tenantId/workflows/:workflowId":               {roles: readers},
	"POST /api/v1/tenants/:tenantId/workflows/:workflowId/pause":        {roles: operators},
	"POST /api/v1/tenants/:tenantId/workflows/:workflowId/resume":       {roles: operators},
	"POST /api/v1/tenants/:tenantId/workflows/:workflowId/cancel":       {roles: operators},
	"POST /api/v1/tenants/:tenantId/workflows/:workflowId/retry":        {roles: operators},
	"GET /api/v1/tenants/:tenantId/workflows/:workflowId/metrics":       {roles: readers},
	"GET /api/v1/tenants/:tenantId/workflows/:workflowId/events":        {roles: readers},
	"GET /api/v1/tenants/:tenantId/events":                              {roles: readers},
	"GET /api/v1/tenants/:tenantId/workflows/:workflowId/stream":        {roles: readers},
	"GET /api/v1/tenants/:tenantId/stream":                              {roles: readers},
	"GET /api/v1/tenants/:tenantId/workflows/:workflowId/explain":       {roles: readers},
	"POST /api/v1/tenants/:tenantId/definitions":                        {roles: operators},
	"GET /api/v1/tenants/:tenantId/definitions":                         {roles: readers},
	"GET /api/v1/tenants/:tenantId/definitions/:name/versions/:version": {roles: readers},
	"GET /api/v1/tenants/:tenantId/definitions/:name/versions":          {roles: readers},
	"GET /api/v1/tenants/:tenantId/definitions/:name/diff":              {roles: readers},
	"GET /api/v1/tenants/:tenantId/definitions/:name/aliases":           {roles: readers},
	"GET /api/v1/tenants/:tenantId/definitions/:name/aliases/:alias":    {roles: readers},
	"PUT /api/v1/tenants/:tenantId/definitions/:name/aliases/:alias":    {roles: operators},
	"DELETE /api/v1/tenants/:tenantId/definitions/:name/aliases/:alias": {roles: operators},
	"POST /api/v1/tenants/:tenantId/tasks/:id":                          {roles: workers},
	"POST /api/v1/tenants/:tenantId/tasks/:id/:verb":                    {roles: workers},
	"GET /api/v1/tenants/:tenantId":                                     {roles: readers},
	"PATCH /api/v1/tenants/:tenantId":                                   {roles: admins},
	"POST /api/v1/tenants/:tenantId/suspend":                            {roles: admins},
	"POST /api/v1/tenants/:tenantId/resume":                             {roles: admins},
	"POST /api/v1/tenants/:tenantId/keys":                               {roles: owners},
	"GET /api/v1/tenants/:tenantId/keys":                                {roles: owners},
	"POST /api/v1/tenants/:tenantId/keys/:keyId/revoke":                 {roles: owners},
	"GET /api/v1/tenants/:tenantId/admin/log":                           {roles: owners},

	"POST /api/v1/tenants/:tenantId/schedules":                      {roles: operators},
	"GET /api/v1/tenants/:tenantId/schedules":                       {roles: readers},
	"GET /api/v1/tenants/:tenantId/schedules/:scheduleId":           {roles: readers},
	"PUT /api/v1/tenants/:tenantId/schedules/:scheduleId":           {roles: operators},
	"DELETE /api/v1/tenants/:tenantId/schedules/:scheduleId":        {roles: operators},
	"POST /api/v1/tenants/:tenantId/schedules/:scheduleId/pause":    {roles: operators},
	"POST /api/v1/tenants/:tenantId/schedules/:scheduleId/unpause":  {roles: operators},
	"POST /api/v1/tenants/:tenantId/schedules/:scheduleId/trigger":  {roles: operators},
	"POST /api/v1/tenants/:tenantId/schedules/:scheduleId/backfill": {roles: operators},
	"GET /api/v1/tenants/:tenantId/schedules/:scheduleId/events":    {roles: readers},
	"POST /api/v1/tenants/:tenantId/webhooks":                       {roles: operators},
	"GET /api/v1/tenants/:tenantId/webhooks":                        {roles: readers},
	"GET /api/v1/tenants/:tenantId/webhooks/:name":                  {roles: readers},
	"PATCH /api/v1/tenants/:tenantId/webhooks/:name":                {roles: operators},
	"DELETE /api/v1/tenants/:tenantId/webhooks/:name":               {roles: operators},
	"POST /api/v1/tenants/:tenantId/webhooks/:name/deliveries":      {signed: true},
	"POST /api/v1/tenants/:tenantId/triggers":                       {roles: operators},
	"GET /api/v1/tenants/:tenantId/triggers":                        {roles: readers},
	"GET /api/v1/tenants/:tenantId/triggers/:name":                  {roles: readers},
	"PATCH /api/v1/tenants/:tenantId/triggers/:name":                {roles: operators},
	"DELETE /api/v1/tenants/:tenantId/triggers/:name":               {roles: operators},
}

// outcome is what the matrix expects of one request.
type outcome int

const (
	served          outcome = iota // neither 401 nor 403: the handler ran (it may answer 400 or 404 for the dummy body and ids)
	unauthenticated                // 401 with WWW-Authenticate: Bearer
	forbidden                      // 403 forbidden naming the route's permission
)

func (o outcome) String() string { return [...]string{"served", "401", "403"}[o] }

// fillPath puts dummy values in a route's parameters: the tenant given, a
// lease id for a worker's report, "poll" for the poll route.
func fillPath(path, tenant string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		switch s {
		case ":tenantId":
			segs[i] = tenant
		case ":id":
			segs[i] = "r1"
			if i > 0 && segs[i-1] == "tasks" {
				segs[i] = "poll"
				if i+1 < len(segs) {
					segs[i] = "r1~t1~1"
				}
			}
		case ":verb":
			segs[i] = "complete"
		case ":workflowId":
			segs[i] = "r1"
		case ":name":
			segs[i] = "d1"
		case ":version":
			segs[i] = "1"
		case ":scheduleId":
			segs[i] = "s1"
		case "*filepath":
			segs[i] = "index.html"
		case ":keyId":
			segs[i] = "0123456789abcdef"
		}
	}
	return strings.Join(segs, "/")
}

// TestAccess_RoleMatrix walks every route of the route table × every role
// × its own tenant and another, and no key, a malformed, an unknown, a
// revoked and an expired key, in AUTH=required: each answer is what
// accessRules says, and a refused request writes nothing.
func TestAccess_RoleMatrix(t *testing.T) {
	t.Parallel()
	now := time.Now()
	later := now.Add(time.Hour)
	clock := now
	ts := newServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired,
		KeysNow: func() time.Time { return clock }})
	ts.tenant(t, "acme", engine.TenantSettings{})
	ts.tenant(t, "globex", engine.TenantSettings{})

	// Every tenant role's key in acme and in default (whose short /v1
	// routes are its own), and the admin's.
	keys := map[string]map[engine.Role]string{}
	for _, tenant := range []string{"acme", "default"} {
		keys[tenant] = map[engine.Role]string{}
		for _, role := range engine.Roles()[1:] {
			_, keys[tenant][role] = ts.newKey(t, engine.KeyRequest{TenantID: tenant, Role: role, Name: string(role)})
		}
	}
	_, adminKey := ts.newKey(t, engine.KeyRequest{Role: engine.RoleAdmin, Name: "root"})
	revoked, revokedKey := ts.newKey(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOwner, Name: "gone"})
	if _, err := ts.Admin.RevokeKey(context.Background(), engine.LocalAdmin(), "acme", revoked.ID); err != nil {
		t.Fatal(err)
	}
	_, expiredKey := ts.newKey(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOwner, Name: "old", ExpiresAt: later})
	clock = later.Add(time.Second) // the keys' clock: past the expiry, before no other key's

	badKeys := map[string]string{
		"no key":        "",
		"malformed key": "Basic YWRtaW46YWRtaW4=",
		"unknown key":   "Bearer orch_0123456789abcdef_" + strings.Repeat("ab", 32),
		"revoked key":   "Bearer " + revokedKey,
		"expired key":   "Bearer " + expiredKey,
	}

	check := func(t *testing.T, rt api.RouteRule, path, auth string, want outcome) {
		t.Helper()
		hdr := map[string]string{"Content-Type": typeJSON}
		if auth != "" {
			hdr["Authorization"] = auth
		}
		body := ""
		if rt.Method != http.MethodGet {
			body = "{}"
		}
		before := ts.writes(t)
		r := ts.request(t, rt.Method, path, body, hdr)
		refused := r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden
		switch {
		case want == served && refused:
			t.Errorf("%s %s: %d, want it served: %s", rt.Method, path, r.Status, r.Body)
		case want == unauthenticated && r.Status != http.StatusUnauthorized:
			t.Errorf("%s %s: %d, want 401: %s", rt.Method, path, r.Status, r.Body)
		case want == unauthenticated:
			if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: 401 with WWW-Authenticate %q, want Bearer", rt.Method, path, r.Header.Get("WWW-Authenticate"))
			}
			problemOf(t, r, http.StatusUnauthorized, wire.CodeUnauthenticated)
		case want == forbidden && r.Status != http.StatusForbidden:
			t.Errorf("%s %s: %d, want 403: %s", rt.Method, path, r.Status, r.Body)
		case want == forbidden:
			p := problemOf(t, r, http.StatusForbidden, wire.CodeForbidden)
			if p.Permission != string(rt.Perm) || !strings.Contains(p.Detail, string(rt.Perm)) {
				t.Errorf("%s %s: 403 naming %q (%s), want %s", rt.Method, path, p.Permission, p.Detail, rt.Perm)
			}
		}
		if want != served {
			is.New(t).Equal(ts.writes(t), before) // a refused request writes nothing
		}
		// A served suspension is undone, so that the next request finds
		// the tenant as the matrix assumes.
		for _, id := range []string{"acme", "globex", "default"} {
			if tn, err := ts.DB.GetTenant(context.Background(), id); err == nil && tn.State == engine.TenantSuspended {
				if _, err := ts.Admin.UpdateTenant(context.Background(), engine.LocalAdmin(), id, engine.TenantChange{State: engine.TenantActive}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	routes := api.RouteTable()
	seen := map[string]bool{}
	for _, rt := range routes {
		name := rt.Method + " " + rt.Path
		seen[name] = true
		rule, ok := accessRules[name]
		if !ok {
			t.Errorf("route %s has no rule in accessRules", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			// The tenant a key of each case belongs to, and the path it
			// calls: its own tenant and another one.
			type target struct{ name, keyTenant, path string }
			var targets []target
			switch {
			case strings.Contains(rt.Path, ":tenantId"):
				targets = []target{{"own tenant", "acme", fillPath(rt.Path, "acme")}, {"other tenant", "acme", fillPath(rt.Path, "globex")}}
			case strings.HasPrefix(rt.Path, "/v1/"):
				targets = []target{{"own tenant", "default", fillPath(rt.Path, "")}, {"other tenant", "acme", fillPath(rt.Path, "")}}
			default:
				targets = []target{{"no tenant", "acme", fillPath(rt.Path, "")}}
			}
			for _, tg := range targets {
				for _, role := range engine.Roles()[1:] {
					want := forbidden
					switch {
					case rule.public || rule.anyKey || rule.signed:
						want = served
					case slices.Contains(rule.roles, role) && tg.name != "other tenant":
						want = served
					}
					t.Run(fmt.Sprintf("%s %s is %s", role, tg.name, want), func(t *testing.T) {
						check(t, rt, tg.path, "Bearer "+keys[tg.keyTenant][role], want)
					})
				}
				t.Run("admin "+tg.name+" is served", func(t *testing.T) {
					check(t, rt, tg.path, "Bearer "+adminKey, served)
				})
			}
			path := targets[0].path
			for what, auth := range badKeys {
				want := unauthenticated
				if (rule.public && auth == "") || rule.signed {
					want = served
				}
				t.Run(fmt.Sprintf("%s is %s", what, want), func(t *testing.T) { check(t, rt, path, auth, want) })
			}
		})
	}
	for name := range accessRules {
		if !seen[name] {
			t.Errorf("accessRules has %s, which no route serves", name)
		}
	}
}

// TestAccess_OtherTenantsIDs: in its own tenant's path a key finds nothing
// of another tenant's: another tenant's run is 404 there, not 403.
func TestAccess_OtherTenantsIDs(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired})
	ts.tenant(t, "acme", engine.TenantSettings{})
	ts.tenant(t, "globex", engine.TenantSettings{})
	_, acme := ts.newKey(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOperator, Name: "ops"})
	_, globex := ts.newKey(t, engine.KeyRequest{TenantID: "globex", Role: engine.RoleOperator, Name: "ops"})
	r := ts.request(t, "POST", "/api/v1/tenants/globex/workflows", `{"definition":`+quickStartDef+`}`, bearer(globex))
	is.Equal(r.Status, http.StatusCreated) // globex starts a run
	var run engine.Run
	is.NoErr(json.Unmarshal(r.Body, &run))
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/tenants/acme/workflows/" + run.ID},
		{"GET", "/api/v1/tenants/acme/workflows/" + run.ID + "/events"},
		{"GET", "/api/v1/tenants/acme/workflows/" + run.ID + "/metrics"},
		{"POST", "/api/v1/tenants/acme/workflows/" + run.ID + "/cancel"},
		{"GET", "/api/v1/tenants/acme/definitions/wf1/versions/1"},
	} {
		problemOf(t, ts.request(t, c.method, c.path, "", bearer(acme)), http.StatusNotFound, wire.CodeNotFound) // not found, not forbidden
	}
	r = ts.request(t, "GET", "/api/v1/tenants/globex/workflows/"+run.ID, "", bearer(acme))
	p := problemOf(t, r, http.StatusForbidden, wire.CodeForbidden) // globex's path is forbidden
	is.True(strings.Contains(p.Detail, "belongs to tenant acme"))  // saying whose key it is
}
