package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Access control: tenants are registered, callers present API keys, a key
// has one role, and a role allows a fixed set of actions. This file holds the
// domain of it (no SQL, no HTTP); the store keeps it, the API asks it.

// Errors of access control. The 401s wrap ErrUnauthenticated and the 403s
// ErrForbidden, so that the API maps each family to one status and still
// names the case in its code.
var (
	// ErrUnauthenticated: the caller is not known (no key, a malformed,
	// unknown, revoked or expired key). HTTP 401.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrMalformedKey: the token is not of the form orch_<id>_<secret>.
	ErrMalformedKey = fmt.Errorf("malformed API key: %w", ErrUnauthenticated)
	// ErrInvalidKey: no key has this id, or its secret does not match. The
	// two are one error so that ids cannot be probed.
	ErrInvalidKey = fmt.Errorf("invalid API key: %w", ErrUnauthenticated)
	// ErrKeyRevoked: the key was revoked.
	ErrKeyRevoked = fmt.Errorf("API key revoked: %w", ErrUnauthenticated)
	// ErrKeyExpired: the key is past its expiry time.
	ErrKeyExpired = fmt.Errorf("API key expired: %w", ErrUnauthenticated)

	// ErrForbidden: the caller is known but may not do this. HTTP 403;
	// *ForbiddenError says which permission is missing.
	ErrForbidden = errors.New("forbidden")
	// ErrTenantSuspended: the tenant is suspended; its calls are refused.
	ErrTenantSuspended = fmt.Errorf("tenant suspended: %w", ErrForbidden)

	// ErrTenantNotFound: no tenant has this id. It wraps ErrNotFound.
	ErrTenantNotFound = fmt.Errorf("tenant %w", ErrNotFound)
)

// ForbiddenError is a refused action: the permission missing and why. It
// wraps ErrForbidden.
type ForbiddenError struct {
	Action string // the permission, e.g. runs.start
	Reason string // e.g. "role viewer does not allow runs.start"
}

func (e *ForbiddenError) Error() string { return "forbidden: " + e.Reason }

func (e *ForbiddenError) Unwrap() error { return ErrForbidden }

// TenantState is whether a tenant's calls are served. An admin moves a tenant
// between the two (tenant.suspended, tenant.resumed).
type TenantState string

const (
	// TenantActive: the tenant's calls are served (tenant.created, tenant.resumed).
	TenantActive TenantState = "active"
	// TenantSuspended: the tenant's calls are refused with 403
	// tenant_suspended (tenant.suspended); what it stored stays as it is.
	TenantSuspended TenantState = "suspended"
)

// TenantStates lists every tenant state.
func TenantStates() []TenantState { return []TenantState{TenantActive, TenantSuspended} }

// TenantSettings are what an admin decides per tenant. They are kept as one
// JSON object, so later settings (quotas) are new fields, not migrations.
type TenantSettings struct {
	// AllowExec lets the tenant's definitions use exec tasks, which run
	// commands on the server's host (the server's ENABLE_EXEC must be on too).
	AllowExec bool `json:"allow_exec"`
	// Quotas bound the tenant's starts and runs; a field left 0 takes the
	// server's default (Config.DefaultQuotas).
	Quotas TenantQuotas `json:"quotas,omitzero"`
	// RetentionDays is how long the tenant's finished runs stay live
	// before retention archives and removes them: 0 takes the server's
	// RETENTION, Unlimited (-1) keeps them forever.
	RetentionDays int `json:"retention_days,omitempty"`
}

// MaxRetentionDays bounds TenantSettings.RetentionDays: about a hundred
// years.
const MaxRetentionDays = 36_500

// Validate reports settings a tenant cannot have, naming the field under
// prefix (e.g. "settings.").
func (s *TenantSettings) Validate(prefix string) error {
	if err := s.Quotas.Validate(prefix+"quotas.", false); err != nil {
		return err
	}
	if s.RetentionDays < Unlimited || s.RetentionDays > MaxRetentionDays {
		return &FieldError{Field: prefix + "retention_days", Reason: fmt.Sprintf("%d: want 1..%d days, 0 for the server's retention or -1 to keep runs forever", s.RetentionDays, MaxRetentionDays)}
	}
	return nil
}

// Retention is how long the tenant's finished runs stay live, given the
// server's default: 0 keeps them forever.
func (s *TenantSettings) Retention(serverDefault time.Duration) time.Duration {
	switch {
	case s.RetentionDays == Unlimited:
		return 0
	case s.RetentionDays > 0:
		return time.Duration(s.RetentionDays) * 24 * time.Hour
	}
	return serverDefault
}

