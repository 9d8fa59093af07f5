package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

var _ engine.AliasStore = (*DB)(nil)

const (
	aliasColumns     = `alias, spec, revision, created_at, updated_at, updated_by`
	sqlInsertAlias   = `INSERT INTO aliases (tenant_id, name, ` + aliasColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	sqlUpdateAlias   = `UPDATE aliases SET spec = ?, revision = ?, updated_at = ?, updated_by = ? WHERE tenant_id = ? AND name = ? AND alias = ? AND revision = ?`
	sqlGetAlias      = `SELECT ` + aliasColumns + ` FROM aliases WHERE tenant_id = ? AND name = ? AND alias = ?`
	sqlListAliases   = `SELECT ` + aliasColumns + ` FROM aliases WHERE tenant_id = ? AND name = ? ORDER BY alias`
	sqlAliasRevision = `SELECT revision FROM aliases WHERE tenant_id = ? AND name = ? AND alias = ?`
	sqlDeleteAlias   = `DELETE FROM aliases WHERE tenant_id = ? AND name = ? AND alias = ? AND revision = ?`
	sqlListVersions  = `SELECT version, hash, created_at FROM workflows WHERE tenant_id = ? AND name = ? AND version > ? ORDER BY version LIMIT ?`
	// The partial index runs_alias_finished answers it.
	sqlAliasOutcomes = `SELECT id, state FROM runs
		WHERE tenant_id = ? AND workflow = ? AND alias = ? AND version = ? AND ended_at IS NOT NULL
		  AND state IN ('completed', 'failed', 'timed_out') AND created_at >= ?
		ORDER BY ended_at DESC LIMIT ?`
)

// PutAlias implements engine.AliasStore.
func (db *DB) PutAlias(ctx context.Context, a *engine.Alias, prev int64, ev *engine.AdminEvent) error {
	spec, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("put alias %s@%s: %w", a.Name, a.Alias, err)
	}
	return db.writeAdmin(ctx, "put alias "+a.Name+"@"+a.Alias, ev, func(tx *sql.Tx) error {
		if prev == 0 {
			if _, err := tx.Exec(sqlInsertAlias, a.TenantID, a.Name, a.Alias, string(spec), a.Revision,
				engine.FormatTime(a.CreatedAt), engine.FormatTime(a.UpdatedAt), a.UpdatedBy); err != nil {
				return constraintErr("insert alias", err)
			}
			return nil
		}
		res, err := tx.Exec(sqlUpdateAlias, string(spec), a.Revision, engine.FormatTime(a.UpdatedAt), a.UpdatedBy,
			a.TenantID, a.Name, a.Alias, prev)
		if err != nil {
			return constraintErr("update alias", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		return aliasMissOrConflict(tx, a.TenantID, a.Name, a.Alias, prev)
	})
}

// aliasMissOrConflict says why a compare-and-set on an alias changed no row.
func aliasMissOrConflict(tx *sql.Tx, tenantID, name, alias string, rev int64) error {
	var cur int64
	if err := tx.QueryRow(sqlAliasRevision, tenantID, name, alias).Scan(&cur); errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s@%s: %w", name, alias, engine.ErrAliasNotFound)
	} else if err != nil {
		return err
	}
	return fmt.Errorf("alias %s@%s is at revision %d, not %d: %w", name, alias, cur, rev, engine.ErrConflict)
}

// GetAlias implements engine.AliasStore.
func (db *DB) GetAlias(ctx context.Context, tenantID, name, alias string) (*engine.Alias, error) {
	a, err := scanAlias(db.r.QueryRowContext(ctx, sqlGetAlias, tenantID, name, alias), tenantID, name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s@%s: %w", name, alias, engine.ErrAliasNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get alias %s@%s: %w", name, alias, err)
	}
	return a, nil
}

// ListAliases implements engine.AliasStore.
func (db *DB) ListAliases(ctx context.Context, tenantID, name string) ([]engine.Alias, error) {
	rows, err := db.r.QueryContext(ctx, sqlListAliases, tenantID, name)
	if err != nil {
		return nil, fmt.Errorf("list aliases: %w", err)
	}
	defer rows.Close()
	var out []engine.Alias
	for rows.Next() {
		a, err := scanAlias(rows, tenantID, name)
		if err != nil {
			return nil, fmt.Errorf("list aliases: %w", err)
		}
		out = append(out, *a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list aliases: %w", err)
	}
	return out, nil
}

// DeleteAlias implements engine.AliasStore.
func (db *DB) DeleteAlias(ctx context.Context, tenantID, name, alias string, rev int64, ev *engine.AdminEvent) error {
	return db.writeAdmin(ctx, "delete alias "+name+"@"+alias, ev, func(tx *sql.Tx) error {
		want := rev
		if want == 0 {
			if err := tx.QueryRow(sqlAliasRevision, tenantID, name, alias).Scan(&want); errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%s@%s: %w", name, alias, engine.ErrAliasNotFound)
			} else if err != nil {
				return err
			}
		}
		res, err := tx.Exec(sqlDeleteAlias, tenantID, name, alias, want)
		if err != nil {
			return fmt.Errorf("delete alias: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		return aliasMissOrConflict(tx, tenantID, name, alias, want)
	})
}

// ListDefinitionVersions implements engine.AliasStore.
func (db *DB) ListDefinitionVersions(ctx context.Context, tenantID, name string, after, limit int) ([]engine.StoredDefinition, error) {
	rows, err := db.r.QueryContext(ctx, sqlListVersions, tenantID, name, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	defer rows.Close()
	var out []engine.StoredDefinition
	for rows.Next() {
		d := engine.StoredDefinition{TenantID: tenantID, Name: name}
		var at string
		if err := rows.Scan(&d.Version, &d.Hash, &at); err != nil {
			return nil, fmt.Errorf("list versions: %w", err)
		}
		d.CreatedAt, _ = engine.ParseTime(at)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	return out, nil
}

// AliasOutcomes implements engine.AliasStore.
func (db *DB) AliasOutcomes(ctx context.Context, tenantID, name, alias string, version int, since time.Time, limit int) ([]engine.RunOutcome, error) {
	rows, err := db.r.QueryContext(ctx, sqlAliasOutcomes, tenantID, name, alias, version, engine.FormatTime(since), limit)
	if err != nil {
		return nil, fmt.Errorf("alias outcomes: %w", err)
	}
	defer rows.Close()
	var out []engine.RunOutcome
	for rows.Next() {
		var o engine.RunOutcome
		var state string
		if err := rows.Scan(&o.RunID, &state); err != nil {
			return nil, fmt.Errorf("alias outcomes: %w", err)
		}
		o.Failed = state != string(engine.RunCompleted)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alias outcomes: %w", err)
	}
	return out, nil
}

func scanAlias(s scanner, tenantID, name string) (*engine.Alias, error) {
	a := &engine.Alias{TenantID: tenantID, Name: name}
	var spec, created, updated string
	if err := s.Scan(&a.Alias, &spec, &a.Revision, &created, &updated, &a.UpdatedBy); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), a); err != nil {
		return nil, fmt.Errorf("alias %s@%s: spec: %w", name, a.Alias, err)
	}
	a.CreatedAt, _ = engine.ParseTime(created)
	a.UpdatedAt, _ = engine.ParseTime(updated)
	return a, nil
}
