package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

var _ engine.ScheduleStore = (*DB)(nil)

const (
	scheduleColumns = `tenant_id, id, state, spec, version, seq, last_hash, cursor, last_run_id, buffered,
	fired, skipped, missed, failed, created_at, updated_at`
	scheduleEventColumns = `tenant_id, schedule_id, seq, type, actor, on_behalf, data, at, hash`

	sqlInsertSchedule = `INSERT INTO schedules (` + scheduleColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// sqlUpdateSchedule is a compare-and-set on the head of the log.
	sqlUpdateSchedule = `UPDATE schedules SET state = ?, spec = ?, version = ?, seq = ?, last_hash = ?, cursor = ?,
	last_run_id = ?, buffered = ?, fired = ?, skipped = ?, missed = ?, failed = ?, updated_at = ?
	WHERE tenant_id = ? AND id = ? AND seq = ?`
	sqlInsertScheduleEvent = `INSERT INTO schedule_events (` + scheduleEventColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlGetSchedule         = `SELECT ` + scheduleColumns + ` FROM schedules WHERE tenant_id = ? AND id = ?`
	sqlListSchedules       = `SELECT ` + scheduleColumns + ` FROM schedules
	WHERE tenant_id = ? AND state <> 'deleted' AND id > ? ORDER BY id LIMIT ?`
	sqlEachSchedule = `SELECT tenant_id, id FROM schedules WHERE (? = 0 OR state = 'active') AND (tenant_id, id) > (?, ?)
	ORDER BY tenant_id, id LIMIT 500`
)

// WriteSchedule implements engine.ScheduleStore.
func (db *DB) WriteSchedule(ctx context.Context, ch *engine.ScheduleChange) error {
	if err := db.write(ctx, func(tx *sql.Tx) error { return writeSchedule(tx, ch) }); err != nil {
		return fmt.Errorf("write schedule %s: %w", ch.Schedule.ID, err)
	}
	return nil
}

