package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/orchestrator/orchestrator/engine"
)

// sqlInsertDefinition stores a definition version; UNIQUE(tenant_id, name,
// version) refuses a version taken meanwhile.
const sqlInsertDefinition = `INSERT INTO workflows (tenant_id, name, version, definition, hash, created_at,
	created_by, on_behalf, policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`

const (
	runColumns = `id, tenant_id, workflow, version, state, input, output, error, created_at, started_at,
	ended_at, deadline, updated_at, last_seq, last_hash, data_bytes, origin_kind, origin_id, origin_slot, origin_ref, alias,
	concurrency_key`
	taskColumns = `run_id, task_id, pos, type, state, attempt, charged, ready_at, not_before, started_at,
	ended_at, wake_at, error, output, input, worker_id, lease_expires_at, lease_hash, abandoned`
	eventColumns = `id, tenant_id, run_id, seq, type, task_id, attempt, actor, on_behalf, data, at, hash`
	activeStates = `('pending', 'running', 'paused')`
)

// PutDefinition implements engine.Writer.
func (db *DB) PutDefinition(ctx context.Context, d *engine.StoredDefinition) (*engine.StoredDefinition, bool, error) {
	var out engine.StoredDefinition
	var created bool
	err := db.write(ctx, func(tx *sql.Tx) error {
		created = false
		var latest int
		var hash, def, at string
		err := tx.QueryRow(`SELECT version, hash, definition, created_at FROM workflows
			WHERE tenant_id = ? AND name = ? ORDER BY version DESC LIMIT 1`, d.TenantID, d.Name).Scan(&latest, &hash, &def, &at)
		switch {
		case err == nil && hash == d.Hash:
			out = engine.StoredDefinition{TenantID: d.TenantID, Name: d.Name, Version: latest,
				Definition: json.RawMessage(def), Hash: hash}
			out.CreatedAt, _ = engine.ParseTime(at)
			return nil
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("latest version of %s: %w", d.Name, err)
		}
		out = *d
		out.Version = latest + 1
		if _, err := tx.Exec(sqlInsertDefinition, definitionArgs(d, out.Version)...); err != nil {
			return constraintErr("insert definition "+d.Name, err)
		}
		created = true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("put definition: %w", err)
	}
	return &out, created, nil
}

// GetDefinition implements engine.Reader.
func (db *DB) GetDefinition(ctx context.Context, tenantID, name string, version int) (*engine.StoredDefinition, error) {
	q := `SELECT version, definition, hash, created_at, created_by, on_behalf, policy FROM workflows WHERE tenant_id = ? AND name = ?`
	args := []any{tenantID, name}
	if version > 0 {
		q += ` AND version = ?`
		args = append(args, version)
	} else {
		q += ` ORDER BY version DESC LIMIT 1`
	}
	d := engine.StoredDefinition{TenantID: tenantID, Name: name}
	var def, at string
	var by, onBehalf, pol sql.NullString
	if err := db.r.QueryRowContext(ctx, q, args...).Scan(&d.Version, &def, &d.Hash, &at, &by, &onBehalf, &pol); err != nil {
		return nil, notFound(err, fmt.Sprintf("definition %s", name))
	}
	d.Definition = json.RawMessage(def)
	d.CreatedAt, _ = engine.ParseTime(at)
	d.CreatedBy, d.OnBehalf = by.String, onBehalf.String
	if pol.Valid {
		d.Policy = &engine.PolicyDecision{}
		if err := json.Unmarshal([]byte(pol.String), d.Policy); err != nil {
			return nil, fmt.Errorf("definition %s v%d: policy: %w", name, d.Version, err)
		}
	}
	return &d, nil
}

// definitionArgs are the values of sqlInsertDefinition for d as version.
func definitionArgs(d *engine.StoredDefinition, version int) []any {
	var pol any
	if d.Policy != nil {
		b, _ := json.Marshal(d.Policy)
		pol = string(b)
	}
	return []any{d.TenantID, d.Name, version, string(d.Definition), d.Hash, engine.FormatTime(d.CreatedAt),
		strArg(d.CreatedBy), strArg(d.OnBehalf), pol}
}

// ListDefinitions implements engine.Querier.
func (db *DB) ListDefinitions(ctx context.Context, tenantID string) ([]engine.StoredDefinition, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT w.name, w.version, w.hash, w.created_at FROM workflows w
		WHERE w.tenant_id = ? AND w.version = (SELECT max(version) FROM workflows l WHERE l.tenant_id = w.tenant_id AND l.name = w.name)
		ORDER BY w.name`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("list definitions: %w", err)
	}
	var out []engine.StoredDefinition
	for rows.Next() {
		d := engine.StoredDefinition{TenantID: tenantID}
		var at string
		if err := rows.Scan(&d.Name, &d.Version, &d.Hash, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list definitions: %w", err)
		}
		d.CreatedAt, _ = engine.ParseTime(at)
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list definitions: %w", err)
	}
	return out, nil
}

type scanner interface{ Scan(...any) error }

func scanRun(s scanner) (*engine.Run, error) {
	var r engine.Run
	var state string
	var input, output, errText, started, ended, deadline sql.NullString
	var originKind, originID, originSlot, originRef, alias, key sql.NullString
	var created, updated string
	if err := s.Scan(&r.ID, &r.TenantID, &r.Workflow, &r.Version, &state, &input, &output, &errText,
		&created, &started, &ended, &deadline, &updated, &r.LastSeq, &r.LastHash, &r.DataBytes,
		&originKind, &originID, &originSlot, &originRef, &alias, &key); err != nil {
		return nil, err
	}
	r.Alias = alias.String
	r.ConcurrencyKey = key.String
	if originKind.Valid {
		slot, err := engine.ParseTime(originSlot.String)
		if err != nil {
			return nil, err
		}
		r.Origin = &engine.Origin{Kind: engine.OriginKind(originKind.String), ID: originID.String, Slot: slot, Ref: originRef.String}
	}
	r.State = engine.RunState(state)
	r.Input = rawArg(input)
	r.Output = rawArg(output)
	r.Error = errFrom(errText)
	var err error
	if r.CreatedAt, err = engine.ParseTime(created); err != nil {
		return nil, err
	}
	if r.StartedAt, err = engine.ParseTime(started.String); err != nil {
		return nil, err
	}
	if r.EndedAt, err = engine.ParseTime(ended.String); err != nil {
		return nil, err
	}
	if r.Deadline, err = engine.ParseTime(deadline.String); err != nil {
		return nil, err
	}
	if r.UpdatedAt, err = engine.ParseTime(updated); err != nil {
		return nil, err
	}
	return &r, nil
}

func scanTask(s scanner) (*engine.Task, error) {
	var t engine.Task
	var state string
	var ready, notBefore, started, ended, wake, errText, output, input, worker, leaseAt, leaseHash sql.NullString
	if err := s.Scan(&t.RunID, &t.TaskID, &t.Pos, &t.Type, &state, &t.Attempt, &t.Charged, &ready, &notBefore,
		&started, &ended, &wake, &errText, &output, &input, &worker, &leaseAt, &leaseHash, &t.Abandoned); err != nil {
		return nil, err
	}
	t.State = engine.TaskState(state)
	t.Error = errFrom(errText)
	t.Output = rawArg(output)
	t.Input = rawArg(input)
	t.WorkerID = worker.String
	t.LeaseHash = leaseHash.String
	var err error
	if t.ReadyAt, err = engine.ParseTime(ready.String); err != nil {
		return nil, err
	}
	if t.NotBefore, err = engine.ParseTime(notBefore.String); err != nil {
		return nil, err
	}
	if t.StartedAt, err = engine.ParseTime(started.String); err != nil {
		return nil, err
	}
	if t.EndedAt, err = engine.ParseTime(ended.String); err != nil {
		return nil, err
	}
	if t.WakeAt, err = engine.ParseTime(wake.String); err != nil {
		return nil, err
	}
	if t.LeaseExpiresAt, err = engine.ParseTime(leaseAt.String); err != nil {
		return nil, err
	}
	return &t, nil
}

func rawArg(s sql.NullString) json.RawMessage {
	if !s.Valid {
		return nil
	}
	return json.RawMessage(s.String)
}

func errFrom(s sql.NullString) *engine.TaskError {
	if !s.Valid {
		return nil
	}
	var e engine.TaskError
	if json.Unmarshal([]byte(s.String), &e) != nil {
		return &engine.TaskError{Code: "error", Message: s.String}
	}
	return &e
}

// LoadRun implements engine.Reader: the run and its tasks in one read
// transaction.
func (db *DB) LoadRun(ctx context.Context, tenantID, runID string) (*engine.Run, []engine.Task, error) {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("load run: %w", err)
	}
	defer tx.Rollback()
	run, err := scanRun(tx.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ? AND tenant_id = ?`, runID, tenantID))
	if err != nil {
		return nil, nil, notFound(err, "run "+runID)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE run_id = ? ORDER BY pos`, runID)
	if err != nil {
		return nil, nil, fmt.Errorf("load tasks of %s: %w", runID, err)
	}
	tasks, err := collect(rows, "load tasks", scanTask)
	if err != nil {
		return nil, nil, fmt.Errorf("run %s: %w", runID, err)
	}
	return run, tasks, nil
}

// GetRunRow implements engine.Querier.
func (db *DB) GetRunRow(ctx context.Context, tenantID, runID string) (*engine.Run, error) {
	run, err := scanRun(db.r.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ? AND tenant_id = ?`, runID, tenantID))
	if err != nil {
		return nil, notFound(err, "run "+runID)
	}
	return run, nil
}

