package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/orchestrator/orchestrator/api/wire"
)

// The admin API: tenants, their API keys, the admin log and the policy.
// These calls name the tenant they act on (not the client's WithTenant), and
// most need an admin key; an owner's key may manage its own tenant's keys
// and read its admin log. They never send X-Actor: the admin log records
// the key alone.

// ListTenants returns every tenant (GET /api/v1/tenants). Errors: 401, 403
// for a key that is not an admin's.
func (c *OrchestratorClient) ListTenants(ctx context.Context) (*wire.TenantsPage, error) {
	var page wire.TenantsPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: "/api/v1/tenants", admin: true}, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// CreateTenant registers a tenant (POST /api/v1/tenants). Errors: 400 naming
// a bad field, 409 when the id is taken.
func (c *OrchestratorClient) CreateTenant(ctx context.Context, req wire.CreateTenantRequest) (*wire.Tenant, error) {
	var t wire.Tenant
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: "/api/v1/tenants", admin: true}, req, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// GetTenant reads a tenant. Errors: 404 tenant_not_found.
func (c *OrchestratorClient) GetTenant(ctx context.Context, id string) (*wire.Tenant, error) {
	var t wire.Tenant
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: "/api/v1/tenants/" + seg(id), admin: true}, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// UpdateTenant changes a tenant's name or settings (PATCH); fields left
// nil stay.
func (c *OrchestratorClient) UpdateTenant(ctx context.Context, id string, req wire.UpdateTenantRequest) (*wire.Tenant, error) {
	var t wire.Tenant
	if _, err := c.doJSON(ctx, call{method: http.MethodPatch, path: "/api/v1/tenants/" + seg(id), admin: true}, req, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// SuspendTenant suspends a tenant: its calls are refused with 403
// tenant_suspended until ResumeTenant. Errors: 409 invalid_transition when
// it is suspended already.
func (c *OrchestratorClient) SuspendTenant(ctx context.Context, id string) (*wire.Tenant, error) {
	return c.tenantState(ctx, id, "suspend")
}

// ResumeTenant resumes a suspended tenant.
func (c *OrchestratorClient) ResumeTenant(ctx context.Context, id string) (*wire.Tenant, error) {
	return c.tenantState(ctx, id, "resume")
}

func (c *OrchestratorClient) tenantState(ctx context.Context, id, verb string) (*wire.Tenant, error) {
	var t wire.Tenant
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: "/api/v1/tenants/" + seg(id) + "/" + verb, admin: true}, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// CreateKey creates an API key of a tenant. The answer's Key is the key
// itself, shown this once. Errors: 400 naming a bad field, 403 for a role
// the caller may not grant.
func (c *OrchestratorClient) CreateKey(ctx context.Context, tenantID string, req wire.CreateKeyRequest) (*wire.CreatedKey, error) {
	var k wire.CreatedKey
	cl := call{method: http.MethodPost, path: "/api/v1/tenants/" + seg(tenantID) + "/keys", admin: true}
	if _, err := c.doJSON(ctx, cl, req, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// ListKeys lists a tenant's keys, oldest first, without their secrets.
func (c *OrchestratorClient) ListKeys(ctx context.Context, tenantID string) (*wire.KeysPage, error) {
	var page wire.KeysPage
	cl := call{method: http.MethodGet, path: "/api/v1/tenants/" + seg(tenantID) + "/keys", admin: true}
	if _, err := c.doJSON(ctx, cl, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// RevokeKey revokes a key of a tenant. Errors: 404 for a key of another
// tenant, 409 when it is revoked already.
func (c *OrchestratorClient) RevokeKey(ctx context.Context, tenantID, keyID string) (*wire.APIKey, error) {
	var k wire.APIKey
	cl := call{method: http.MethodPost, path: "/api/v1/tenants/" + seg(tenantID) + "/keys/" + seg(keyID) + "/revoke", admin: true}
	if _, err := c.doJSON(ctx, cl, nil, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// AdminLogQuery selects entries of the admin log.
type AdminLogQuery struct {
	Tenant string // AdminLog only: one tenant's entries; "" every entry
	After  int64  // entries after this id (NextAfter of the previous page)
	Limit  int    // 1..1000; 0 the server's default (100)
	Verify bool   // AdminLog only: also check the whole log's hash chain
}

func (q AdminLogQuery) values() url.Values {
	v := url.Values{}
	if q.Tenant != "" {
		v.Set("tenant", q.Tenant)
	}
	if q.After > 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Verify {
		v.Set("verify", "true")
	}
	return v
}

// AdminLog reads the admin log (GET /api/v1/admin/log; admin keys).
func (c *OrchestratorClient) AdminLog(ctx context.Context, q AdminLogQuery) (*wire.AdminLogPage, error) {
	var page wire.AdminLogPage
	cl := call{method: http.MethodGet, path: "/api/v1/admin/log", query: q.values(), admin: true}
	if _, err := c.doJSON(ctx, cl, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// TenantAdminLog reads a tenant's entries of the admin log (its owner and
// admins); q.Tenant and q.Verify are not used.
func (c *OrchestratorClient) TenantAdminLog(ctx context.Context, tenantID string, q AdminLogQuery) (*wire.AdminLogPage, error) {
	q.Tenant, q.Verify = "", false
	var page wire.AdminLogPage
	cl := call{method: http.MethodGet, path: "/api/v1/tenants/" + seg(tenantID) + "/admin/log", query: q.values(), admin: true}
	if _, err := c.doJSON(ctx, cl, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// ReloadPolicy makes the server read and compile its policy files again.
// Errors: 422 invalid_policy naming the file and line (the policy in force
// stays), 404 on a server without a policy.
func (c *OrchestratorClient) ReloadPolicy(ctx context.Context) (*wire.PolicyInfo, error) {
	var info wire.PolicyInfo
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: "/api/v1/policy/reload", admin: true}, nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}
