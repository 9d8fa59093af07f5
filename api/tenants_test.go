package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/tasks"
)

func TestAdminAPI_Tenants(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{Access: true}) // the local admin calls

	t.Run("create, read, list", func(t *testing.T) {
		is := is.New(t)
		r := ts.postJSON(t, "/api/v1/tenants", `{"id":"acme","name":"Acme Corp"}`)
		var tn wire.Tenant
		decodeJSON(t, r, http.StatusCreated, &tn)
		is.Equal(r.Header.Get("Location"), "/api/v1/tenants/acme") // where it is
		is.Equal(tn.State, wire.TenantActive)                      // active
		is.Equal(tn.Settings.AllowExec, false)                     // exec off unless allowed
		is.Equal(tn.Version, int64(1))
		problemOf(t, ts.postJSON(t, "/api/v1/tenants", `{"id":"acme"}`), http.StatusConflict, wire.CodeConflict) // the id is taken
		var page wire.TenantsPage
		ts.getJSON(t, "/api/v1/tenants", &page)
		is.Equal(len(page.Tenants), 2) // default and acme
		is.Equal(page.Tenants[0].ID, "acme")
		is.Equal(page.Tenants[1].ID, "default")
	})

	t.Run("bad input names the field and writes nothing", func(t *testing.T) {
		for _, c := range []struct{ method, path, body, field string }{
			{"POST", "/api/v1/tenants", `{}`, "id"},
			{"POST", "/api/v1/tenants", `{"id":"no spaces"}`, "id"},
			{"POST", "/api/v1/tenants", `{"id":"x","color":"red"}`, "color"},
			{"POST", "/api/v1/tenants", `{"id":"x","name":"` + strings.Repeat("n", 300) + `"}`, "name"},
			{"PATCH", "/api/v1/tenants/acme", `{}`, "name"},
			{"PATCH", "/api/v1/tenants/acme", `{"settings":{"allow_exec":"yes"}}`, "settings.allow_exec"},
			{"PATCH", "/api/v1/tenants/acme", `{"name":"a\u0001b"}`, "name"},
			{"POST", "/api/v1/tenants/acme/suspend", `{"now":true}`, "now"},
		} {
			before := ts.writes(t)
			p := problemOf(t, ts.request(t, c.method, c.path, c.body, map[string]string{"Content-Type": typeJSON}), http.StatusBadRequest, wire.CodeInvalidRequest)
			if got := fieldOf(t, p); got != c.field {
				t.Errorf("%s %s %s: field %q, want %q", c.method, c.path, c.body, got, c.field)
			}
			is.New(t).Equal(ts.writes(t), before) // nothing written
		}
	})

	t.Run("update and suspend", func(t *testing.T) {
		is := is.New(t)
		var tn wire.Tenant
		decodeJSON(t, ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"allow_exec":true}}`, map[string]string{"Content-Type": typeJSON}), http.StatusOK, &tn)
		is.Equal(tn.Settings.AllowExec, true) // changed
		is.Equal(tn.Name, "Acme Corp")        // the name stays
		is.Equal(tn.Version, int64(2))
		decodeJSON(t, ts.postJSON(t, "/api/v1/tenants/acme/suspend", ""), http.StatusOK, &tn)
		is.Equal(tn.State, wire.TenantSuspended)
		p := problemOf(t, ts.postJSON(t, "/api/v1/tenants/acme/suspend", ""), http.StatusConflict, wire.CodeInvalidTransition)
		is.Equal(p.State, "suspended") // suspended already
		decodeJSON(t, ts.postJSON(t, "/api/v1/tenants/acme/resume", `{}`), http.StatusOK, &tn)
		is.Equal(tn.State, wire.TenantActive)
	})
}

func TestAdminAPI_Keys(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{Access: true})
	ts.tenant(t, "acme", engine.TenantSettings{})
	ts.tenant(t, "globex", engine.TenantSettings{})
	_, owner := ts.newKey(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOwner, Name: "boss"})

	var created wire.CreatedKey
	t.Run("an owner creates its tenant's keys; the key is shown once", func(t *testing.T) {
		is := is.New(t)
		r := ts.request(t, "POST", "/api/v1/tenants/acme/keys", `{"name":"ci","role":"operator"}`, bearer(owner))
		decodeJSON(t, r, http.StatusCreated, &created)
		is.True(strings.HasPrefix(created.Key, engine.KeyPrefix+created.ID+"_")) // orch_<id>_<secret>
		is.Equal(created.Role, wire.RoleOperator)
		is.Equal(created.TenantID, "acme")
		is.Equal(created.Status, "active")
		is.Equal(r.Header.Get("Cache-Control"), "no-store") // not kept by caches
		r = ts.request(t, "GET", "/api/v1/tenants/acme/keys", "", bearer(owner))
		var page wire.KeysPage
		decodeJSON(t, r, http.StatusOK, &page)
		is.Equal(len(page.Keys), 2) // the owner's and the new one
		_, secret, _ := strings.Cut(strings.TrimPrefix(created.Key, engine.KeyPrefix), "_")
		is.True(!strings.Contains(string(r.Body), secret))                                                  // never the secret
		is.True(!strings.Contains(string(r.Body), engine.HashSecret(secret)))                               // nor its hash
		is.Equal(ts.request(t, "GET", "/v1/runs/r1", "", bearer(created.Key)).Status, http.StatusForbidden) // an acme key on default's routes
		is.Equal(ts.request(t, "GET", "/api/v1/tenants/acme/workflows", "", bearer(created.Key)).Status, http.StatusOK)
	})

	t.Run("bad key requests name the field and write nothing", func(t *testing.T) {
		for _, c := range []struct{ body, field string }{
			{`{"name":"x","role":"boss"}`, "role"},
			{`{"name":"x","role":"admin"}`, "role"},
			{`{"name":"has space","role":"viewer"}`, "name"},
			{`{"name":"x","role":"viewer","task_types":["py"]}`, "task_types"},
			{`{"name":"x","role":"worker","task_types":["py","py"]}`, "task_types[1]"},
			{`{"name":"x","role":"viewer","expires_at":"2001-01-01T00:00:00Z"}`, "expires_at"},
			{`{"name":"x","role":"viewer","expires_at":"tomorrow"}`, "expires_at"},
			{`{"name":"x","role":"viewer","secret":"mine"}`, "secret"},
		} {
			before := ts.writes(t)
			p := problemOf(t, ts.request(t, "POST", "/api/v1/tenants/acme/keys", c.body, bearer(owner)), http.StatusBadRequest, wire.CodeInvalidRequest)
			if got := fieldOf(t, p); got != c.field {
				t.Errorf("%s: field %q, want %q", c.body, got, c.field)
			}
			is.New(t).Equal(ts.writes(t), before) // nothing written
		}
	})

	t.Run("another tenant's keys are refused", func(t *testing.T) {
		is := is.New(t)
		p := problemOf(t, ts.request(t, "POST", "/api/v1/tenants/globex/keys", `{"name":"x","role":"owner"}`, bearer(owner)), http.StatusForbidden, wire.CodeForbidden)
		is.Equal(p.Permission, engine.ActionKeysManage)
		g, _ := ts.newKey(t, engine.KeyRequest{TenantID: "globex", Role: engine.RoleViewer, Name: "g"})
		problemOf(t, ts.request(t, "POST", "/api/v1/tenants/acme/keys/"+g.ID+"/revoke", "", bearer(owner)), http.StatusNotFound, wire.CodeNotFound) // not in acme
	})

	t.Run("a revoked key is refused at once", func(t *testing.T) {
		is := is.New(t)
		var k wire.APIKey
		decodeJSON(t, ts.request(t, "POST", "/api/v1/tenants/acme/keys/"+created.ID+"/revoke", "", bearer(owner)), http.StatusOK, &k)
		is.Equal(k.Status, "revoked")
		p := unauthorized(t, ts.request(t, "GET", "/api/v1/tenants/acme/workflows", "", bearer(created.Key)))
		is.True(strings.Contains(p.Detail, "revoked"))
		problemOf(t, ts.request(t, "POST", "/api/v1/tenants/acme/keys/"+created.ID+"/revoke", "", bearer(owner)), http.StatusConflict, wire.CodeConflict) // once
	})

	t.Run("an expired key is refused", func(t *testing.T) {
		is := is.New(t)
		exp := time.Now().Add(50 * time.Millisecond)
		var k wire.CreatedKey
		decodeJSON(t, ts.request(t, "POST", "/api/v1/tenants/acme/keys", `{"name":"brief","role":"viewer","expires_at":"`+exp.UTC().Format(time.RFC3339Nano)+`"}`, bearer(owner)), http.StatusCreated, &k)
		for !time.Now().After(k.ExpiresAt) { // the expiry, not a guess: wait until it has passed
			time.Sleep(time.Millisecond)
		}
		p := unauthorized(t, ts.request(t, "GET", "/api/v1/tenants/acme/workflows", "", bearer(k.Key)))
		is.True(strings.Contains(p.Detail, "expired"))
	})

	t.Run("the admin log records every change, and verifies", func(t *testing.T) {
		is := is.New(t)
		var page wire.AdminLogPage
		ts.getJSON(t, "/api/v1/admin/log?verify=true", &page)
		is.True(page.Verified != nil && *page.Verified) // the chain holds
		var actions []string
		for _, e := range page.Entries {
			actions = append(actions, e.Action)
		}
		is.Equal(strings.Join(actions, " "), "tenant.created tenant.created key.created key.created key.created key.revoked key.created")
		is.Equal(page.Entries[3].Actor, "key:"+strings.Split(strings.TrimPrefix(owner, engine.KeyPrefix), "_")[0]+":boss") // the owner's key did it
		var mine wire.AdminLogPage
		decodeJSON(t, ts.request(t, "GET", "/api/v1/tenants/acme/admin/log", "", bearer(owner)), http.StatusOK, &mine)
		for _, e := range mine.Entries {
			is.Equal(e.TenantID, "acme") // the owner reads its tenant's entries only
		}
		is.Equal(len(mine.Entries), 5)
		decodeJSON(t, ts.request(t, "GET", "/api/v1/tenants/acme/admin/log?after=4&limit=1", "", bearer(owner)), http.StatusOK, &mine)
		is.Equal(len(mine.Entries), 1)                                                                                       // a page of one
		is.Equal(mine.NextAfter, mine.Entries[0].ID)                                                                         // and where the next begins
		problemOf(t, ts.request(t, "GET", "/api/v1/admin/log", "", bearer(owner)), http.StatusForbidden, wire.CodeForbidden) // the whole log is the admin's
		problemOf(t, ts.request(t, "POST", "/api/v1/tenants/acme/keys", `{"name":"y","role":"viewer"}`,
			map[string]string{"Content-Type": typeJSON, "X-Actor": "alice"}), http.StatusBadRequest, wire.CodeInvalidRequest) // administrative calls take no X-Actor
	})
}

// TestAdminAPI_AllowExec: exec tasks are for the tenants whose allow_exec
// an admin turned on, at registration and when an attempt would run.
func TestAdminAPI_AllowExec(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{Access: true, Handlers: map[string]engine.Handler{tasks.TypeExec: tasks.NewExec(tasks.ExecConfig{Enabled: true})}})
	ts.tenant(t, "acme", engine.TenantSettings{})
	def := `{"name":"sh","tasks":[{"id":"a","type":"noop"},{"id":"run","type":"exec","depends_on":["a"],"config":{"command":"true"}}]}`
	is := is.New(t)

	before := ts.writes(t)
	p := problemOf(t, ts.postJSON(t, "/api/v1/tenants/acme/definitions", def), http.StatusBadRequest, wire.CodeInvalidDefinition)
	is.Equal(len(p.Errors), 1)
	is.Equal(p.Errors[0].Task, "run")                                                                                                           // the exec task
	is.True(strings.Contains(p.Errors[0].Message, "allow_exec"))                                                                                // naming the setting
	problemOf(t, ts.postJSON(t, "/api/v1/tenants/acme/workflows", `{"definition":`+def+`}`), http.StatusBadRequest, wire.CodeInvalidDefinition) // inline too
	is.Equal(ts.writes(t), before)                                                                                                              // nothing stored
	is.Equal(ts.postJSON(t, "/v1/workflows", def).Status, http.StatusCreated)                                                                   // default allows exec (the migration says so)

	r := ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"allow_exec":true}}`, map[string]string{"Content-Type": typeJSON})
	is.Equal(r.Status, http.StatusOK)                                                            // allowed
	is.Equal(ts.postJSON(t, "/api/v1/tenants/acme/definitions", def).Status, http.StatusCreated) // now it registers

	// Withdrawn again, a run of the stored definition fails the task
	// rather than run the command.
	r = ts.request(t, "PATCH", "/api/v1/tenants/acme", `{"settings":{"allow_exec":false}}`, map[string]string{"Content-Type": typeJSON})
	is.Equal(r.Status, http.StatusOK)
	var run engine.Run
	decodeJSON(t, ts.postJSON(t, "/api/v1/tenants/acme/workflows", `{"workflow":"sh"}`), http.StatusCreated, &run)
	var got struct {
		State string
		Tasks []struct {
			ID    string `json:"id"`
			State string
			Error *wire.TaskError
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for got.State != "failed" && time.Now().Before(deadline) {
		json.Unmarshal(ts.get(t, "/api/v1/tenants/acme/workflows/"+run.ID).Body, &got)
		time.Sleep(pollInterval)
	}
	is.Equal(got.State, "failed")                                       // the run failed
	is.Equal(got.Tasks[1].Error.Code, engine.CodeTypeNotAllowed)        // at the exec task
	is.True(strings.Contains(got.Tasks[1].Error.Message, "allow_exec")) // saying why
}
