package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

var _ engine.AccessStore = (*DB)(nil)

const (
	tenantColumns    = `id, name, state, settings, version, created_at, updated_at`
	keyColumns       = `id, tenant_id, name, role, task_types, secret_hash, created_at, expires_at, revoked_at, last_used_at`
	adminColumns     = `id, at, actor, tenant_id, action, data, hash`
	sqlInsertTenant  = `INSERT INTO tenants (` + tenantColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlGetTenant     = `SELECT ` + tenantColumns + ` FROM tenants WHERE id = ?`
	sqlListTenants   = `SELECT ` + tenantColumns + ` FROM tenants ORDER BY id`
	sqlTenantExists  = `SELECT 1 FROM tenants WHERE id = ?`
	sqlUpdateTenant  = `UPDATE tenants SET name = ?, state = ?, settings = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ?`
	sqlInsertKey     = `INSERT INTO api_keys (` + keyColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlGetKey        = `SELECT ` + keyColumns + ` FROM api_keys WHERE id = ?`
	sqlListAllKeys   = `SELECT ` + keyColumns + ` FROM api_keys ORDER BY created_at, id`
	sqlListSysKeys   = `SELECT ` + keyColumns + ` FROM api_keys WHERE tenant_id IS NULL ORDER BY created_at, id`
	sqlListKeys      = `SELECT ` + keyColumns + ` FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id`
	sqlRevokeKey     = `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`
	sqlKeyExists     = `SELECT 1 FROM api_keys WHERE id = ?`
	sqlTouchKey      = `UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`
	sqlLastAdmin     = `SELECT id, hash FROM admin_log ORDER BY id DESC LIMIT 1`
	sqlInsertAdmin   = `INSERT INTO admin_log (` + adminColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlListAdminAll  = `SELECT ` + adminColumns + ` FROM admin_log WHERE id > ? ORDER BY id LIMIT ?`
	sqlListAdminSys  = `SELECT ` + adminColumns + ` FROM admin_log WHERE tenant_id IS NULL AND id > ? ORDER BY id LIMIT ?`
	sqlListAdmin     = `SELECT ` + adminColumns + ` FROM admin_log WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?`
	sqlVerifyAdmin   = `SELECT ` + adminColumns + ` FROM admin_log ORDER BY id`
	maxAdminPageSize = 1000
)

// CreateTenant implements engine.AccessStore.
func (db *DB) CreateTenant(ctx context.Context, t *engine.Tenant, ev *engine.AdminEvent) error {
	settings, err := json.Marshal(t.Settings)
	if err != nil {
		return fmt.Errorf("create tenant %s: %w", t.ID, err)
	}
	return db.writeAdmin(ctx, "create tenant "+t.ID, ev, func(tx *sql.Tx) error {
		if _, err := tx.Exec(sqlInsertTenant, t.ID, t.Name, string(t.State), string(settings), 1,
			engine.FormatTime(t.CreatedAt), engine.FormatTime(t.UpdatedAt)); err != nil {
			return constraintErr("insert tenant", err)
		}
		return nil
	})
}

// GetTenant implements engine.AccessStore.
func (db *DB) GetTenant(ctx context.Context, id string) (*engine.Tenant, error) {
	t, err := scanTenant(db.r.QueryRowContext(ctx, sqlGetTenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", id, engine.ErrTenantNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get tenant %s: %w", id, err)
	}
	return t, nil
}

// ListTenants implements engine.AccessStore.
func (db *DB) ListTenants(ctx context.Context) ([]engine.Tenant, error) {
	rows, err := db.r.QueryContext(ctx, sqlListTenants)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return collect(rows, "list tenants", scanTenant)
}

