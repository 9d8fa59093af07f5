package store

import (
	"context"
	"fmt"
)

// eachRunPage is how many run ids EachRun reads per query: no read
// transaction stays open while fn runs.
const eachRunPage = 1000

// EachRun implements engine.Auditor: it reads the runs in pages of ids, so
// that fn may read the store and no reader holds the WAL for long.
func (db *DB) EachRun(ctx context.Context, fn func(tenantID, runID string) error) error {
	type ref struct{ tenant, id string }
	after := ""
	for {
		rows, err := db.r.QueryContext(ctx, `SELECT tenant_id, id FROM runs WHERE id > ? ORDER BY id LIMIT ?`, after, eachRunPage)
		if err != nil {
			return fmt.Errorf("each run: %w", err)
		}
		var page []ref
		for rows.Next() {
			var r ref
			if err := rows.Scan(&r.tenant, &r.id); err != nil {
				rows.Close()
				return fmt.Errorf("each run: %w", err)
			}
			page = append(page, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("each run: %w", err)
		}
		for _, r := range page {
			if err := fn(r.tenant, r.id); err != nil {
				return err
			}
		}
		if len(page) < eachRunPage {
			return nil
		}
		after = page[len(page)-1].id
	}
}

// RunTenant implements engine.Auditor.
func (db *DB) RunTenant(ctx context.Context, runID string) (string, error) {
	var tenant string
	if err := db.r.QueryRowContext(ctx, `SELECT tenant_id FROM runs WHERE id = ?`, runID).Scan(&tenant); err != nil {
		return "", notFound(err, "run "+runID)
	}
	return tenant, nil
}
