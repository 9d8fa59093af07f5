package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// MaxPage is the largest page a list query returns.
const MaxPage = 1000

// RunFilter selects a tenant's runs, newest first.
type RunFilter struct {
	TenantID      string
	State         engine.RunState // "" = any
	Workflow      string          // "" = any
	CreatedAfter  time.Time       // zero = no bound; exclusive
	CreatedBefore time.Time       // zero = no bound; exclusive
	Limit         int             // 1..MaxPage
	// Cursor continues after the last run of the previous page.
	Cursor *RunCursor
}

// RunCursor is the position of a run in the newest-first order.
type RunCursor struct {
	CreatedAt string // in engine.TimeFormat
	ID        string
}

// runSummaryColumns are runColumns with NULL in place of input and output:
// a list carries summaries and never reads a run's payloads, which may be
// a megabyte each (GetRun has them).
var runSummaryColumns = strings.NewReplacer(" input,", " NULL,", " output,", " NULL,").Replace(runColumns)

// ListRuns returns one page of run summaries (runs without Input and
// Output) and the cursor of the next page (nil on the last). The query
// follows an index for every combination of filters: (tenant_id,
// created_at, id), plus state or workflow in front of created_at.
func (db *DB) ListRuns(ctx context.Context, f RunFilter) ([]engine.Run, *RunCursor, error) {
	if f.Limit < 1 || f.Limit > MaxPage {
		return nil, nil, fmt.Errorf("list runs: limit %d out of 1..%d", f.Limit, MaxPage)
	}
	q, args := f.query(f.Limit + 1)
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var out []engine.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, *r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list runs: %w", err)
	}
	var next *RunCursor
	if len(out) > f.Limit {
		out = out[:f.Limit]
		last := out[len(out)-1]
		next = &RunCursor{CreatedAt: engine.FormatTime(last.CreatedAt), ID: last.ID}
	}
	return out, next, nil
}

// query is the SQL of a page of limit runs.
func (f *RunFilter) query(limit int) (string, []any) {
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
		args = append(args, f.Cursor.CreatedAt, f.Cursor.ID)
	}
	args = append(args, limit)
	return `SELECT ` + runSummaryColumns + ` FROM runs WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY created_at DESC, id DESC LIMIT ?`, args
}

// EventFilter selects events of a tenant in log order.
type EventFilter struct {
	TenantID string
	RunID    string // "" = every run
	TaskID   string
	Type     engine.EventType
	Actor    string
	OnBehalf string    // whom the actor acted for (an X-Actor, a worker id)
	Since    time.Time // zero = no bound; inclusive
	Until    time.Time // zero = no bound; exclusive
	AfterID  int64     // cursor: events after this one (with a time bound: with AfterAt)
	AfterAt  string    // with Since or Until: the time of the AfterID event, in engine.TimeFormat
	AfterSeq int64     // with RunID: events with a larger seq
	Limit    int       // 1..MaxPage; 0 = no limit (streaming)
}

// Timed reports whether the filter has a time bound: events then come in
// time order and a cursor is (AfterAt, AfterID).
func (f *EventFilter) Timed() bool { return !f.Since.IsZero() || !f.Until.IsZero() }

func (f *EventFilter) query() (string, []any) {
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
		if f.AfterID > 0 {
			add("+id > ?", f.AfterID)
		}
	case f.Timed():
		order = "at, id"
		if f.AfterID > 0 {
			add("(at, id) > (?, ?)", f.AfterAt)
			args = append(args, f.AfterID)
		}
	case f.AfterID > 0:
		add("id > ?", f.AfterID)
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

// ListEvents returns up to f.Limit events matching f, in log order.
func (db *DB) ListEvents(ctx context.Context, f EventFilter) ([]engine.Event, error) {
	if f.Limit < 1 || f.Limit > MaxPage+1 { // one more than a page tells whether another follows
		return nil, fmt.Errorf("list events: limit %d out of 1..%d", f.Limit, MaxPage+1)
	}
	var out []engine.Event
	err := db.StreamEvents(ctx, f, func(e *engine.Event) error {
		out = append(out, *e)
		return nil
	})
	return out, err
}

// StreamEvents calls fn for every event matching f, in log order, reading
// in pages so that no read transaction stays open for long.
func (db *DB) StreamEvents(ctx context.Context, f EventFilter, fn func(*engine.Event) error) error {
	limit := f.Limit
	page := f
	for {
		page.Limit = 500
		if limit > 0 {
			page.Limit = min(500, limit)
		}
		q, args := page.query()
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
			page.AfterID, page.AfterAt = e.ID, engine.FormatTime(e.At)
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
func (db *DB) ExplainEvents(ctx context.Context, f EventFilter) (string, error) {
	q, args := f.query()
	return db.explain(ctx, q, args)
}

// ExplainRuns returns SQLite's query plan for a run list query.
func (db *DB) ExplainRuns(ctx context.Context, f RunFilter) (string, error) {
	q, args := f.query(50)
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

// FindIdempotencyKey implements engine.Store.
func (db *DB) FindIdempotencyKey(ctx context.Context, tenantID, key string) (runID, requestHash string, err error) {
	err = db.r.QueryRowContext(ctx, `SELECT run_id, request_hash FROM idempotency_keys WHERE tenant_id = ? AND key = ?`,
		tenantID, key).Scan(&runID, &requestHash)
	if err != nil {
		return "", "", notFound(err, "idempotency key")
	}
	return runID, requestHash, nil
}
