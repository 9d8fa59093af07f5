package wire

import (
	"encoding/json"
	"time"
)

// Access control: tenants, API keys, the admin log and the policy, as the
// admin API (/api/v1/tenants, .../keys, /api/v1/admin/log,
// /api/v1/policy/reload) shows and takes them.

// TenantState is whether a tenant's calls are served.
type TenantState string

// Tenant states.
const (
	TenantActive    TenantState = "active"    // its calls are served
	TenantSuspended TenantState = "suspended" // its calls are refused with 403 tenant_suspended
)

// TenantSettings are what an admin decides per tenant.
type TenantSettings struct {
	// AllowExec lets the tenant's definitions use exec tasks (the server's
	// ENABLE_EXEC must be on too).
	AllowExec bool `json:"allow_exec"`
	// Quotas bound the tenant's starts and runs (see TenantQuotas).
	Quotas TenantQuotas `json:"quotas"`
	// RetentionDays is how long the tenant's finished runs stay live: 0
	// takes the server's RETENTION, -1 keeps them forever.
	RetentionDays int `json:"retention_days,omitempty"`
}

// TenantQuotas are a tenant's quotas. A field left out or 0 takes the
// server's default (TENANT_* settings); -1 lifts that limit for the tenant.
// Its fields are engine.TenantQuotas's, so the API converts one to the other.
type TenantQuotas struct {
	StartRate      float64 `json:"start_rate,omitempty"`       // runs started per second, on average (token bucket)
	StartBurst     int     `json:"start_burst,omitempty"`      // runs started at once (default the rate, at least 1)
	MaxActiveRuns  int     `json:"max_active_runs,omitempty"`  // runs running or paused at once
	MaxPendingRuns int     `json:"max_pending_runs,omitempty"` // runs waiting for a slot
	MaxInputBytes  int64   `json:"max_input_bytes,omitempty"`  // bytes of one run's input
	OnActiveLimit  string  `json:"on_active_limit,omitempty"`  // reject (default) or queue
}

// QuotasChange changes some of a tenant's quotas; fields left out stay.
type QuotasChange struct {
	StartRate      *float64 `json:"start_rate,omitempty"`
	StartBurst     *int     `json:"start_burst,omitempty"`
	MaxActiveRuns  *int     `json:"max_active_runs,omitempty"`
	MaxPendingRuns *int     `json:"max_pending_runs,omitempty"`
	MaxInputBytes  *int64   `json:"max_input_bytes,omitempty"`
	OnActiveLimit  *string  `json:"on_active_limit,omitempty"`
}

// Tenant is a registered tenant.
type Tenant struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	State     TenantState    `json:"state"`
	Settings  TenantSettings `json:"settings"`
	Version   int64          `json:"version"` // 1 when created, +1 on each change
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// TenantsPage is the answer of GET /api/v1/tenants: every tenant, by id.
type TenantsPage struct {
	Tenants []Tenant `json:"tenants"`
}

// CreateTenantRequest is the body of POST /api/v1/tenants.
type CreateTenantRequest struct {
	ID       string          `json:"id"`             // [A-Za-z0-9_.-]{1,64}
	Name     string          `json:"name,omitempty"` // default the id
	Settings *TenantSettings `json:"settings,omitempty"`
}

// UpdateTenantRequest is the body of PATCH /api/v1/tenants/{tenantId}:
// fields left out stay as they are.
type UpdateTenantRequest struct {
	Name     *string         `json:"name,omitempty"`
	Settings *SettingsChange `json:"settings,omitempty"`
}

// SettingsChange changes some of a tenant's settings; fields left out stay.
type SettingsChange struct {
	AllowExec     *bool         `json:"allow_exec,omitempty"`
	Quotas        *QuotasChange `json:"quotas,omitempty"`
	RetentionDays *int          `json:"retention_days,omitempty"`
}

// Role is what a key may do.
type Role string

// Roles.
const (
	RoleAdmin    Role = "admin"    // the whole server: tenants, every tenant's keys and data, the policy
	RoleOwner    Role = "owner"    // one tenant: its keys and everything below
	RoleOperator Role = "operator" // one tenant: definitions, start and control runs
	RoleViewer   Role = "viewer"   // one tenant: read runs, history, audit, run metrics
	RoleWorker   Role = "worker"   // one tenant: poll, heartbeat, complete, fail (only its task types when named)
)

// APIKey is a stored key: everything but its secret, which is never shown
// again after it was created.
type APIKey struct {
	ID         string    `json:"id"`
	TenantID   string    `json:"tenant_id,omitempty"` // empty for admin keys
	Name       string    `json:"name"`
	Role       Role      `json:"role"`
	TaskTypes  []string  `json:"task_types,omitempty"` // worker keys: the task types it may lease; absent is every type
	Status     string    `json:"status"`               // active, revoked or expired
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"` // written in batches: up to a few seconds behind
}

// CreateKeyRequest is the body of POST /api/v1/tenants/{tenantId}/keys.
type CreateKeyRequest struct {
	Name      string    `json:"name"` // [A-Za-z0-9_.-]{1,64}; events record it with the key's id
	Role      Role      `json:"role"`
	TaskTypes []string  `json:"task_types,omitempty"` // worker keys only
	ExpiresAt time.Time `json:"expires_at,omitzero"`  // absent: no expiry
}

// CreatedKey is the answer of a key's creation: the key itself (Key), shown
// this once, and what is stored of it.
type CreatedKey struct {
	Key string `json:"key"` // orch_<id>_<secret>: send it as Authorization: Bearer KEY
	APIKey
}

// KeysPage is the answer of GET /api/v1/tenants/{tenantId}/keys, oldest first.
type KeysPage struct {
	Keys []APIKey `json:"keys"`
}

// AdminEvent is one entry of the admin log: who did what to which tenant.
// ID numbers the log 1..n; Hash chains each entry to the one before.
type AdminEvent struct {
	ID       int64           `json:"id"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	TenantID string          `json:"tenant_id,omitempty"` // empty for system actions (policy.loaded)
	Action   string          `json:"action"`              // tenant.created, tenant.updated, tenant.suspended, tenant.resumed, key.created, key.revoked, policy.loaded
	Data     json.RawMessage `json:"data,omitempty"`
	Hash     string          `json:"hash"`
}

// AdminLogPage is one page of the admin log in log order:
// GET /api/v1/admin/log and GET /api/v1/tenants/{tenantId}/admin/log.
type AdminLogPage struct {
	Entries []AdminEvent `json:"entries"`
	// NextAfter is the ?after= of the next page; 0 on the last page.
	NextAfter int64 `json:"next_after,omitempty"`
	// Verified answers ?verify=true (the whole log, admin only): whether
	// every entry chains to the one before.
	Verified    *bool  `json:"verified,omitempty"`
	VerifyError string `json:"verify_error,omitempty"`
}

// PolicyInfo says which policy is in force: the answer of
// POST /api/v1/policy/reload.
type PolicyInfo struct {
	Path     string    `json:"path"`
	Hash     string    `json:"hash"` // SHA-256 of the files' names and contents
	Files    []string  `json:"files"`
	LoadedAt time.Time `json:"loaded_at"`
}

// PolicyDecision is the decision of the policy that allowed a call, as the
// data of the first event the call caused records it.
type PolicyDecision struct {
	ID         string `json:"decision_id"`
	Allow      bool   `json:"allow"`
	Reason     string `json:"reason,omitempty"`
	PolicyHash string `json:"policy_hash"`
}