// writeSchedule writes a schedule's change in tx: the row, inserted or
// compare-and-set on seq, and its events.
func writeSchedule(tx *sql.Tx, ch *engine.ScheduleChange) error {
	s := &ch.Schedule
	if len(ch.Events) == 0 || s.Seq != ch.PrevSeq+int64(len(ch.Events)) {
		return fmt.Errorf("schedule %s: seq %d after %d with %d events: %w", s.ID, s.Seq, ch.PrevSeq, len(ch.Events), engine.ErrConflict)
	}
	spec, err := json.Marshal(s.Spec)
	if err != nil {
		return fmt.Errorf("encode schedule spec: %w", err)
	}
	var buffered any
	if len(s.Buffered) > 0 {
		ts := make([]string, len(s.Buffered))
		for i, t := range s.Buffered {
			ts[i] = engine.FormatTime(t)
		}
		b, err := json.Marshal(ts)
		if err != nil {
			return err
		}
		buffered = string(b)
	}
	if ch.Insert {
		if ch.PrevSeq != 0 {
			return fmt.Errorf("insert schedule %s after seq %d: %w", s.ID, ch.PrevSeq, engine.ErrConflict)
		}
		if _, err := tx.Exec(sqlInsertSchedule, s.TenantID, s.ID, string(s.State), string(spec), s.Version, s.Seq,
			s.LastHash, engine.FormatTime(s.Cursor), strArg(s.LastRunID), buffered, s.Fired, s.Skipped, s.Missed,
			s.Failed, engine.FormatTime(s.CreatedAt), engine.FormatTime(s.UpdatedAt)); err != nil {
			return constraintErr("insert schedule "+s.ID, err)
		}
	} else {
		res, err := tx.Exec(sqlUpdateSchedule, string(s.State), string(spec), s.Version, s.Seq, s.LastHash,
			engine.FormatTime(s.Cursor), strArg(s.LastRunID), buffered, s.Fired, s.Skipped, s.Missed, s.Failed,
			engine.FormatTime(s.UpdatedAt), s.TenantID, s.ID, ch.PrevSeq)
		if err != nil {
			return constraintErr("update schedule "+s.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			var seq int64
			if err := tx.QueryRow(`SELECT seq FROM schedules WHERE tenant_id = ? AND id = ?`, s.TenantID, s.ID).Scan(&seq); err != nil {
				return notFound(err, "schedule "+s.ID)
			}
			return fmt.Errorf("update schedule %s: seq is %d, not %d: %w", s.ID, seq, ch.PrevSeq, engine.ErrConflict)
		}
	}
	for i := range ch.Events {
		ev := &ch.Events[i]
		if ev.TenantID != s.TenantID || ev.ScheduleID != s.ID || ev.Seq != ch.PrevSeq+int64(i)+1 {
			return fmt.Errorf("schedule %s: event %d out of place: %w", s.ID, ev.Seq, engine.ErrConflict)
		}
		if _, err := tx.Exec(sqlInsertScheduleEvent, ev.TenantID, ev.ScheduleID, ev.Seq, string(ev.Type), ev.Actor,
			strArg(ev.OnBehalf), jsonArg(ev.Data), engine.FormatTime(ev.At), ev.Hash); err != nil {
			return constraintErr(fmt.Sprintf("append schedule event %s/%d", s.ID, ev.Seq), err)
		}
	}
	return nil
}

// GetSchedule implements engine.ScheduleStore.
func (db *DB) GetSchedule(ctx context.Context, tenantID, id string) (*engine.Schedule, error) {
	s, err := scanSchedule(db.r.QueryRowContext(ctx, sqlGetSchedule, tenantID, id))
	if err != nil {
		return nil, notFound(err, "schedule "+id)
	}
	return s, nil
}

// ListSchedules implements engine.ScheduleStore.
func (db *DB) ListSchedules(ctx context.Context, f engine.ScheduleFilter) ([]engine.Schedule, error) {
	if f.Limit < 1 || f.Limit > engine.MaxPage {
		return nil, fmt.Errorf("list schedules: limit %d out of 1..%d", f.Limit, engine.MaxPage)
	}
	rows, err := db.r.QueryContext(ctx, sqlListSchedules, f.TenantID, f.After, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return collect(rows, "list schedules", scanSchedule)
}

// EachSchedule implements engine.ScheduleStore. It reads in pages, so that
// fn runs with no read open.
func (db *DB) EachSchedule(ctx context.Context, active bool, fn func(tenantID, id string) error) error {
	var tenant, id string
	for {
		rows, err := db.r.QueryContext(ctx, sqlEachSchedule, active, tenant, id)
		if err != nil {
			return fmt.Errorf("each schedule: %w", err)
		}
		var page [][2]string
		for rows.Next() {
			var k [2]string
			if err := rows.Scan(&k[0], &k[1]); err != nil {
				rows.Close()
				return fmt.Errorf("each schedule: %w", err)
			}
			page = append(page, k)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("each schedule: %w", err)
		}
		for _, k := range page {
			if err := fn(k[0], k[1]); err != nil {
				return err
			}
		}
		if len(page) < 500 {
			return nil
		}
		tenant, id = page[len(page)-1][0], page[len(page)-1][1]
	}
}

// ScheduleEvents implements engine.ScheduleStore.
func (db *DB) ScheduleEvents(ctx context.Context, tenantID, id string, afterSeq int64, typ engine.ScheduleEventType, limit int) ([]engine.ScheduleEvent, error) {
	q := `SELECT ` + scheduleEventColumns + ` FROM schedule_events WHERE tenant_id = ? AND schedule_id = ? AND seq > ?`
	args := []any{tenantID, id, afterSeq}
	if typ != "" {
		q += ` AND type = ?`
		args = append(args, string(typ))
	}
	q += ` ORDER BY seq`
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("schedule events: %w", err)
	}
	return collect(rows, "schedule events", scanScheduleEvent)
}

func scanScheduleEvent(s scanner) (*engine.ScheduleEvent, error) {
	var ev engine.ScheduleEvent
	var typ, at string
	var onBehalf, data sql.NullString
	if err := s.Scan(&ev.TenantID, &ev.ScheduleID, &ev.Seq, &typ, &ev.Actor, &onBehalf, &data, &at, &ev.Hash); err != nil {
		return nil, err
	}
	ev.Type, ev.OnBehalf = engine.ScheduleEventType(typ), onBehalf.String
	if data.Valid {
		ev.Data = json.RawMessage(data.String)
	}
	var err error
	if ev.At, err = engine.ParseTime(at); err != nil {
		return nil, fmt.Errorf("schedule event %s/%d: %w", ev.ScheduleID, ev.Seq, err)
	}
	return &ev, nil
}

func scanSchedule(s scanner) (*engine.Schedule, error) {
	var sc engine.Schedule
	var state, spec, cursor, created, updated string
	var lastRun, buffered sql.NullString
	if err := s.Scan(&sc.TenantID, &sc.ID, &state, &spec, &sc.Version, &sc.Seq, &sc.LastHash, &cursor, &lastRun,
		&buffered, &sc.Fired, &sc.Skipped, &sc.Missed, &sc.Failed, &created, &updated); err != nil {
		return nil, err
	}
	sc.State, sc.LastRunID = engine.ScheduleState(state), lastRun.String
	if err := json.Unmarshal([]byte(spec), &sc.Spec); err != nil {
		return nil, fmt.Errorf("schedule %s spec: %w", sc.ID, err)
	}
	if buffered.Valid {
		var ts []string
		if err := json.Unmarshal([]byte(buffered.String), &ts); err != nil {
			return nil, fmt.Errorf("schedule %s buffered: %w", sc.ID, err)
		}
		for _, t := range ts {
			p, err := engine.ParseTime(t)
			if err != nil {
				return nil, fmt.Errorf("schedule %s buffered: %w", sc.ID, err)
			}
			sc.Buffered = append(sc.Buffered, p)
		}
	}
	var err error
	for _, f := range []struct {
		dst *time.Time
		src string
	}{{&sc.Cursor, cursor}, {&sc.CreatedAt, created}, {&sc.UpdatedAt, updated}} {
		if *f.dst, err = engine.ParseTime(f.src); err != nil {
			return nil, fmt.Errorf("schedule %s: %w", sc.ID, err)
		}
	}
	return &sc, nil
}