// Tenant is a registered tenant. Everything stored carries a tenant id.
type Tenant struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	State     TenantState    `json:"state"`
	Settings  TenantSettings `json:"settings"`
	Version   int64          `json:"version"` // compare-and-set: 1 when created, +1 on each update
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// DefaultTenantID is the tenant the migration registers and the short /v1
// routes act on.
const DefaultTenantID = "default"

// MaxTenantName is the longest display name of a tenant.
const MaxTenantName = 256

// ValidateTenantID returns why id cannot name a tenant, or nil.
func ValidateTenantID(id string) error {
	if !definition.ValidName(id) {
		return fmt.Errorf("tenant id %q: must match [A-Za-z0-9_.-]{1,64} and not be . or ..", id)
	}
	return nil
}

// Role is what a key may do. The five roles are fixed; the schema repeats
// them as a CHECK.
type Role string

const (
	// RoleAdmin: the system administrator: tenants, every tenant's keys and
	// data, the policy. Admin keys belong to no tenant.
	RoleAdmin Role = "admin"
	// RoleOwner: one tenant's keys and everything the roles below it may do.
	RoleOwner Role = "owner"
	// RoleOperator: one tenant's definitions, runs (start and control) and
	// schedules, and everything a viewer may read.
	RoleOperator Role = "operator"
	// RoleViewer: reads one tenant's runs, history, audit and run metrics.
	RoleViewer Role = "viewer"
	// RoleWorker: leases one tenant's external task attempts (poll,
	// heartbeat, complete, fail), only of its task types when the key names
	// them.
	RoleWorker Role = "worker"
)

// Roles lists every role, the system role first.
func Roles() []Role { return []Role{RoleAdmin, RoleOwner, RoleOperator, RoleViewer, RoleWorker} }

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return slices.Contains(Roles(), r) }

// Actions: the stable permission names the role table grants and a route
// asks for. Policies see them as input.action.
const (
	ActionTenantsManage    = "tenants.manage"    // create, update, suspend, resume tenants; list them all
	ActionTenantsRead      = "tenants.read"      // read one's own tenant (name, state, settings)
	ActionKeysManage       = "keys.manage"       // create, list, revoke a tenant's keys
	ActionAdminLogRead     = "admin_log.read"    // read the log of administrative actions of a tenant
	ActionPolicyReload     = "policy.reload"     // reload the policy from its files
	ActionServerMetrics    = "server.metrics"    // the whole server's /metrics
	ActionServerBackup     = "server.backup"     // copy the live database to the server's backup directory
	ActionServerCheckpoint = "server.checkpoint" // sign checkpoints now, list and export them
	ActionDefinitionsWrite = "definitions.write" // register definitions
	ActionDefinitionsRead  = "definitions.read"  // list and read definitions, validate a DAG
	ActionRunsStart        = "runs.start"        // start runs
	ActionRunsControl      = "runs.control"      // pause, resume, cancel, retry runs
	ActionRunsRead         = "runs.read"         // list and read runs
	ActionEventsRead       = "events.read"       // a run's history and the tenant's audit query
	ActionMetricsRead      = "metrics.read"      // per-run metrics
	ActionSchedulesWrite   = "schedules.write"   // create, change, delete schedules
	ActionSchedulesRead    = "schedules.read"    // list and read schedules
	ActionTriggersWrite    = "triggers.write"    // create, change, delete webhooks and stream triggers
	ActionTriggersRead     = "triggers.read"     // list and read webhooks and stream triggers, their state
	ActionWorkersPoll      = "workers.poll"      // poll, heartbeat, complete, fail external attempts
	ActionActOnBehalf      = "actor.on_behalf"   // name someone (X-Actor) the call is made on behalf of
)

// permissions is the role table: which tenant roles hold each action. The
// admin holds every action of the table, in any tenant; an action missing
// from the table is held by no one.
var permissions = map[string][]Role{
	ActionTenantsManage:    {},
	ActionPolicyReload:     {},
	ActionServerMetrics:    {},
	ActionServerBackup:     {},
	ActionServerCheckpoint: {},
	ActionTenantsRead:      {RoleOwner, RoleOperator, RoleViewer},
	ActionKeysManage:       {RoleOwner},
	ActionAdminLogRead:     {RoleOwner},
	ActionDefinitionsWrite: {RoleOwner, RoleOperator},
	ActionDefinitionsRead:  {RoleOwner, RoleOperator, RoleViewer},
	ActionRunsStart:        {RoleOwner, RoleOperator},
	ActionRunsControl:      {RoleOwner, RoleOperator},
	ActionRunsRead:         {RoleOwner, RoleOperator, RoleViewer},
	ActionEventsRead:       {RoleOwner, RoleOperator, RoleViewer},
	ActionMetricsRead:      {RoleOwner, RoleOperator, RoleViewer},
	ActionSchedulesWrite:   {RoleOwner, RoleOperator},
	ActionSchedulesRead:    {RoleOwner, RoleOperator, RoleViewer},
	ActionTriggersWrite:    {RoleOwner, RoleOperator},
	ActionTriggersRead:     {RoleOwner, RoleOperator, RoleViewer},
	ActionWorkersPoll:      {RoleOwner, RoleWorker},
	ActionActOnBehalf:      {RoleOwner, RoleOperator},
}

