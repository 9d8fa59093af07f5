package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/orchestrator/orchestrator/engine"
)

// runSummaryColumns are runColumns with NULL in place of input and output:
// a list carries summaries and never reads a run's payloads, which may be
// a megabyte each (LoadRun has them).
var runSummaryColumns = strings.NewReplacer(" input,", " NULL,", " output,", " NULL,").Replace(runColumns)

// ListRuns implements engine.Querier: one page of run summaries (runs
// without Input and Output). The query follows an index for every
// combination of filters: (tenant_id, created_at, id), plus state or
// workflow in front of created_at.
func (db *DB) ListRuns(ctx context.Context, f engine.RunFilter) ([]engine.Run, *engine.RunCursor, error) {
	if err := f.Validate(); err != nil {
		return nil, nil, err
	}
	q, args := runsQuery(&f, f.Limit+1)
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list runs: %w", err)
	}
	out, err := collect(rows, "list runs", scanRun)
	if err != nil {
		return nil, nil, err
	}
	var next *engine.RunCursor
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = engine.CursorOf(&out[len(out)-1])
	}
	return out, next, nil
}

// runsQuery is the SQL of a page of limit runs.
func runsQuery(f *engine.RunFilter, limit int) (string, []any) {
	where, args := runsWhere(f)
	args = append(args, limit)
	return `SELECT ` + runSummaryColumns + ` FROM runs WHERE ` + where + ` ORDER BY created_at DESC, id DESC LIMIT ?`, args
}

// runsWhere is the condition of the runs f selects, and its arguments.
func runsWhere(f *engine.RunFilter) (string, []any) {
	where := []string{"tenant_id = ?"}
	args := []any{f.TenantID}
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	}
	if f.Workflow != "" {
		where = append(where, "workflow = ?")
		args = append(args, f.Workflow)
	}
	if f.OriginKind != "" {
		where = append(where, "origin_kind = ?")
		args = append(args, string(f.OriginKind))
	}
	if f.OriginID != "" {
		where = append(where, "origin_id = ?")
		args = append(args, f.OriginID)
	}
	if !f.CreatedAfter.IsZero() {
		where = append(where, "created_at > ?")
		args = append(args, engine.FormatTime(f.CreatedAfter))
	}
	if !f.CreatedBefore.IsZero() {
		where = append(where, "created_at < ?")
		args = append(args, engine.FormatTime(f.CreatedBefore))
	}
	if f.Cursor != nil {
		where = append(where, "(created_at, id) < (?, ?)")
		args = append(args, engine.FormatTime(f.Cursor.CreatedAt), f.Cursor.ID)
	}
	return strings.Join(where, " AND "), args
}