// UpdateTenant implements engine.AccessStore: a compare-and-set on version.
func (db *DB) UpdateTenant(ctx context.Context, t *engine.Tenant, ev *engine.AdminEvent) error {
	settings, err := json.Marshal(t.Settings)
	if err != nil {
		return fmt.Errorf("update tenant %s: %w", t.ID, err)
	}
	return db.writeAdmin(ctx, "update tenant "+t.ID, ev, func(tx *sql.Tx) error {
		res, err := tx.Exec(sqlUpdateTenant, t.Name, string(t.State), string(settings), engine.FormatTime(t.UpdatedAt), t.ID, t.Version)
		if err != nil {
			return constraintErr("update tenant", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		if err := tx.QueryRow(sqlTenantExists, t.ID).Scan(new(int)); errors.Is(err, sql.ErrNoRows) {
			return engine.ErrTenantNotFound
		} else if err != nil {
			return err
		}
		return fmt.Errorf("version is not %d: %w", t.Version, engine.ErrConflict)
	})
}

// CreateKey implements engine.AccessStore.
func (db *DB) CreateKey(ctx context.Context, k *engine.APIKey, ev *engine.AdminEvent) error {
	var types any
	if k.TaskTypes != nil {
		b, err := json.Marshal(k.TaskTypes)
		if err != nil {
			return fmt.Errorf("create key %s: %w", k.ID, err)
		}
		types = string(b)
	}
	return db.writeAdmin(ctx, "create key "+k.ID, ev, func(tx *sql.Tx) error {
		if k.TenantID != "" {
			if err := tx.QueryRow(sqlTenantExists, k.TenantID).Scan(new(int)); errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%s: %w", k.TenantID, engine.ErrTenantNotFound)
			} else if err != nil {
				return err
			}
		}
		if _, err := tx.Exec(sqlInsertKey, k.ID, strArg(k.TenantID), k.Name, string(k.Role), types, k.SecretHash,
			engine.FormatTime(k.CreatedAt), timeArg(k.ExpiresAt), timeArg(k.RevokedAt), timeArg(k.LastUsedAt)); err != nil {
			return constraintErr("insert key", err)
		}
		return nil
	})
}

// GetKey implements engine.AccessStore.
func (db *DB) GetKey(ctx context.Context, id string) (*engine.APIKey, error) {
	k, err := scanKey(db.r.QueryRowContext(ctx, sqlGetKey, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("key %s: %w", id, engine.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	return k, nil
}

// ListKeys implements engine.AccessStore.
func (db *DB) ListKeys(ctx context.Context, tenantID string) ([]engine.APIKey, error) {
	var rows *sql.Rows
	var err error
	switch tenantID {
	case engine.AllTenants:
		rows, err = db.r.QueryContext(ctx, sqlListAllKeys)
	case "":
		rows, err = db.r.QueryContext(ctx, sqlListSysKeys)
	default:
		rows, err = db.r.QueryContext(ctx, sqlListKeys, tenantID)
	}
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return collect(rows, "list keys", scanKey)
}

// RevokeKey implements engine.AccessStore: a compare-and-set on the key not
// being revoked yet.
func (db *DB) RevokeKey(ctx context.Context, id string, at time.Time, ev *engine.AdminEvent) error {
	return db.writeAdmin(ctx, "revoke key "+id, ev, func(tx *sql.Tx) error {
		res, err := tx.Exec(sqlRevokeKey, engine.FormatTime(at), id)
		if err != nil {
			return constraintErr("revoke key", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		if err := tx.QueryRow(sqlKeyExists, id).Scan(new(int)); errors.Is(err, sql.ErrNoRows) {
			return engine.ErrNotFound
		} else if err != nil {
			return err
		}
		return fmt.Errorf("revoked already: %w", engine.ErrConflict)
	})
}

// TouchKeys implements engine.AccessStore in one transaction.
func (db *DB) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ids := make([]string, 0, len(used))
	for id := range used {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	err := db.write(ctx, func(tx *sql.Tx) error {
		st, err := tx.Prepare(sqlTouchKey)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, id := range ids {
			at := engine.FormatTime(used[id])
			if _, err := st.Exec(at, id, at); err != nil {
				return constraintErr("touch key "+id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch keys: %w", err)
	}
	return nil
}

// AppendAdmin implements engine.AccessStore.
func (db *DB) AppendAdmin(ctx context.Context, ev *engine.AdminEvent) error {
	return db.writeAdmin(ctx, "append admin log", ev, nil)
}

// writeAdmin runs fn and appends ev to the admin log in one transaction, and
// fills ev's ID and Hash once it is durable. fn may run more than once (the
// writer retries a failed batch request by request), so it and the append
// read what they need inside the transaction.
func (db *DB) writeAdmin(ctx context.Context, what string, ev *engine.AdminEvent, fn func(*sql.Tx) error) error {
	if ev == nil {
		return fmt.Errorf("%s: no admin log entry", what)
	}
	if ev.At.IsZero() || ev.Actor == "" || ev.Action == "" {
		return fmt.Errorf("%s: admin log entry without time, actor or action", what)
	}
	entry := *ev
	var id int64
	var hash string
	err := db.write(ctx, func(tx *sql.Tx) error {
		if fn != nil {
			if err := fn(tx); err != nil {
				return err
			}
		}
		var last int64
		var prev string
		if err := tx.QueryRow(sqlLastAdmin).Scan(&last, &prev); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("admin log head: %w", err)
		}
		e := entry
		e.ID = last + 1
		e.Hash = e.ComputeHash(prev)
		if _, err := tx.Exec(sqlInsertAdmin, e.ID, engine.FormatTime(e.At), e.Actor, strArg(e.TenantID), string(e.Action),
			jsonArg(e.Data), e.Hash); err != nil {
			return constraintErr("append admin log", err)
		}
		id, hash = e.ID, e.Hash
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ev.ID, ev.Hash = id, hash
	return nil
}

// ListAdmin implements engine.AccessStore.
func (db *DB) ListAdmin(ctx context.Context, f engine.AdminFilter) ([]engine.AdminEvent, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = engine.DefaultAdminPage
	}
	limit = min(limit, maxAdminPageSize)
	var rows *sql.Rows
	var err error
	switch f.TenantID {
	case engine.AllTenants:
		rows, err = db.r.QueryContext(ctx, sqlListAdminAll, f.After, limit)
	case "":
		rows, err = db.r.QueryContext(ctx, sqlListAdminSys, f.After, limit)
	default:
		rows, err = db.r.QueryContext(ctx, sqlListAdmin, f.TenantID, f.After, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list admin log: %w", err)
	}
	return collect(rows, "list admin log", scanAdmin)
}

// VerifyAdminLog implements engine.AccessStore.
func (db *DB) VerifyAdminLog(ctx context.Context) (int, error) {
	rows, err := db.r.QueryContext(ctx, sqlVerifyAdmin)
	if err != nil {
		return 0, fmt.Errorf("verify admin log: %w", err)
	}
	defer rows.Close()
	n := 0
	var prev *engine.AdminEvent
	for rows.Next() {
		e, err := scanAdmin(rows)
		if err != nil {
			return n, fmt.Errorf("verify admin log: %w", err)
		}
		if err := engine.VerifyAdminEntry(prev, e); err != nil {
			return n, err
		}
		prev = e
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("verify admin log: %w", err)
	}
	return n, nil
}

func scanTenant(s scanner) (*engine.Tenant, error) {
	var t engine.Tenant
	var state, settings, created, updated string
	if err := s.Scan(&t.ID, &t.Name, &state, &settings, &t.Version, &created, &updated); err != nil {
		return nil, err
	}
	t.State = engine.TenantState(state)
	if err := json.Unmarshal([]byte(settings), &t.Settings); err != nil {
		return nil, fmt.Errorf("tenant %s settings: %w", t.ID, err)
	}
	var err error
	if t.CreatedAt, err = engine.ParseTime(created); err != nil {
		return nil, err
	}
	if t.UpdatedAt, err = engine.ParseTime(updated); err != nil {
		return nil, err
	}
	return &t, nil
}

func scanKey(s scanner) (*engine.APIKey, error) {
	var k engine.APIKey
	var role, created string
	var tenant, types, expires, revoked, used sql.NullString
	if err := s.Scan(&k.ID, &tenant, &k.Name, &role, &types, &k.SecretHash, &created, &expires, &revoked, &used); err != nil {
		return nil, err
	}
	k.TenantID = tenant.String
	k.Role = engine.Role(role)
	if types.Valid {
		if err := json.Unmarshal([]byte(types.String), &k.TaskTypes); err != nil {
			return nil, fmt.Errorf("key %s task types: %w", k.ID, err)
		}
	}
	var err error
	for _, f := range []struct {
		dst *time.Time
		src string
	}{{&k.CreatedAt, created}, {&k.ExpiresAt, expires.String}, {&k.RevokedAt, revoked.String}, {&k.LastUsedAt, used.String}} {
		if *f.dst, err = engine.ParseTime(f.src); err != nil {
			return nil, fmt.Errorf("key %s: %w", k.ID, err)
		}
	}
	return &k, nil
}

func scanAdmin(s scanner) (*engine.AdminEvent, error) {
	var e engine.AdminEvent
	var at, action string
	var tenant, data sql.NullString
	if err := s.Scan(&e.ID, &at, &e.Actor, &tenant, &action, &data, &e.Hash); err != nil {
		return nil, err
	}
	e.TenantID = tenant.String
	e.Action = engine.AdminAction(action)
	e.Data = rawArg(data)
	var err error
	if e.At, err = engine.ParseTime(at); err != nil {
		return nil, fmt.Errorf("admin log %d: %w", e.ID, err)
	}
	return &e, nil
}
