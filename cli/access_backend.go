package cli

import (
	"context"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
	"github.com/orchestrator/orchestrator/engine"
)

// accessBackend is where the tenants and keys commands act: the database
// file (fileAccess, through engine.Admin) or a server's admin API
// (serverAccess, through the Go client). Both answer in engine types, so
// that each command is written once and prints the same in both modes; the
// conversions to and from the wire types stay in serverAccess.
type accessBackend interface {
	listTenants(ctx context.Context) ([]engine.Tenant, error)
	createTenant(ctx context.Context, id, name string, s engine.TenantSettings) (*engine.Tenant, error)
	getTenant(ctx context.Context, id string) (*engine.Tenant, error)
	// updateTenant changes only what c names. It takes the wire's sparse
	// change, not whole settings, so that the server merges it with what it
	// holds rather than the command with what it read a moment before.
	updateTenant(ctx context.Context, id string, c wire.UpdateTenantRequest) (*engine.Tenant, error)
	setTenantState(ctx context.Context, id string, s engine.TenantState) (*engine.Tenant, error)
	createKey(ctx context.Context, r engine.KeyRequest) (*engine.APIKey, string, error)
	// listKeys lists tenant's keys, every key for engine.AllTenants.
	listKeys(ctx context.Context, tenant string) ([]engine.APIKey, error)
	// revokeKey revokes a key of tenant, of any tenant for engine.AllTenants.
	revokeKey(ctx context.Context, tenant, id string) (*engine.APIKey, error)
}

// fileAccess works on the database file as by, the command line's admin.
type fileAccess struct {
	admin *engine.Admin
	by    *engine.Principal
}

func (f *fileAccess) listTenants(ctx context.Context) ([]engine.Tenant, error) {
	return f.admin.ListTenants(ctx, f.by)
}

func (f *fileAccess) createTenant(ctx context.Context, id, name string, s engine.TenantSettings) (*engine.Tenant, error) {
	return f.admin.CreateTenant(ctx, f.by, id, name, s)
}

func (f *fileAccess) getTenant(ctx context.Context, id string) (*engine.Tenant, error) {
	return f.admin.GetTenant(ctx, f.by, id)
}

// updateTenant reads the settings and writes them back changed, as the
// server does with a PATCH: engine.Admin takes whole settings.
func (f *fileAccess) updateTenant(ctx context.Context, id string, c wire.UpdateTenantRequest) (*engine.Tenant, error) {
	change := engine.TenantChange{Name: c.Name}
	if c.Settings != nil {
		cur, err := f.admin.GetTenant(ctx, f.by, id)
		if err != nil {
			return nil, err
		}
		s := cur.Settings
		applySettings(&s, c.Settings)
		change.Settings = &s
	}
	return f.admin.UpdateTenant(ctx, f.by, id, change)
}

func (f *fileAccess) setTenantState(ctx context.Context, id string, s engine.TenantState) (*engine.Tenant, error) {
	return f.admin.UpdateTenant(ctx, f.by, id, engine.TenantChange{State: s})
}

func (f *fileAccess) createKey(ctx context.Context, r engine.KeyRequest) (*engine.APIKey, string, error) {
	return f.admin.CreateKey(ctx, f.by, r)
}

func (f *fileAccess) listKeys(ctx context.Context, tenant string) ([]engine.APIKey, error) {
	return f.admin.ListKeys(ctx, f.by, tenant)
}

func (f *fileAccess) revokeKey(ctx context.Context, tenant, id string) (*engine.APIKey, error) {
	return f.admin.RevokeKey(ctx, f.by, tenant, id)
}

// serverAccess calls a server's admin API with the key of --api-key. What
// the API cannot do (admin keys, every tenant's keys at once) is a usage
// error naming --tenant, before any call.
type serverAccess struct {
	c *client.OrchestratorClient
}

func (s *serverAccess) listTenants(ctx context.Context) ([]engine.Tenant, error) {
	page, err := s.c.ListTenants(ctx)
	if err != nil {
		return nil, err
	}
	return convertAll(page.Tenants, engineTenant), nil
}

func (s *serverAccess) createTenant(ctx context.Context, id, name string, st engine.TenantSettings) (*engine.Tenant, error) {
	q := st.Quotas
	ws := &wire.TenantSettings{AllowExec: st.AllowExec, RetentionDays: st.RetentionDays, Quotas: wire.TenantQuotas{
		StartRate: q.StartRate, StartBurst: q.StartBurst, MaxActiveRuns: q.MaxActiveRuns, MaxPendingRuns: q.MaxPendingRuns,
		MaxInputBytes: q.MaxInputBytes, OnActiveLimit: q.OnActiveLimit}}
	return tenantOf(s.c.CreateTenant(ctx, wire.CreateTenantRequest{ID: id, Name: name, Settings: ws}))
}

