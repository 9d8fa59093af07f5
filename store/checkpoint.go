package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/orchestrator/orchestrator/engine"
)

var (
	_ engine.CheckpointStore = (*DB)(nil)
	_ engine.CheckpointLog   = (*DB)(nil)
)

const (
	checkpointColumns = `id, tenant_id, seq, at, from_event_id, head_event_id, events, runs, heads_digest,
	prev_digest, digest, public_key, signature`
	sqlInsertCheckpoint = `INSERT INTO checkpoints (tenant_id, seq, at, from_event_id, head_event_id, events, runs,
	heads_digest, prev_digest, digest, public_key, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlInsertHead = `INSERT INTO checkpoint_heads (checkpoint_id, run_id, seq, hash) VALUES (?, ?, ?, ?)`
	headValues    = `, (?, ?, ?, ?)`
	// headsPerInsert rows go in one statement.
	headsPerInsert = 128
	// checkpointsPerRead are read in one short transaction by Checkpoints.
	checkpointsPerRead = 64
)

// LogTenants implements engine.CheckpointStore: it steps from tenant to
// tenant along the events' tenant index instead of reading every event.
func (db *DB) LogTenants(ctx context.Context, fn func(tenantID string) error) error {
	last := ""
	for {
		var next sql.NullString
		if err := db.r.QueryRowContext(ctx, `SELECT min(t) FROM (SELECT min(tenant_id) AS t FROM events WHERE tenant_id > ?
			UNION ALL SELECT min(tenant_id) FROM archived_events WHERE tenant_id > ?)`, last, last).Scan(&next); err != nil {
			return fmt.Errorf("log tenants: %w", err)
		}
		if !next.Valid {
			return nil
		}
		if err := fn(next.String); err != nil {
			return err
		}
		last = next.String
	}
}

// LastCheckpoint implements engine.CheckpointStore.
func (db *DB) LastCheckpoint(ctx context.Context, tenantID string) (*engine.Checkpoint, error) {
	row := db.r.QueryRowContext(ctx, `SELECT `+checkpointColumns+` FROM checkpoints WHERE tenant_id = ?
		ORDER BY seq DESC LIMIT 1`, tenantID)
	_, cp, err := scanCheckpoint(row)
	if err != nil {
		return nil, notFound(err, "last checkpoint of tenant "+tenantID)
	}
	return cp, nil
}

// LogHead implements engine.CheckpointStore.
func (db *DB) LogHead(ctx context.Context, tenantID string, afterID int64, maxEvents int) (int64, error) {
	if maxEvents < 1 {
		return 0, fmt.Errorf("log head: max events %d: want at least 1", maxEvents)
	}
	var id int64
	err := db.r.QueryRowContext(ctx, `SELECT id FROM log_skeleton WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT 1 OFFSET ?`,
		tenantID, afterID, maxEvents-1).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		err = db.r.QueryRowContext(ctx, `SELECT COALESCE(max(id), 0) FROM log_skeleton WHERE tenant_id = ? AND id > ?`,
			tenantID, afterID).Scan(&id)
	}
	if err != nil {
		return 0, fmt.Errorf("log head: %w", err)
	}
	return id, nil
}

// LogSlice implements engine.CheckpointLog and engine.CheckpointStore.
func (db *DB) LogSlice(ctx context.Context, tenantID string, afterID, headID int64) (*engine.LogSlice, error) {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("log slice: %w", err)
	}
	defer tx.Rollback()
	var s engine.LogSlice
	if err := tx.QueryRowContext(ctx, `SELECT count(*), COALESCE(sum(seq = 1), 0) FROM log_skeleton
		WHERE tenant_id = ? AND id > ? AND id <= ?`, tenantID, afterID, headID).Scan(&s.Events, &s.NewRuns); err != nil {
		return nil, fmt.Errorf("log slice: %w", err)
	}
	// With max() the other columns are those of the row with the maximum.
	rows, err := tx.QueryContext(ctx, `SELECT run_id, max(seq), hash FROM log_skeleton
		WHERE tenant_id = ? AND id > ? AND id <= ? GROUP BY run_id ORDER BY run_id`, tenantID, afterID, headID)
	if err != nil {
		return nil, fmt.Errorf("log slice: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h engine.RunHead
		if err := rows.Scan(&h.RunID, &h.Seq, &h.Hash); err != nil {
			return nil, fmt.Errorf("log slice: %w", err)
		}
		s.Heads = append(s.Heads, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("log slice: %w", err)
	}
	return &s, nil
}

// LogCount implements engine.CheckpointLog.
func (db *DB) LogCount(ctx context.Context, tenantID string, headID int64) (events, runs int64, err error) {
	err = db.r.QueryRowContext(ctx, `SELECT count(*), COALESCE(sum(seq = 1), 0) FROM log_skeleton WHERE tenant_id = ? AND id <= ?`,
		tenantID, headID).Scan(&events, &runs)
	if err != nil {
		return 0, 0, fmt.Errorf("log count: %w", err)
	}
	return events, runs, nil
}

// AppendCheckpoint implements engine.CheckpointStore.
func (db *DB) AppendCheckpoint(ctx context.Context, cp *engine.Checkpoint) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		var last int64
		if err := tx.QueryRow(`SELECT COALESCE(max(seq), 0) FROM checkpoints WHERE tenant_id = ?`, cp.TenantID).Scan(&last); err != nil {
			return err
		}
		if last != cp.Seq-1 {
			return fmt.Errorf("tenant %s has checkpoint %d, not %d: %w", cp.TenantID, last, cp.Seq-1, engine.ErrConflict)
		}
		res, err := tx.Exec(sqlInsertCheckpoint, cp.TenantID, cp.Seq, engine.FormatTime(cp.At), cp.FromEventID, cp.HeadEventID,
			cp.Events, cp.Runs, cp.HeadsDigest, cp.PrevDigest, cp.Digest, cp.PublicKey, cp.Signature)
		if err != nil {
			return constraintErr("insert checkpoint", err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		for heads := cp.Heads; len(heads) > 0; {
			n := min(len(heads), headsPerInsert)
			args := make([]any, 0, 4*n)
			for _, h := range heads[:n] {
				args = append(args, id, h.RunID, h.Seq, h.Hash)
			}
			if _, err := tx.Exec(sqlInsertHead+strings.Repeat(headValues, n-1), args...); err != nil {
				return constraintErr("insert checkpoint heads", err)
			}
			heads = heads[n:]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append checkpoint: %w", err)
	}
	return nil
}

// Checkpoints implements engine.CheckpointLog. It reads a few checkpoints
// at a time, each batch in a short transaction, and calls fn between them.
func (db *DB) Checkpoints(ctx context.Context, fn func(*engine.Checkpoint) error) error {
	var after int64
	for {
		page, last, err := db.checkpointPage(ctx, after)
		if err != nil {
			return fmt.Errorf("checkpoints: %w", err)
		}
		for i := range page {
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		if len(page) < checkpointsPerRead {
			return nil
		}
		after = last
	}
}

// checkpointPage reads the checkpoints after id after, with their heads, and
// returns the id of the last.
func (db *DB) checkpointPage(ctx context.Context, after int64) ([]engine.Checkpoint, int64, error) {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+checkpointColumns+` FROM checkpoints WHERE id > ? ORDER BY id LIMIT ?`,
		after, checkpointsPerRead)
	if err != nil {
		return nil, 0, err
	}
	var page []engine.Checkpoint
	var ids []int64
	for rows.Next() {
		id, cp, err := scanCheckpoint(rows)
		if err != nil {
			rows.Close()
			return nil, 0, err
		}
		page, ids = append(page, *cp), append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	for i, id := range ids {
		hrows, err := tx.QueryContext(ctx, `SELECT run_id, seq, hash FROM checkpoint_heads WHERE checkpoint_id = ? ORDER BY run_id`, id)
		if err != nil {
			return nil, 0, err
		}
		page[i].Heads = []engine.RunHead{}
		for hrows.Next() {
			var h engine.RunHead
			if err := hrows.Scan(&h.RunID, &h.Seq, &h.Hash); err != nil {
				hrows.Close()
				return nil, 0, err
			}
			page[i].Heads = append(page[i].Heads, h)
		}
		hrows.Close()
		if err := hrows.Err(); err != nil {
			return nil, 0, err
		}
	}
	var last int64
	if len(ids) > 0 {
		last = ids[len(ids)-1]
	}
	return page, last, nil
}

// GetCheckpoint implements engine.CheckpointLog.
func (db *DB) GetCheckpoint(ctx context.Context, tenantID string, seq int64) (*engine.Checkpoint, error) {
	row := db.r.QueryRowContext(ctx, `SELECT `+checkpointColumns+` FROM checkpoints WHERE tenant_id = ? AND seq = ?`, tenantID, seq)
	_, cp, err := scanCheckpoint(row)
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("checkpoint %d of tenant %s", seq, tenantID))
	}
	return cp, nil
}

// scanCheckpoint reads a row of checkpointColumns, without heads.
func scanCheckpoint(s scanner) (int64, *engine.Checkpoint, error) {
	var id int64
	var cp engine.Checkpoint
	var at string
	if err := s.Scan(&id, &cp.TenantID, &cp.Seq, &at, &cp.FromEventID, &cp.HeadEventID, &cp.Events, &cp.Runs,
		&cp.HeadsDigest, &cp.PrevDigest, &cp.Digest, &cp.PublicKey, &cp.Signature); err != nil {
		return 0, nil, err
	}
	t, err := engine.ParseTime(at)
	if err != nil {
		return 0, nil, fmt.Errorf("checkpoint %d: at %q: %w", id, at, err)
	}
	cp.At = t
	return id, &cp, nil
}
