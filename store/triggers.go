package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/orchestrator/orchestrator/engine"
)

var _ engine.TriggerStore = (*DB)(nil)

const (
	triggerColumns     = `tenant_id, name, id, kind, workflow, config, secret, state, version, created_at, updated_at`
	sqlInsertTrigger   = `INSERT INTO triggers (` + triggerColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlGetTrigger      = `SELECT ` + triggerColumns + ` FROM triggers WHERE tenant_id = ? AND name = ?`
	sqlListTriggers    = `SELECT ` + triggerColumns + ` FROM triggers WHERE tenant_id = ? ORDER BY name`
	sqlListAllTriggers = `SELECT ` + triggerColumns + ` FROM triggers ORDER BY tenant_id, name`
	sqlUpdateTrigger   = `UPDATE triggers SET workflow = ?, config = ?, secret = ?, state = ?, version = version + 1, updated_at = ?
		WHERE tenant_id = ? AND name = ? AND version = ?`
	sqlTriggerExists = `SELECT 1 FROM triggers WHERE tenant_id = ? AND name = ?`
	sqlDeleteTrigger = `DELETE FROM triggers WHERE tenant_id = ? AND name = ?`
)

// CreateTrigger implements engine.TriggerStore.
func (db *DB) CreateTrigger(ctx context.Context, t *engine.Trigger, ev *engine.AdminEvent) error {
	config, err := json.Marshal(t.Config)
	if err != nil {
		return fmt.Errorf("create trigger %s: %w", t.Name, err)
	}
	return db.writeAdmin(ctx, "create trigger "+t.Name, ev, func(tx *sql.Tx) error {
		if err := tx.QueryRow(sqlTenantExists, t.TenantID).Scan(new(int)); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: %w", t.TenantID, engine.ErrTenantNotFound)
		} else if err != nil {
			return err
		}
		if _, err := tx.Exec(sqlInsertTrigger, t.TenantID, t.Name, t.ID, string(t.Kind), t.Workflow, string(config),
			strArg(t.Secret), string(t.State), 1, engine.FormatTime(t.CreatedAt), engine.FormatTime(t.UpdatedAt)); err != nil {
			return constraintErr("insert trigger", err)
		}
		return nil
	})
}

// GetTrigger implements engine.TriggerStore.
func (db *DB) GetTrigger(ctx context.Context, tenantID, name string) (*engine.Trigger, error) {
	t, err := scanTrigger(db.r.QueryRowContext(ctx, sqlGetTrigger, tenantID, name))
	if err != nil {
		return nil, notFound(err, "trigger "+name)
	}
	return t, nil
}

// ListTriggers implements engine.TriggerStore.
func (db *DB) ListTriggers(ctx context.Context, tenantID string) ([]engine.Trigger, error) {
	var rows *sql.Rows
	var err error
	if tenantID == engine.AllTenants {
		rows, err = db.r.QueryContext(ctx, sqlListAllTriggers)
	} else {
		rows, err = db.r.QueryContext(ctx, sqlListTriggers, tenantID)
	}
	if err != nil {
		return nil, fmt.Errorf("list triggers: %w", err)
	}
	return collect(rows, "list triggers", scanTrigger)
}

// UpdateTrigger implements engine.TriggerStore: a compare-and-set on version.
func (db *DB) UpdateTrigger(ctx context.Context, t *engine.Trigger, ev *engine.AdminEvent) error {
	config, err := json.Marshal(t.Config)
	if err != nil {
		return fmt.Errorf("update trigger %s: %w", t.Name, err)
	}
	return db.writeAdmin(ctx, "update trigger "+t.Name, ev, func(tx *sql.Tx) error {
		res, err := tx.Exec(sqlUpdateTrigger, t.Workflow, string(config), strArg(t.Secret), string(t.State),
			engine.FormatTime(t.UpdatedAt), t.TenantID, t.Name, t.Version)
		if err != nil {
			return constraintErr("update trigger", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		if err := tx.QueryRow(sqlTriggerExists, t.TenantID, t.Name).Scan(new(int)); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("trigger %s: %w", t.Name, engine.ErrNotFound)
		} else if err != nil {
			return err
		}
		return fmt.Errorf("trigger %s: version is not %d: %w", t.Name, t.Version, engine.ErrConflict)
	})
}

// DeleteTrigger implements engine.TriggerStore.
func (db *DB) DeleteTrigger(ctx context.Context, tenantID, name string, ev *engine.AdminEvent) error {
	return db.writeAdmin(ctx, "delete trigger "+name, ev, func(tx *sql.Tx) error {
		res, err := tx.Exec(sqlDeleteTrigger, tenantID, name)
		if err != nil {
			return constraintErr("delete trigger", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		return fmt.Errorf("trigger %s: %w", name, engine.ErrNotFound)
	})
}

func scanTrigger(s scanner) (*engine.Trigger, error) {
	var t engine.Trigger
	var kind, config, state, created, updated string
	var secret sql.NullString
	if err := s.Scan(&t.TenantID, &t.Name, &t.ID, &kind, &t.Workflow, &config, &secret, &state, &t.Version, &created, &updated); err != nil {
		return nil, err
	}
	t.Kind, t.State, t.Secret = engine.TriggerKind(kind), engine.TriggerState(state), secret.String
	if err := json.Unmarshal([]byte(config), &t.Config); err != nil {
		return nil, fmt.Errorf("trigger %s config: %w", t.Name, err)
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
