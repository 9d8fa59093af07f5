package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// The admin API of tenants and their keys: /api/v1/tenants and
// /api/v1/tenants/{tenantId}/keys. engine.Admin checks the caller again,
// makes the change and records it in the admin log in the same write.

// admin returns the Admin the admin API acts through, or a 404 on a server
// without an access store.
func (s *Server) admin() (*engine.Admin, error) {
	if s.Admin == nil {
		return nil, newProblem(http.StatusNotFound, wire.CodeNotFound, "this server has no tenant registry")
	}
	return s.Admin, nil
}

// principalOf is the caller the middleware admitted; admin routes always
// have one.
func principalOf(r *http.Request) *engine.Principal {
	if p := PrincipalFrom(r.Context()); p != nil {
		return p
	}
	return &engine.Principal{}
}

func wireTenant(t *engine.Tenant) wire.Tenant {
	return wire.Tenant{ID: t.ID, Name: t.Name, State: wire.TenantState(t.State),
		Settings: wire.TenantSettings{AllowExec: t.Settings.AllowExec, Quotas: wire.TenantQuotas(t.Settings.Quotas),
			RetentionDays: t.Settings.RetentionDays},
		Version: t.Version, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

// changeQuotas applies the fields c gives to q.
func changeQuotas(q engine.TenantQuotas, c *wire.QuotasChange) engine.TenantQuotas {
	if c == nil {
		return q
	}
	if c.StartRate != nil {
		q.StartRate = *c.StartRate
	}
	if c.StartBurst != nil {
		q.StartBurst = *c.StartBurst
	}
	if c.MaxActiveRuns != nil {
		q.MaxActiveRuns = *c.MaxActiveRuns
	}
	if c.MaxPendingRuns != nil {
		q.MaxPendingRuns = *c.MaxPendingRuns
	}
	if c.MaxInputBytes != nil {
		q.MaxInputBytes = *c.MaxInputBytes
	}
	if c.OnActiveLimit != nil {
		q.OnActiveLimit = *c.OnActiveLimit
	}
	return q
}

func wireKey(k *engine.APIKey, now time.Time) wire.APIKey {
	return wire.APIKey{ID: k.ID, TenantID: k.TenantID, Name: k.Name, Role: wire.Role(k.Role), TaskTypes: k.TaskTypes,
		Status: k.Status(now), CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, LastUsedAt: k.LastUsedAt}
}

// tenantNotFound names the tenant in a 404.
func tenantNotFound(err error, id string) error {
	if errors.Is(err, engine.ErrTenantNotFound) {
		return newProblem(http.StatusNotFound, wire.CodeTenantNotFound, fmt.Sprintf("tenant %q is not registered", id))
	}
	return err
}

// listTenants serves GET /api/v1/tenants: every tenant, by id.
func (s *Server) listTenants(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	ts, err := a.ListTenants(r.Context(), principalOf(r))
	if err != nil {
		return err
	}
	page := wire.TenantsPage{Tenants: make([]wire.Tenant, len(ts))}
	for i := range ts {
		page.Tenants[i] = wireTenant(&ts[i])
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// createTenant serves POST /api/v1/tenants: 201 with the tenant, 409 when
// the id is taken.
func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req wire.CreateTenantRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if req.ID == "" {
		return fieldProblem("id", "required: the tenant's id, [A-Za-z0-9_.-]{1,64}")
	}
	var settings engine.TenantSettings
	if req.Settings != nil {
		settings = engine.TenantSettings{AllowExec: req.Settings.AllowExec, Quotas: engine.TenantQuotas(req.Settings.Quotas),
			RetentionDays: req.Settings.RetentionDays}
	}
	t, err := a.CreateTenant(r.Context(), principalOf(r), req.ID, req.Name, settings)
	if errors.Is(err, engine.ErrConflict) {
		return newProblem(http.StatusConflict, wire.CodeConflict, fmt.Sprintf("tenant %q exists already", req.ID))
	}
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/tenants/"+t.ID)
	writeJSON(w, http.StatusCreated, wireTenant(t))
	return nil
}

// getTenant serves GET /api/v1/tenants/{tenantId}.
func (s *Server) getTenant(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	id := p.ByName("tenantId")
	t, err := a.GetTenant(r.Context(), principalOf(r), id)
	if err != nil {
		return tenantNotFound(err, id)
	}
	writeJSON(w, http.StatusOK, wireTenant(t))
	return nil
}

// updateTenant serves PATCH /api/v1/tenants/{tenantId}: the name and the
// settings given change, the others stay.
func (s *Server) updateTenant(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req wire.UpdateTenantRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	settingsChange := req.Settings != nil && (req.Settings.AllowExec != nil || req.Settings.Quotas != nil ||
		req.Settings.RetentionDays != nil)
	if req.Name == nil && !settingsChange {
		return fieldProblem("name", "give name or settings: nothing to change")
	}
	id := p.ByName("tenantId")
	by := principalOf(r)
	c := engine.TenantChange{Name: req.Name}
	if settingsChange {
		cur, err := a.GetTenant(r.Context(), by, id)
		if err != nil {
			return tenantNotFound(err, id)
		}
		settings := cur.Settings
		if req.Settings.AllowExec != nil {
			settings.AllowExec = *req.Settings.AllowExec
		}
		settings.Quotas = changeQuotas(settings.Quotas, req.Settings.Quotas)
		if req.Settings.RetentionDays != nil {
			settings.RetentionDays = *req.Settings.RetentionDays
		}
		c.Settings = &settings
	}
	t, err := a.UpdateTenant(r.Context(), by, id, c)
	if err != nil {
		return tenantNotFound(err, id)
	}
	writeJSON(w, http.StatusOK, wireTenant(t))
	return nil
}

// setTenantState serves POST .../suspend and .../resume: 409
// invalid_transition when the tenant is in that state already. A suspended
// tenant's calls are refused from then on (403 tenant_suspended); its runs
// keep the state they are in.
func (s *Server) setTenantState(state engine.TenantState) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
		a, err := s.admin()
		if err != nil {
			return err
		}
		body, err := s.readBody(r)
		if err != nil {
			return err
		}
		if err := emptyObject(body); err != nil {
			return err
		}
		id := p.ByName("tenantId")
		t, err := a.UpdateTenant(r.Context(), principalOf(r), id, engine.TenantChange{State: state})
		if err != nil {
			return tenantNotFound(err, id)
		}
		writeJSON(w, http.StatusOK, wireTenant(t))
		return nil
	}
}

// emptyObject accepts no body or {}: a call that takes nothing.
func emptyObject(body []byte) error {
	if len(body) == 0 {
		return nil
	}
	var req struct{}
	return decodeStrict(body, &req)
}

// createKey serves POST /api/v1/tenants/{tenantId}/keys: 201 with the key,
// shown this once (only a hash of its secret is stored).
func (s *Server) createKey(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	// wire.CreateKeyRequest, with expires_at read here, so that a time
	// that does not parse is refused naming the field.
	var req struct {
		Name      string   `json:"name"`
		Role      string   `json:"role"`
		TaskTypes []string `json:"task_types,omitempty"`
		ExpiresAt string   `json:"expires_at,omitempty"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	kr := engine.KeyRequest{TenantID: p.ByName("tenantId"), Role: engine.Role(req.Role), Name: req.Name, TaskTypes: req.TaskTypes}
	if req.ExpiresAt != "" {
		if kr.ExpiresAt, err = time.Parse(time.RFC3339Nano, req.ExpiresAt); err != nil {
			return fieldProblem("expires_at", fmt.Sprintf("must be an RFC 3339 time like 2026-01-02T15:04:05Z, not %q", req.ExpiresAt))
		}
	}
	if kr.Role == engine.RoleAdmin {
		return fieldProblem("role", "admin keys belong to no tenant: create them with orchestrator keys create --role admin")
	}
	k, token, err := a.CreateKey(r.Context(), principalOf(r), kr)
	if err != nil {
		return tenantNotFound(err, kr.TenantID)
	}
	w.Header().Set("Cache-Control", "no-store") // the answer holds a secret
	writeJSON(w, http.StatusCreated, wire.CreatedKey{Key: token, APIKey: wireKey(k, time.Now())})
	return nil
}

// listKeys serves GET /api/v1/tenants/{tenantId}/keys, oldest first, never
// with a secret.
func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	keys, err := a.ListKeys(r.Context(), principalOf(r), p.ByName("tenantId"))
	if err != nil {
		return err
	}
	now := time.Now()
	page := wire.KeysPage{Keys: make([]wire.APIKey, len(keys))}
	for i := range keys {
		page.Keys[i] = wireKey(&keys[i], now)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// revokeKey serves POST /api/v1/tenants/{tenantId}/keys/{keyId}/revoke: the
// key is refused from then on (on other servers of the same database within
// their key cache time). Another tenant's key is not found; 409 when it is
// revoked already.
func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	if err := emptyObject(body); err != nil {
		return err
	}
	id := p.ByName("keyId")
	k, err := a.RevokeKey(r.Context(), principalOf(r), p.ByName("tenantId"), id)
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("key %q does not exist in this tenant", id))
	case errors.Is(err, engine.ErrConflict):
		return newProblem(http.StatusConflict, wire.CodeConflict, fmt.Sprintf("key %q is revoked already", id))
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, wireKey(k, time.Now()))
	return nil
}

// rawOrNil is data as an answer carries it: absent when empty.
func rawOrNil(data json.RawMessage) json.RawMessage {
	if len(data) == 0 {
		return nil
	}
	return data
}

// adminRoutes are the admin API's: tenants, their keys, the admin log and
// the policy.
func (s *Server) adminRoutes() []route {
	return []route{
		{"GET", "/api/v1/tenants", PermTenantsManage, "list", s.listTenants, 0},
		{"POST", "/api/v1/tenants", PermTenantsManage, "create", s.createTenant, 0},
		{"GET", "/api/v1/tenants/:tenantId", PermTenantsRead, "get", s.getTenant, routeManagesTenant},
		{"PATCH", "/api/v1/tenants/:tenantId", PermTenantsManage, "update", s.updateTenant, routeManagesTenant},
		{"POST", "/api/v1/tenants/:tenantId/suspend", PermTenantsManage, "suspend", s.setTenantState(engine.TenantSuspended), routeManagesTenant},
		{"POST", "/api/v1/tenants/:tenantId/resume", PermTenantsManage, "resume", s.setTenantState(engine.TenantActive), routeManagesTenant},
		{"POST", "/api/v1/tenants/:tenantId/keys", PermKeysManage, "create", s.createKey, routeManagesTenant},
		{"GET", "/api/v1/tenants/:tenantId/keys", PermKeysManage, "list", s.listKeys, routeManagesTenant},
		{"POST", "/api/v1/tenants/:tenantId/keys/:keyId/revoke", PermKeysManage, "revoke", s.revokeKey, routeManagesTenant},
		{"GET", "/api/v1/tenants/:tenantId/admin/log", PermAdminLogRead, "list", s.tenantAdminLog, routeManagesTenant},
		{"GET", "/api/v1/admin/log", PermAdminLogRead, "list", s.adminLog, 0},
		{"POST", "/api/v1/policy/reload", PermPolicyReload, "reload", s.reloadPolicy, 0},
	}
}
