package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

var _ engine.RetentionStore = (*DB)(nil)

const (
	tombstoneColumns = `tenant_id, run_id, workflow, version, state, created_at, ended_at, events, final_hash,
	archive, record_sha256, removed_at`
	terminalStates = `('completed', 'failed', 'cancelled', 'timed_out')`
	// newestEventRun is the run holding the newest event. Retention leaves
	// it live: SQLite gives a new event max(id)+1, so were the newest
	// removed, the next events would take the ids of archived ones (their
	// skeleton keeps them, unique), and the log's positions would go back.
	newestEventRun = `SELECT run_id FROM events WHERE id = (SELECT max(id) FROM events)`
)

// ExpiredRuns implements engine.RetentionStore.
func (db *DB) ExpiredRuns(ctx context.Context, tenantID string, endedBefore time.Time, limit int) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id FROM runs WHERE tenant_id = ? AND state IN `+terminalStates+`
		AND ended_at < ? AND id IS NOT (`+newestEventRun+`) AND NOT EXISTS (SELECT 1 FROM events e
		JOIN archived_events a ON a.id = e.id WHERE e.run_id = runs.id) ORDER BY ended_at, id LIMIT ?`,
		tenantID, engine.FormatTime(endedBefore), limit)
	if err != nil {
		return nil, fmt.Errorf("expired runs: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("expired runs: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// RemoveRuns implements engine.RetentionStore: one transaction for all of
// them. The tombstone goes first: the events' delete trigger lets only the
// events of a run with a tombstone go.
func (db *DB) RemoveRuns(ctx context.Context, tombstones []engine.Tombstone) (int, error) {
	removed := 0
	err := db.write(ctx, func(tx *sql.Tx) error {
		removed = 0
		for i := range tombstones {
			ok, err := removeRun(tx, &tombstones[i])
			if err != nil {
				return fmt.Errorf("remove run %s: %w", tombstones[i].RunID, err)
			}
			if ok {
				removed++
			}
		}
		return nil
	})
	return removed, err
}

// removeRun removes one run if it is still as its tombstone says.
func removeRun(tx *sql.Tx, ts *engine.Tombstone) (bool, error) {
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM runs WHERE id = ? AND tenant_id = ? AND state = ? AND last_seq = ?
		AND last_hash = ?`, ts.RunID, ts.TenantID, string(ts.State), ts.Events, ts.FinalHash).Scan(&n); err != nil {
		return false, err
	}
	if n == 0 { // retried, or removed, meanwhile
		return false, nil
	}
	// Left live: the run holding the newest event (see newestEventRun),
	// and one whose events took the ids of archived ones in a database
	// that removed its newest run before that was refused.
	var keep bool
	if err := tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM events WHERE run_id = ?1 AND (run_id IS (`+newestEventRun+`)
		OR id IN (SELECT id FROM archived_events)))`, ts.RunID).Scan(&keep); err != nil {
		return false, err
	}
	if keep {
		return false, nil
	}
	if _, err := tx.Exec(`INSERT INTO tombstones (`+tombstoneColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ts.TenantID, ts.RunID, ts.Workflow, ts.Version, string(ts.State), engine.FormatTime(ts.CreatedAt),
		engine.FormatTime(ts.EndedAt), ts.Events, ts.FinalHash, ts.Archive, ts.RecordSHA256, engine.FormatTime(ts.RemovedAt)); err != nil {
		return false, constraintErr("insert tombstone", err)
	}
	if _, err := tx.Exec(`INSERT INTO archived_events (id, tenant_id, run_id, seq, hash)
		SELECT id, tenant_id, run_id, seq, hash FROM events WHERE run_id = ?`, ts.RunID); err != nil {
		return false, fmt.Errorf("keep the log's skeleton: %w", err)
	}
	res, err := tx.Exec(`DELETE FROM events WHERE run_id = ?`, ts.RunID)
	if err != nil {
		return false, fmt.Errorf("delete events: %w", err)
	}
	if got, _ := res.RowsAffected(); got != ts.Events {
		return false, fmt.Errorf("deleted %d events, the tombstone counts %d: %w", got, ts.Events, engine.ErrConflict)
	}
	for _, q := range []string{`DELETE FROM tasks WHERE run_id = ?`, `DELETE FROM idempotency_keys WHERE run_id = ?`,
		`DELETE FROM runs WHERE id = ?`} {
		if _, err := tx.Exec(q, ts.RunID); err != nil {
			return false, fmt.Errorf("remove run rows: %w", err)
		}
	}
	return true, nil
}

// GetTombstone implements engine.RetentionStore.
func (db *DB) GetTombstone(ctx context.Context, tenantID, runID string) (*engine.Tombstone, error) {
	ts, err := scanTombstone(db.r.QueryRowContext(ctx, `SELECT `+tombstoneColumns+` FROM tombstones
		WHERE run_id = ? AND tenant_id = ?`, runID, tenantID))
	if err != nil {
		return nil, notFound(err, "tombstone of run "+runID)
	}
	return ts, nil
}

func scanTombstone(s scanner) (*engine.Tombstone, error) {
	var ts engine.Tombstone
	var state, created, ended, removed string
	if err := s.Scan(&ts.TenantID, &ts.RunID, &ts.Workflow, &ts.Version, &state, &created, &ended, &ts.Events,
		&ts.FinalHash, &ts.Archive, &ts.RecordSHA256, &removed); err != nil {
		return nil, err
	}
	ts.State = engine.RunState(state)
	var err error
	for _, p := range []struct {
		s  string
		to *time.Time
	}{{created, &ts.CreatedAt}, {ended, &ts.EndedAt}, {removed, &ts.RemovedAt}} {
		if *p.to, err = engine.ParseTime(p.s); err != nil {
			return nil, err
		}
	}
	return &ts, nil
}
