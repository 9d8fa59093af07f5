package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ComputeHash returns the chain hash of e given the hash of the entry before
// it ("" for the first). It covers every field but Hash.
func (e *AdminEvent) ComputeHash(prev string) string {
	w := newChainWriter(prev)
	w.num(e.ID)
	w.str(FormatTime(e.At))
	w.str(e.Actor)
	w.str(e.TenantID)
	w.str(string(e.Action))
	w.str(string(e.Data))
	return w.sum()
}

// VerifyAdminEntry checks that e follows prev in the admin log (prev nil for
// the first entry): the next id and a hash chained to prev's.
func VerifyAdminEntry(prev, e *AdminEvent) error {
	wantID, prevHash := int64(1), ""
	if prev != nil {
		wantID, prevHash = prev.ID+1, prev.Hash
	}
	if e.ID != wantID {
		return fmt.Errorf("admin log: entry %d follows %d, want %d", e.ID, wantID-1, wantID)
	}
	if want := e.ComputeHash(prevHash); e.Hash != want {
		return fmt.Errorf("admin log: entry %d: hash %s, want %s", e.ID, e.Hash, want)
	}
	return nil
}

// Admin performs administrative actions on tenants and keys: it checks that
// the caller may, makes the change and records it in the admin log in the
// same write. The API and the offline commands both go through it. It is
// safe for concurrent use once its fields are set.
type Admin struct {
	Store AccessStore
	// Keys, when set, forgets at once what it cached of a revoked key or a
	// changed tenant, so that the change holds on this node immediately
	// (other processes see it within their cache time).
	Keys    *Keys
	NowFunc func() time.Time // default time.Now
}

// now is the time of an action as the store keeps it: UTC, to the microsecond.
func (a *Admin) now() time.Time {
	now := time.Now
	if a.NowFunc != nil {
		now = a.NowFunc
	}
	return now().UTC().Truncate(time.Microsecond)
}

// event makes the admin log entry of an action.
func (a *Admin) event(by *Principal, action AdminAction, tenantID string, data any, at time.Time) (*AdminEvent, error) {
	ev := &AdminEvent{At: at, Actor: by.Actor(), TenantID: tenantID, Action: action}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", action, err)
		}
		ev.Data = b
	}
	return ev, nil
}