// LoadActiveRuns implements engine.Reader: two queries in one read
// transaction, whatever the number of runs.
func (db *DB) LoadActiveRuns(ctx context.Context, fn func(*engine.Run, []engine.Task) error) error {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("load active runs: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+runColumns+` FROM runs WHERE state IN `+activeStates)
	if err != nil {
		return fmt.Errorf("load active runs: %w", err)
	}
	var runs []*engine.Run
	byID := map[string]int{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("load active runs: %w", err)
		}
		byID[r.ID] = len(runs)
		runs = append(runs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load active runs: %w", err)
	}
	tasks := make([][]engine.Task, len(runs))
	rows, err = tx.QueryContext(ctx, `SELECT `+prefixed("t.", taskColumns)+` FROM runs r JOIN tasks t ON t.run_id = r.id
		WHERE r.state IN `+activeStates)
	if err != nil {
		return fmt.Errorf("load active tasks: %w", err)
	}
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("load active tasks: %w", err)
		}
		i := byID[t.RunID]
		tasks[i] = append(tasks[i], *t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load active tasks: %w", err)
	}
	tx.Rollback() // end the read before the callbacks write
	for i, r := range runs {
		if err := fn(r, tasks[i]); err != nil {
			return err
		}
	}
	return nil
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ",")
	for i := range parts {
		parts[i] = p + strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, ", ")
}

func scanEvent(s scanner) (*engine.Event, error) {
	var e engine.Event
	var typ, at string
	var task, onBehalf, data sql.NullString
	if err := s.Scan(&e.ID, &e.TenantID, &e.RunID, &e.Seq, &typ, &task, &e.Attempt, &e.Actor, &onBehalf, &data, &at, &e.Hash); err != nil {
		return nil, err
	}
	e.Type = engine.EventType(typ)
	e.TaskID = task.String
	e.OnBehalf = onBehalf.String
	e.Data = rawArg(data)
	var err error
	if e.At, err = engine.ParseTime(at); err != nil {
		return nil, err
	}
	return &e, nil
}

// RunEvents implements engine.Querier.
func (db *DB) RunEvents(ctx context.Context, tenantID, runID string, afterSeq int64, limit int) ([]engine.Event, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE run_id = ? AND +tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
		runID, tenantID, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("events of %s: %w", runID, err)
	}
	defer rows.Close()
	var out []engine.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("events of %s: %w", runID, err)
		}
		out = append(out, *e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events of %s: %w", runID, err)
	}
	return out, nil
}