func (s *serverAccess) getTenant(ctx context.Context, id string) (*engine.Tenant, error) {
	return tenantOf(s.c.GetTenant(ctx, id))
}

func (s *serverAccess) updateTenant(ctx context.Context, id string, c wire.UpdateTenantRequest) (*engine.Tenant, error) {
	return tenantOf(s.c.UpdateTenant(ctx, id, c))
}

func (s *serverAccess) setTenantState(ctx context.Context, id string, st engine.TenantState) (*engine.Tenant, error) {
	if st == engine.TenantSuspended {
		return tenantOf(s.c.SuspendTenant(ctx, id))
	}
	return tenantOf(s.c.ResumeTenant(ctx, id))
}

func (s *serverAccess) createKey(ctx context.Context, r engine.KeyRequest) (*engine.APIKey, string, error) {
	if r.TenantID == "" {
		return nil, "", &engine.FieldError{Field: "tenant", Reason: "required with --server: the API makes keys of a tenant; " +
			"admin keys are made only offline, on the database file (without --server)"}
	}
	k, err := s.c.CreateKey(ctx, r.TenantID, wire.CreateKeyRequest{Name: r.Name, Role: wire.Role(r.Role),
		TaskTypes: r.TaskTypes, ExpiresAt: r.ExpiresAt})
	if err != nil {
		return nil, "", err
	}
	return engineKey(&k.APIKey), k.Key, nil
}

func (s *serverAccess) listKeys(ctx context.Context, tenant string) ([]engine.APIKey, error) {
	if tenant == engine.AllTenants {
		return nil, &engine.FieldError{Field: "tenant", Reason: "required with --server: the API lists one tenant's keys"}
	}
	page, err := s.c.ListKeys(ctx, tenant)
	if err != nil {
		return nil, err
	}
	return convertAll(page.Keys, engineKey), nil
}

func (s *serverAccess) revokeKey(ctx context.Context, tenant, id string) (*engine.APIKey, error) {
	if tenant == engine.AllTenants {
		return nil, &engine.FieldError{Field: "tenant", Reason: "required with --server: the API revokes a key of the tenant it names"}
	}
	k, err := s.c.RevokeKey(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	return engineKey(k), nil
}

// convertAll converts each of ws with f.
func convertAll[W, E any](ws []W, f func(*W) *E) []E {
	es := make([]E, len(ws))
	for i := range ws {
		es[i] = *f(&ws[i])
	}
	return es
}

// tenantOf converts the answer of a tenant call.
func tenantOf(t *wire.Tenant, err error) (*engine.Tenant, error) {
	if err != nil {
		return nil, err
	}
	return engineTenant(t), nil
}

// engineTenant is t as the file holds it. The quotas keep their values
// as they are: 0 the server's default and -1 (engine.Unlimited) no limit
// mean the same on the wire.
func engineTenant(t *wire.Tenant) *engine.Tenant {
	q := t.Settings.Quotas
	return &engine.Tenant{ID: t.ID, Name: t.Name, State: engine.TenantState(t.State),
		Settings: engine.TenantSettings{AllowExec: t.Settings.AllowExec, RetentionDays: t.Settings.RetentionDays, Quotas: engine.TenantQuotas{
			StartRate: q.StartRate, StartBurst: q.StartBurst, MaxActiveRuns: q.MaxActiveRuns, MaxPendingRuns: q.MaxPendingRuns,
			MaxInputBytes: q.MaxInputBytes, OnActiveLimit: q.OnActiveLimit}},
		Version: t.Version, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

// engineKey is k as the file holds it, without its secret's hash, which
// the API never shows; its status follows again from its times.
func engineKey(k *wire.APIKey) *engine.APIKey {
	return &engine.APIKey{ID: k.ID, TenantID: k.TenantID, Name: k.Name, Role: engine.Role(k.Role), TaskTypes: k.TaskTypes,
		CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, LastUsedAt: k.LastUsedAt}
}

// applySettings applies the fields c gives to s, as the server does with a
// PATCH.
func applySettings(s *engine.TenantSettings, c *wire.SettingsChange) {
	if c.AllowExec != nil {
		s.AllowExec = *c.AllowExec
	}
	if c.RetentionDays != nil {
		s.RetentionDays = *c.RetentionDays
	}
	if q := c.Quotas; q != nil {
		set(&s.Quotas.StartRate, q.StartRate)
		set(&s.Quotas.StartBurst, q.StartBurst)
		set(&s.Quotas.MaxActiveRuns, q.MaxActiveRuns)
		set(&s.Quotas.MaxPendingRuns, q.MaxPendingRuns)
		set(&s.Quotas.MaxInputBytes, q.MaxInputBytes)
		set(&s.Quotas.OnActiveLimit, q.OnActiveLimit)
	}
}

// set sets *dst to *v when v is given.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