// Record appends an action performed elsewhere (a policy loaded) to the
// admin log; the caller has checked that actor may perform it.
func (a *Admin) Record(ctx context.Context, actor string, action AdminAction, tenantID string, data any) (*AdminEvent, error) {
	ev, err := a.event(&Principal{Name: actor}, action, tenantID, data, a.now())
	if err != nil {
		return nil, err
	}
	if err := a.Store.AppendAdmin(ctx, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// ListAdmin returns entries of the admin log the caller may read: a
// tenant's for its owner, any for the admin (f.TenantID "" for the system's,
// AllTenants for all). Errors: *ForbiddenError.
func (a *Admin) ListAdmin(ctx context.Context, by *Principal, f AdminFilter) ([]AdminEvent, error) {
	scope := f.TenantID
	if scope == AllTenants {
		scope = ""
	}
	if err := by.Authorize(ActionAdminLogRead, scope); err != nil {
		return nil, err
	}
	return a.Store.ListAdmin(ctx, f)
}

// CreateTenant registers a tenant. Errors: *ForbiddenError, *FieldError,
// ErrConflict (the id is taken).
func (a *Admin) CreateTenant(ctx context.Context, by *Principal, id, name string, s TenantSettings) (*Tenant, error) {
	if err := by.Authorize(ActionTenantsManage, ""); err != nil {
		return nil, err
	}
	if err := ValidateTenantID(id); err != nil {
		return nil, &FieldError{Field: "id", Reason: err.Error()}
	}
	if name == "" {
		name = id
	}
	if err := validTenantName(name); err != nil {
		return nil, err
	}
	if err := s.Validate("settings."); err != nil {
		return nil, err
	}
	now := a.now()
	t := &Tenant{ID: id, Name: name, State: TenantActive, Settings: s, Version: 1, CreatedAt: now, UpdatedAt: now}
	ev, err := a.event(by, AdminTenantCreated, id, map[string]any{"name": name, "settings": s}, now)
	if err != nil {
		return nil, err
	}
	if err := a.Store.CreateTenant(ctx, t, ev); err != nil {
		return nil, err
	}
	return t, nil
}

func validTenantName(name string) error {
	if name == "" || len(name) > MaxTenantName {
		return &FieldError{Field: "name", Reason: fmt.Sprintf("must be 1 to %d bytes", MaxTenantName)}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return &FieldError{Field: "name", Reason: "must be valid UTF-8 without control characters"}
		}
	}
	return nil
}

// GetTenant returns a tenant the caller may read. Errors: *ForbiddenError,
// ErrTenantNotFound.
func (a *Admin) GetTenant(ctx context.Context, by *Principal, id string) (*Tenant, error) {
	if err := by.Authorize(ActionTenantsRead, id); err != nil {
		return nil, err
	}
	return a.Store.GetTenant(ctx, id)
}

// ListTenants returns every tenant. Errors: *ForbiddenError.
func (a *Admin) ListTenants(ctx context.Context, by *Principal) ([]Tenant, error) {
	if err := by.Authorize(ActionTenantsManage, ""); err != nil {
		return nil, err
	}
	return a.Store.ListTenants(ctx)
}

// TenantChange is an update of a tenant; nil fields stay as they are.
type TenantChange struct {
	Name     *string
	Settings *TenantSettings
	State    TenantState // "" stays; else active or suspended
}

// UpdateTenant changes a tenant and records it in one admin entry:
// tenant.suspended or tenant.resumed when the state changes, else
// tenant.updated; its data names the name and settings changed (the
// settings with their previous values, quotas included). Errors:
// *ForbiddenError, *FieldError, ErrTenantNotFound, *TransitionError (suspend
// a suspended tenant, resume an active one).
func (a *Admin) UpdateTenant(ctx context.Context, by *Principal, id string, c TenantChange) (*Tenant, error) {
	if err := by.Authorize(ActionTenantsManage, ""); err != nil {
		return nil, err
	}
	if c.Name != nil {
		if err := validTenantName(*c.Name); err != nil {
			return nil, err
		}
	}
	if c.Settings != nil {
		if err := c.Settings.Validate("settings."); err != nil {
			return nil, err
		}
	}
	if c.State != "" && c.State != TenantActive && c.State != TenantSuspended {
		return nil, &FieldError{Field: "state", Reason: fmt.Sprintf("%q: want active or suspended", c.State)}
	}
	// A concurrent update makes the compare-and-set fail; the change is
	// made again on what that update left, a few times.
	for try := 0; ; try++ {
		t, err := a.Store.GetTenant(ctx, id)
		if err != nil {
			return nil, err
		}
		next := *t
		action := AdminTenantUpdated
		data := map[string]any{}
		if c.State != "" {
			if c.State == t.State {
				ev := EventType(AdminTenantResumed)
				if c.State == TenantSuspended {
					ev = EventType(AdminTenantSuspended)
				}
				return nil, &TransitionError{Subject: "tenant " + id, Event: ev, From: string(t.State)}
			}
			next.State = c.State
			action = AdminTenantResumed
			if c.State == TenantSuspended {
				action = AdminTenantSuspended
			}
		}
		if c.Name != nil && *c.Name != t.Name {
			next.Name = *c.Name
			data["name"] = next.Name
		}
		if c.Settings != nil && *c.Settings != t.Settings {
			next.Settings = *c.Settings
			data["settings"] = next.Settings
			data["previous_settings"] = t.Settings // a quota change shows both sides
		}
		if action == AdminTenantUpdated && len(data) == 0 {
			return t, nil // nothing changes, nothing to record
		}
		next.UpdatedAt = a.now()
		ev, err := a.event(by, action, id, data, next.UpdatedAt)
		if err != nil {
			return nil, err
		}
		err = a.Store.UpdateTenant(ctx, &next, ev)
		if errors.Is(err, ErrConflict) && try < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		next.Version++
		if a.Keys != nil {
			a.Keys.ForgetTenant(id)
		}
		return &next, nil
	}
}

// CreateKey makes a key as r asks and stores it; the token is returned once
// and never stored. Errors: *ForbiddenError (the caller may not manage the
// tenant's keys or grant the role), *FieldError, ErrTenantNotFound.
func (a *Admin) CreateKey(ctx context.Context, by *Principal, r KeyRequest) (*APIKey, string, error) {
	if err := by.Authorize(ActionKeysManage, r.TenantID); err != nil {
		return nil, "", err
	}
	if !RoleCanGrant(by.Role, r.Role) && r.Role.Valid() {
		return nil, "", &ForbiddenError{Action: ActionKeysManage, Reason: fmt.Sprintf("role %s may not create %s keys", by.Role, r.Role)}
	}
	now := a.now()
	k, token, err := NewAPIKey(r, now)
	if err != nil {
		return nil, "", err
	}
	data := map[string]any{"key_id": k.ID, "name": k.Name, "role": k.Role}
	if k.TaskTypes != nil {
		data["task_types"] = k.TaskTypes
	}
	if !k.ExpiresAt.IsZero() {
		data["expires_at"] = FormatTime(k.ExpiresAt)
	}
	ev, err := a.event(by, AdminKeyCreated, k.TenantID, data, now)
	if err != nil {
		return nil, "", err
	}
	if err := a.Store.CreateKey(ctx, k, ev); err != nil {
		return nil, "", err
	}
	return k, token, nil
}

// ListKeys returns a tenant's keys ("" the admin keys, AllTenants every key;
// both for the admin only). Errors: *ForbiddenError.
func (a *Admin) ListKeys(ctx context.Context, by *Principal, tenantID string) ([]APIKey, error) {
	scope := tenantID
	if tenantID == AllTenants {
		scope = ""
	}
	if err := by.Authorize(ActionKeysManage, scope); err != nil {
		return nil, err
	}
	return a.Store.ListKeys(ctx, tenantID)
}

// RevokeKey revokes a key of tenantID (AllTenants: of any tenant, for the
// admin). A key of another tenant is not found. Errors: *ForbiddenError,
// ErrNotFound, ErrConflict (revoked already).
func (a *Admin) RevokeKey(ctx context.Context, by *Principal, tenantID, id string) (*APIKey, error) {
	if tenantID != AllTenants {
		// Refuse a caller who may not manage the tenant's keys before
		// telling it whether the id exists.
		if err := by.Authorize(ActionKeysManage, tenantID); err != nil {
			return nil, err
		}
	}
	k, err := a.Store.GetKey(ctx, id)
	if err != nil {
		return nil, err
	}
	if tenantID != AllTenants && k.TenantID != tenantID {
		return nil, fmt.Errorf("key %s of tenant %s: %w", id, tenantID, ErrNotFound)
	}
	if err := by.Authorize(ActionKeysManage, k.TenantID); err != nil {
		return nil, err
	}
	if !RoleCanGrant(by.Role, k.Role) {
		return nil, &ForbiddenError{Action: ActionKeysManage, Reason: fmt.Sprintf("role %s may not revoke %s keys", by.Role, k.Role)}
	}
	now := a.now()
	ev, err := a.event(by, AdminKeyRevoked, k.TenantID, map[string]any{"key_id": k.ID, "name": k.Name, "role": k.Role}, now)
	if err != nil {
		return nil, err
	}
	if err := a.Store.RevokeKey(ctx, id, now, ev); err != nil {
		return nil, err
	}
	if a.Keys != nil {
		a.Keys.Forget(id)
	}
	k.RevokedAt = now
	return k, nil
}