// eventsQuery is the SQL of the events f selects.
func eventsQuery(f *engine.EventFilter) (string, []any) {
	where := []string{"tenant_id = ?"}
	args := []any{f.TenantID}
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if f.RunID != "" {
		add("run_id = ?", f.RunID)
	}
	if f.TaskID != "" {
		add("task_id = ?", f.TaskID)
	}
	if f.Type != "" {
		add("type = ?", string(f.Type))
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.OnBehalf != "" {
		add("on_behalf = ?", f.OnBehalf)
	}
	if !f.Since.IsZero() {
		add("at >= ?", engine.FormatTime(f.Since))
	}
	if !f.Until.IsZero() {
		add("at < ?", engine.FormatTime(f.Until))
	}
	// The order follows the index that narrows the query most: a run's own
	// events by seq (the same order as id, as a run's events are appended in
	// seq order), a time window by (at, id), anything else by id. The "+"
	// keeps SQLite from choosing the id index over the run's.
	order := "id"
	switch {
	case f.RunID != "":
		order = "seq"
		if f.After != nil {
			add("+id > ?", f.After.ID)
		}
	case f.Timed():
		order = "at, id"
		if f.After != nil {
			add("(at, id) > (?, ?)", engine.FormatTime(f.After.At))
			args = append(args, f.After.ID)
		}
	case f.After != nil:
		add("id > ?", f.After.ID)
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	q := `SELECT ` + eventColumns + ` FROM events WHERE ` + strings.Join(where, " AND ") + ` ORDER BY ` + order
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return q, args
}

// ListEvents implements engine.Querier.
func (db *DB) ListEvents(ctx context.Context, f engine.EventFilter) ([]engine.Event, error) {
	if err := f.Validate(true); err != nil {
		return nil, err
	}
	var out []engine.Event
	err := db.StreamEvents(ctx, f, func(e *engine.Event) error {
		out = append(out, *e)
		return nil
	})
	return out, err
}

// StreamEvents implements engine.Querier, reading in pages so that no read
// transaction stays open for long.
func (db *DB) StreamEvents(ctx context.Context, f engine.EventFilter, fn func(*engine.Event) error) error {
	if err := f.Validate(false); err != nil {
		return err
	}
	limit := f.Limit
	page := f
	var cursor engine.EventCursor // where the next page starts
	if f.After != nil {
		cursor = *f.After
		page.After = &cursor
	}
	for {
		page.Limit = 500
		if limit > 0 {
			page.Limit = min(500, limit)
		}
		q, args := eventsQuery(&page)
		rows, err := db.r.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		n := 0
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("events: %w", err)
			}
			n++
			cursor = engine.EventCursor{ID: e.ID, At: e.At}
			page.After = &cursor
			if err := fn(e); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if limit > 0 {
			limit -= n
			if limit <= 0 {
				return nil
			}
		}
		if n < page.Limit {
			return nil
		}
	}
}

// ExplainEvents returns SQLite's query plan for an event query, for tests
// and operators that want to see which index a filter uses.
func (db *DB) ExplainEvents(ctx context.Context, f engine.EventFilter) (string, error) {
	q, args := eventsQuery(&f)
	return db.explain(ctx, q, args)
}

// ExplainRuns returns SQLite's query plan for a run list query.
func (db *DB) ExplainRuns(ctx context.Context, f engine.RunFilter) (string, error) {
	q, args := runsQuery(&f, 50)
	return db.explain(ctx, q, args)
}

func (db *DB) explain(ctx context.Context, q string, args []any) (string, error) {
	rows, err := db.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return "", err
		}
		lines = append(lines, detail)
	}
	return strings.Join(lines, "\n"), rows.Err()
}

// FindIdempotencyKey implements engine.Reader.
func (db *DB) FindIdempotencyKey(ctx context.Context, tenantID, key string) (runID, requestHash string, err error) {
	err = db.r.QueryRowContext(ctx, `SELECT run_id, request_hash FROM idempotency_keys WHERE tenant_id = ? AND key = ?`,
		tenantID, key).Scan(&runID, &requestHash)
	if err != nil {
		return "", "", notFound(err, "idempotency key")
	}
	return runID, requestHash, nil
}

var _ engine.RunCounter = (*DB)(nil)

// CountRuns implements engine.RunCounter: one GROUP BY over the tenant's
// state index (or its workflow or origin index), however many runs.
func (db *DB) CountRuns(ctx context.Context, f engine.RunFilter) (map[engine.RunState]int, error) {
	f.State, f.Cursor = "", nil
	if f.OriginID != "" && f.OriginKind == "" {
		return nil, fmt.Errorf("count runs: an origin id needs its kind")
	}
	where, args := runsWhere(&f)
	rows, err := db.r.QueryContext(ctx, `SELECT state, count(*) FROM runs WHERE `+where+` GROUP BY state`, args...)
	if err != nil {
		return nil, fmt.Errorf("count runs: %w", err)
	}
	defer rows.Close()
	out := map[engine.RunState]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count runs: %w", err)
		}
		out[engine.RunState(st)] = n
	}
	return out, rows.Err()
}