// Actions lists every action of the role table, sorted.
func Actions() []string {
	out := make([]string, 0, len(permissions))
	for a := range permissions {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// SystemAction reports whether action is about the whole server rather than
// one tenant (only the admin holds these).
func SystemAction(action string) bool {
	roles, ok := permissions[action]
	return ok && len(roles) == 0
}

// RoleAllows reports whether role holds action. An unknown role or action is
// refused, so a route without a rule is closed rather than open.
func RoleAllows(role Role, action string) bool {
	roles, ok := permissions[action]
	if !ok {
		return false
	}
	return role == RoleAdmin || slices.Contains(roles, role)
}

// RoleCanGrant reports whether a key of role by may create a key of role r:
// the admin any, an owner any role of its tenant but admin.
func RoleCanGrant(by, r Role) bool {
	switch by {
	case RoleAdmin:
		return r.Valid()
	case RoleOwner:
		return r.Valid() && r != RoleAdmin
	}
	return false
}

// Principal is who makes a call: the key that authenticated it, or the
// built-in local admin. It is immutable once made; share it freely.
type Principal struct {
	KeyID     string   // "" for the built-in principals
	Name      string   // the key's name, or "local" / "cli:USER"
	TenantID  string   // "" for the admin
	Role      Role     //
	TaskTypes []string // worker keys: the task types it may lease; nil is every type
}

// LocalAdmin is the built-in admin of AUTH=local: a request from a loopback
// address that carries no key acts as it.
func LocalAdmin() *Principal { return &Principal{Name: "local", Role: RoleAdmin} }

// Actor is what events record as the actor of the principal's calls:
// key:<id>:<name> for a key, the name for the built-in principals.
func (p *Principal) Actor() string {
	if p.KeyID == "" {
		return p.Name
	}
	return "key:" + p.KeyID + ":" + p.Name
}

// Authorize returns nil when p may perform action on tenantID's resources
// (tenantID "" for a system action), or a *ForbiddenError naming what is
// missing: the role does not hold the action, or the key belongs to another
// tenant.
func (p *Principal) Authorize(action, tenantID string) error {
	if !RoleAllows(p.Role, action) {
		return &ForbiddenError{Action: action, Reason: fmt.Sprintf("role %s does not allow %s", p.Role, action)}
	}
	if p.Role == RoleAdmin {
		return nil
	}
	switch {
	case tenantID == "" && p.TenantID != "":
		return &ForbiddenError{Action: action, Reason: fmt.Sprintf("%s beyond a tenant needs an admin key; this key belongs to tenant %s", action, p.TenantID)}
	case tenantID != p.TenantID:
		return &ForbiddenError{Action: action, Reason: fmt.Sprintf("the key belongs to tenant %s, not %s", p.TenantID, tenantID)}
	}
	return nil
}

// AuthorizeTaskType returns nil when p may lease attempts of task type typ:
// every type unless p is a worker key that names its types.
func (p *Principal) AuthorizeTaskType(typ string) error {
	if p.Role != RoleWorker || p.TaskTypes == nil || slices.Contains(p.TaskTypes, typ) {
		return nil
	}
	return &ForbiddenError{Action: ActionWorkersPoll, Reason: fmt.Sprintf("key %s may not lease task type %s", p.Name, typ)}
}

// APIKey is a stored key: everything but the secret, of which only the
// SHA-256 is kept.
type APIKey struct {
	ID         string    `json:"id"`
	TenantID   string    `json:"tenant_id,omitempty"` // "" for admin keys
	Name       string    `json:"name"`
	Role       Role      `json:"role"`
	TaskTypes  []string  `json:"task_types,omitempty"` // worker keys only; nil is every type
	SecretHash string    `json:"-"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// Principal returns who calls with k.
func (k *APIKey) Principal() *Principal {
	return &Principal{KeyID: k.ID, Name: k.Name, TenantID: k.TenantID, Role: k.Role, TaskTypes: k.TaskTypes}
}

// Status is active, revoked or expired at now.
func (k *APIKey) Status(now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return "revoked"
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return "expired"
	}
	return "active"
}

// AllTenants, given as a tenant id to ListKeys or ListAdmin, lists every
// tenant's rows and the system's; "" lists the system's only.
const AllTenants = "*"

// AdminFilter selects entries of the admin log.
type AdminFilter struct {
	TenantID string // a tenant, "" for system entries only, AllTenants for all
	After    int64  // entries with a greater id
	Limit    int    // at most this many; 0 is DefaultAdminPage
}

// DefaultAdminPage is how many admin log entries ListAdmin returns unless told.
const DefaultAdminPage = 100

// AccessStore keeps tenants, keys and the admin log. Every write of an
// administrative action takes the AdminEvent that records it and writes both
// in one transaction, or neither. The store assigns the event's ID and Hash.
// Every method is safe for concurrent use.
type AccessStore interface {
	// CreateTenant stores a new tenant (Version 1). ErrConflict when the id
	// is taken.
	CreateTenant(ctx context.Context, t *Tenant, ev *AdminEvent) error
	// GetTenant returns a tenant, or an error wrapping ErrTenantNotFound.
	GetTenant(ctx context.Context, id string) (*Tenant, error)
	// ListTenants returns every tenant, by id.
	ListTenants(ctx context.Context) ([]Tenant, error)
	// UpdateTenant writes t's name, state and settings as version
	// t.Version+1 if the stored version is still t.Version: ErrConflict when
	// it is not, ErrTenantNotFound when there is no such tenant.
	UpdateTenant(ctx context.Context, t *Tenant, ev *AdminEvent) error

	// CreateKey stores a new key. ErrTenantNotFound when its tenant is not
	// registered, ErrConflict when its id is taken.
	CreateKey(ctx context.Context, k *APIKey, ev *AdminEvent) error
	// GetKey returns a key by id, or an error wrapping ErrNotFound.
	GetKey(ctx context.Context, id string) (*APIKey, error)
	// ListKeys returns a tenant's keys ("" the admin keys, AllTenants every
	// key), oldest first.
	ListKeys(ctx context.Context, tenantID string) ([]APIKey, error)
	// RevokeKey marks a key revoked at at. ErrNotFound when there is no such
	// key, ErrConflict when it is revoked already.
	RevokeKey(ctx context.Context, id string, at time.Time, ev *AdminEvent) error
	// TouchKeys records when keys were last used, in one write; a time
	// older than the stored one is ignored, an unknown id too.
	TouchKeys(ctx context.Context, used map[string]time.Time) error

	// AppendAdmin appends an entry to the admin log.
	AppendAdmin(ctx context.Context, ev *AdminEvent) error
	// ListAdmin returns admin log entries in log order.
	ListAdmin(ctx context.Context, f AdminFilter) ([]AdminEvent, error)
	// VerifyAdminLog checks the whole admin log: ids 1..n without gaps and
	// every hash chaining to the one before. It returns how many entries
	// verified and an error naming the first entry that does not.
	VerifyAdminLog(ctx context.Context) (int, error)
}

// AdminAction names an administrative action, subject and past tense.
type AdminAction string

const (
	AdminTenantCreated   AdminAction = "tenant.created"
	AdminTenantUpdated   AdminAction = "tenant.updated" // name or settings changed
	AdminTenantSuspended AdminAction = "tenant.suspended"
	AdminTenantResumed   AdminAction = "tenant.resumed"
	AdminKeyCreated      AdminAction = "key.created"
	AdminKeyRevoked      AdminAction = "key.revoked"
	AdminPolicyLoaded    AdminAction = "policy.loaded"
)

// AdminActions lists every administrative action.
func AdminActions() []AdminAction {
	return []AdminAction{AdminTenantCreated, AdminTenantUpdated, AdminTenantSuspended, AdminTenantResumed,
		AdminKeyCreated, AdminKeyRevoked, AdminPolicyLoaded, AdminTriggerCreated, AdminTriggerUpdated, AdminTriggerDeleted}
}

// AdminEvent is one entry of the admin log: who did what to which tenant.
// ID numbers the log 1..n; Hash chains each entry to the one before.
type AdminEvent struct {
	ID       int64           `json:"id"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	TenantID string          `json:"tenant_id,omitempty"` // "" for system actions
	Action   AdminAction     `json:"action"`
	Data     json.RawMessage `json:"data,omitempty"`
	Hash     string          `json:"hash"`
}
