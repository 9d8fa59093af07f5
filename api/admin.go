package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
)

// The admin log (GET /api/v1/admin/log, and a tenant's at
// /api/v1/tenants/{tenantId}/admin/log) and the policy's reload.

// maxAdminPage is the largest page of the admin log.
const maxAdminPage = 1000

// adminLog serves GET /api/v1/admin/log (admin keys): every entry, or with
// ?tenant= one tenant's, from ?after= on; ?verify=true also checks the hash
// chain of the whole log.
func (s *Server) adminLog(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	q := r.URL.Query()
	if err := onlyParams(q, "tenant", "after", "limit", "verify"); err != nil {
		return err
	}
	scope := engine.AllTenants
	if t := q.Get("tenant"); t != "" {
		if err := engine.ValidateTenantID(t); err != nil {
			return fieldProblem("tenant", err.Error())
		}
		scope = t
	}
	return s.adminPage(w, r, q, scope)
}

// tenantAdminLog serves GET /api/v1/tenants/{tenantId}/admin/log: the
// tenant's entries (its creation, changes, keys), for its owner and the
// admin.
func (s *Server) tenantAdminLog(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	q := r.URL.Query()
	if err := onlyParams(q, "after", "limit"); err != nil {
		return err
	}
	return s.adminPage(w, r, q, p.ByName("tenantId"))
}

func (s *Server) adminPage(w http.ResponseWriter, r *http.Request, q url.Values, scope string) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	after, err := intParam(q, "after", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := intParam(q, "limit", engine.DefaultAdminPage, 1, maxAdminPage)
	if err != nil {
		return err
	}
	verify := q.Get("verify")
	if verify != "" && verify != "true" && verify != "false" {
		return fieldProblem("verify", "must be true or false")
	}
	by := principalOf(r)
	entries, err := a.ListAdmin(r.Context(), by, engine.AdminFilter{TenantID: scope, After: int64(after), Limit: limit})
	if err != nil {
		return err
	}
	page := wire.AdminLogPage{Entries: make([]wire.AdminEvent, len(entries))}
	for i, e := range entries {
		page.Entries[i] = wire.AdminEvent{ID: e.ID, At: e.At, Actor: e.Actor, TenantID: e.TenantID, Action: string(e.Action),
			Data: rawOrNil(e.Data), Hash: e.Hash}
	}
	if len(entries) == limit {
		page.NextAfter = entries[len(entries)-1].ID
	}
	if verify == "true" {
		ok := true
		if _, err := a.Store.VerifyAdminLog(r.Context()); err != nil {
			ok, page.VerifyError = false, err.Error()
		}
		page.Verified = &ok
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// reloadPolicy serves POST /api/v1/policy/reload: the policy files are read
// and compiled again; 422 invalid_policy naming the file and line when they
// do not compile, the policy in force staying as it was.
func (s *Server) reloadPolicy(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	if err := emptyObject(body); err != nil {
		return err
	}
	info, err := s.ReloadPolicy(r.Context(), principalOf(r).Actor())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.PolicyInfo{Path: info.Path, Hash: info.Hash, Files: info.Files, LoadedAt: info.LoadedAt})
	return nil
}

// ReloadPolicy reads and compiles the policy files again and puts them in
// force, recording policy.loaded in the admin log with actor. A policy that
// does not compile is refused with a *Problem (422 invalid_policy, naming the
// file and line) and the one in force stays; a 404 on a server without a
// policy. main calls it on SIGHUP.
func (s *Server) ReloadPolicy(ctx context.Context, actor string) (policy.Info, error) {
	if s.Policy == nil {
		return policy.Info{}, newProblem(http.StatusNotFound, wire.CodeNotFound, "no policy is configured: start the server with POLICY_FILE")
	}
	info, err := s.Policy.Reload(ctx)
	if err != nil {
		return policy.Info{}, newProblem(http.StatusUnprocessableEntity, wire.CodeInvalidPolicy, err.Error()+"; the policy in force stays")
	}
	return info, RecordPolicyLoaded(ctx, s.Admin, actor, info)
}

// RecordPolicyLoaded records in the admin log that a policy was put in
// force: its path, hash and files. A nil admin records nothing.
func RecordPolicyLoaded(ctx context.Context, a *engine.Admin, actor string, info policy.Info) error {
	if a == nil {
		return nil
	}
	_, err := a.Record(ctx, actor, engine.AdminPolicyLoaded, "", map[string]any{"path": info.Path, "hash": info.Hash, "files": info.Files})
	return err
}
