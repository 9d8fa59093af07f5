package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

const (
	sqlInsertRun = `INSERT INTO runs (id, tenant_id, workflow, version, state, input, output, error,
	created_at, started_at, ended_at, deadline, updated_at, last_seq, last_hash, data_bytes,
	origin_kind, origin_id, origin_slot, origin_ref, alias, concurrency_key)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlUpdateRun = `UPDATE runs SET state = ?, output = ?, error = ?, started_at = ?, ended_at = ?,
	deadline = ?, updated_at = ?, last_seq = ?, last_hash = ?, data_bytes = ? WHERE id = ? AND last_seq = ?`
	// Most changes of a run leave its state as it was (a task moved on):
	// not naming state spares SQLite the three indexes on it.
	sqlUpdateRunSameState = `UPDATE runs SET output = ?, error = ?, started_at = ?, ended_at = ?,
	deadline = ?, updated_at = ?, last_seq = ?, last_hash = ?, data_bytes = ? WHERE id = ? AND last_seq = ?`
	sqlInsertTask = `INSERT INTO tasks (run_id, task_id, tenant_id, pos, type, state, attempt, charged,
	ready_at, not_before, started_at, ended_at, wake_at, error, output, input, worker_id, lease_expires_at, lease_hash, abandoned)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlUpdateTask = `UPDATE tasks SET state = ?, attempt = ?, charged = ?, ready_at = ?, not_before = ?,
	started_at = ?, ended_at = ?, wake_at = ?, error = ?, output = ?, input = ?, worker_id = ?,
	lease_expires_at = ?, lease_hash = ?, abandoned = ? WHERE run_id = ? AND task_id = ?`
	sqlInsertEvent = `INSERT INTO events (tenant_id, run_id, seq, type, task_id, attempt, actor, on_behalf, data, at, hash)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	eventValues = `, (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// Events are inserted in statements of eventChunks rows, largest first: one
// statement of 64 rows costs far less than 64 statements.
var eventChunks = [...]int{64, 8, 1}

// The writer's prepared statements, on its one connection, by index.
const (
	stInsertRun = iota
	stUpdateRun
	stUpdateRunSameState
	stInsertTask
	stUpdateTask
	stInsertEvent   // one row
	stInsertEvents8 // 8 rows
	stInsertEvents64
	numStmts
)

var stmtSQL = [numStmts]string{sqlInsertRun, sqlUpdateRun, sqlUpdateRunSameState, sqlInsertTask, sqlUpdateTask, sqlInsertEvent,
	sqlInsertEvent + strings.Repeat(eventValues, 7), sqlInsertEvent + strings.Repeat(eventValues, 63)}

// chunkStmt is the statement inserting n events.
func chunkStmt(n int) int {
	switch n {
	case 64:
		return stInsertEvents64
	case 8:
		return stInsertEvents8
	}
	return stInsertEvent
}

type stmts [numStmts]*sql.Stmt

func (db *DB) prepare(ctx context.Context) error {
	for i, q := range stmtSQL {
		s, err := db.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare statements: %w", err)
		}
		db.st[i] = s
	}
	return nil
}

// Commit implements engine.Writer: it queues changes for the next group commit
// and never blocks on the writer.
func (db *DB) Commit(changes []engine.Change, done func(error)) {
	db.submit(request{changes: changes, done: done})
}

// submit queues a request; after Close it fails at once with ErrClosed.
func (db *DB) submit(r request) {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		if r.done != nil {
			// Never call done before Commit returns: the caller may hold
			// the lock done takes.
			db.g.Go(func() { r.done(engine.ErrClosed) })
		}
		return
	}
	r.at = time.Now()
	db.queue = append(db.queue, r)
	db.load.queued += size(r)
	db.mu.Unlock()
	db.wake()
}

// write runs fn in the writer's transaction and waits until it is durable.
func (db *DB) write(ctx context.Context, fn func(*sql.Tx) error) error {
	ch := make(chan error, 1)
	db.submit(request{fn: fn, done: func(err error) { ch <- err }})
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (db *DB) wake() {
	select {
	case db.kick <- struct{}{}:
	default:
	}
}

// writeLoop commits queued requests: it takes what is queued up to the batch
// size, commits once, acknowledges all, and repeats. There is no timer: a lone
// request commits at once, and requests that arrive during a commit form the
// next batch.
func (db *DB) writeLoop() {
	var batch []request
	for {
		db.mu.Lock()
		batch = batch[:0]
		n := 0
		for len(db.queue) > 0 && (n == 0 || n+size(db.queue[0]) <= db.max) {
			n += size(db.queue[0])
			db.load.queued -= size(db.queue[0])
			batch = append(batch, db.queue[0])
			db.queue[0] = request{}
			db.queue = db.queue[1:]
		}
		if len(db.queue) == 0 {
			db.queue = nil // let the backing array go
		}
		closed := db.closed
		db.load.busy.Store(len(batch) > 0)
		db.mu.Unlock()
		if len(batch) > 0 {
			db.commitBatch(batch)
			db.load.committed(time.Since(batch[0].at)) // the oldest write of the batch
			db.load.busy.Store(false)
			continue
		}
		if closed {
			return
		}
		<-db.kick
	}
}

// size is what a request counts for the batch limit: its events, at least 1.
func size(r request) int { return max(events(r), 1) }

func events(r request) int {
	n := 0
	for i := range r.changes {
		n += len(r.changes[i].Events)
	}
	return n
}

// commitBatch commits a batch in one transaction. If it fails, every request
// is retried in a transaction of its own, so one bad request fails alone.
func (db *DB) commitBatch(batch []request) {
	start := time.Now()
	err := db.inTx(func(tx *sql.Tx) error {
		return db.apply(&txStmts{tx: tx, st: &db.st}, batch)
	})
	if reason, ok := storageReason(err); ok {
		err = unavailable(reason, err)
		db.health.failed(reason, err)
	}
	if err == nil {
		db.health.succeeded()
		n := 0
		for _, r := range batch {
			n += events(r)
		}
		db.m.commitLatency.UpdateDuration(start)
		db.m.batchSize.Update(float64(n))
		db.m.commits.Inc()
		db.m.events.Add(n)
		for _, r := range batch {
			if r.done != nil {
				r.done(nil)
			}
		}
		return
	}
	if len(batch) == 1 {
		db.m.errors.Inc()
		if r := batch[0]; r.done != nil {
			r.done(err)
		}
		return
	}
	for _, r := range batch {
		db.commitBatch([]request{r})
	}
}

// inTx runs fn in a transaction on the write connection, rolling back on
// error and on panic.
func (db *DB) inTx(fn func(*sql.Tx) error) (err error) {
	ctx := context.Background()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			err = fmt.Errorf("write panicked: %v", p)
		}
	}()
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// txStmts are the writer's statements bound to one transaction, made once
// per batch: binding costs a lock and an allocation each time.
type txStmts struct {
	tx    *sql.Tx
	st    *stmts
	bound stmts
}

func (t *txStmts) get(i int) *sql.Stmt {
	if t.bound[i] == nil {
		t.bound[i] = t.tx.Stmt(t.st[i])
	}
	return t.bound[i]
}

// apply writes a batch. Changes of one run that follow each other in the
// batch are merged first: the run row is written once, each task row once,
// and the events go in multi-row inserts in their order.
func (db *DB) apply(ts *txStmts, batch []request) error {
	var merged []*engine.Change
	byRun := map[string]*engine.Change{}
	taskIdx := map[*engine.Change]map[string]int{}
	var events []*engine.Event
	for _, r := range batch {
		if r.fn != nil {
			if err := r.fn(ts.tx); err != nil {
				return err
			}
			continue
		}
		for i := range r.changes {
			ch := &r.changes[i]
			// Merging writes only the final rows, so check each change's
			// rows here as the schema would have.
			if err := checkRows(ch); err != nil {
				return err
			}
			for j := range ch.Events {
				events = append(events, &ch.Events[j])
			}
			m := byRun[ch.Run.ID]
			if m == nil {
				c := *ch
				c.Events = nil
				byRun[ch.Run.ID] = &c
				merged = append(merged, &c)
				continue
			}
			if ch.Insert || ch.PrevSeq != m.Run.LastSeq {
				return fmt.Errorf("run %s: change after seq %d follows seq %d: %w", ch.Run.ID, ch.PrevSeq, m.Run.LastSeq, engine.ErrConflict)
			}
			m.Run = ch.Run
			idx := taskIdx[m]
			if idx == nil {
				// Copy before writing: the request's own slice must stay as
				// it was in case the batch fails and is retried alone.
				m.Tasks = append([]engine.Task(nil), m.Tasks...)
				idx = make(map[string]int, len(m.Tasks))
				for k := range m.Tasks {
					idx[m.Tasks[k].TaskID] = k
				}
				taskIdx[m] = idx
			}
			for _, t := range ch.Tasks {
				if k, ok := idx[t.TaskID]; ok {
					m.Tasks[k] = t
				} else if m.Insert {
					return fmt.Errorf("update task %s/%s: %w", t.RunID, t.TaskID, engine.ErrNotFound)
				} else {
					idx[t.TaskID] = len(m.Tasks)
					m.Tasks = append(m.Tasks, t)
				}
			}
		}
	}
	for _, m := range merged {
		if err := db.applyChange(ts, m); err != nil {
			return err
		}
	}
	return db.insertEvents(ts, events)
}

// The states the schema's CHECK constraints accept, listed once: checkRows
// runs for every change.
var (
	runStates  = engine.RunStates()
	taskStates = engine.TaskStates()
)

// checkRows refuses rows the schema's CHECK constraints would refuse.
func checkRows(ch *engine.Change) error {
	r := &ch.Run
	if !slices.Contains(runStates, r.State) || r.EndedAt.IsZero() == r.State.Terminal() {
		return fmt.Errorf("run %s: state %q with ended_at %v: %w", r.ID, r.State, r.EndedAt, engine.ErrConflict)
	}
	for i := range ch.Tasks {
		t := &ch.Tasks[i]
		if !slices.Contains(taskStates, t.State) || t.EndedAt.IsZero() == t.State.Terminal() {
			return fmt.Errorf("task %s/%s: state %q with ended_at %v: %w", t.RunID, t.TaskID, t.State, t.EndedAt, engine.ErrConflict)
		}
	}
	return nil
}

// insertEvents appends events in order, in chunks of eventChunks rows.
func (db *DB) insertEvents(ts *txStmts, events []*engine.Event) error {
	args := make([]any, 0, 11*eventChunks[0])
	for len(events) > 0 {
		n := 1
		for _, c := range eventChunks {
			if len(events) >= c {
				n = c
				break
			}
		}
		args = args[:0]
		for _, e := range events[:n] {
			args = append(args, e.TenantID, e.RunID, e.Seq, string(e.Type), strArg(e.TaskID), e.Attempt, e.Actor,
				strArg(e.OnBehalf), jsonArg(e.Data), engine.FormatTime(e.At), e.Hash)
		}
		if _, err := ts.get(chunkStmt(n)).Exec(args...); err != nil {
			return constraintErr(fmt.Sprintf("append %d events from %s/%d", n, events[0].RunID, events[0].Seq), err)
		}
		events = events[n:]
	}
	return nil
}

// applyChange writes one run's projection rows. The run row is a
// compare-and-set on last_seq, so a change computed from a stale state fails.
func (db *DB) applyChange(ts *txStmts, ch *engine.Change) error {
	run := &ch.Run
	if ch.Insert {
		if ch.PrevSeq != 0 {
			return fmt.Errorf("insert run %s after seq %d: %w", run.ID, ch.PrevSeq, engine.ErrConflict)
		}
		if d := ch.Definition; d != nil {
			if _, err := ts.tx.Exec(sqlInsertDefinition, definitionArgs(d, d.Version)...); err != nil {
				return constraintErr(fmt.Sprintf("insert definition %s v%d", d.Name, d.Version), err)
			}
		}
		_, err := ts.get(stInsertRun).Exec(append([]any{run.ID, run.TenantID, run.Workflow, run.Version, string(run.State),
			jsonArg(run.Input), jsonArg(run.Output), errArg(run.Error), timeArg(run.CreatedAt), timeArg(run.StartedAt),
			timeArg(run.EndedAt), timeArg(run.Deadline), timeArg(run.UpdatedAt), run.LastSeq, run.LastHash, run.DataBytes},
			append(originArgs(run.Origin, run.Alias), strArg(run.ConcurrencyKey))...)...)
		if err != nil {
			return constraintErr(fmt.Sprintf("insert run %s", run.ID), err)
		}
		if ch.IdempotencyKey != "" {
			if _, err := ts.tx.Exec(`INSERT INTO idempotency_keys (tenant_id, key, request_hash, run_id, created_at)
				VALUES (?, ?, ?, ?, ?)`, run.TenantID, ch.IdempotencyKey, ch.RequestHash, run.ID, timeArg(run.CreatedAt)); err != nil {
				return constraintErr("idempotency key", err)
			}
		}
		if ch.Schedule != nil {
			if err := writeSchedule(ts.tx, ch.Schedule); err != nil {
				return err
			}
		}
		st := ts.get(stInsertTask)
		for i := range ch.Tasks {
			t := &ch.Tasks[i]
			if _, err := st.Exec(t.RunID, t.TaskID, run.TenantID, t.Pos, t.Type, string(t.State), t.Attempt, t.Charged,
				timeArg(t.ReadyAt), timeArg(t.NotBefore), timeArg(t.StartedAt), timeArg(t.EndedAt), timeArg(t.WakeAt),
				errArg(t.Error), jsonArg(t.Output), jsonArg(t.Input), strArg(t.WorkerID), timeArg(t.LeaseExpiresAt),
				strArg(t.LeaseHash), t.Abandoned); err != nil {
				return constraintErr(fmt.Sprintf("insert task %s/%s", t.RunID, t.TaskID), err)
			}
		}
	} else {
		args := []any{jsonArg(run.Output), errArg(run.Error), timeArg(run.StartedAt), timeArg(run.EndedAt),
			timeArg(run.Deadline), timeArg(run.UpdatedAt), run.LastSeq, run.LastHash, run.DataBytes, run.ID, ch.PrevSeq}
		runSt := ts.get(stUpdateRunSameState)
		if ch.PrevState != run.State {
			runSt = ts.get(stUpdateRun)
			args = append([]any{string(run.State)}, args...)
		}
		res, err := runSt.Exec(args...)
		if err != nil {
			return constraintErr(fmt.Sprintf("update run %s", run.ID), err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("update run %s: last seq is not %d: %w", run.ID, ch.PrevSeq, engine.ErrConflict)
		}
		st := ts.get(stUpdateTask)
		for i := range ch.Tasks {
			t := &ch.Tasks[i]
			res, err := st.Exec(string(t.State), t.Attempt, t.Charged, timeArg(t.ReadyAt), timeArg(t.NotBefore),
				timeArg(t.StartedAt), timeArg(t.EndedAt), timeArg(t.WakeAt), errArg(t.Error), jsonArg(t.Output),
				jsonArg(t.Input), strArg(t.WorkerID), timeArg(t.LeaseExpiresAt), strArg(t.LeaseHash), t.Abandoned,
				t.RunID, t.TaskID)
			if err != nil {
				return constraintErr(fmt.Sprintf("update task %s/%s", t.RunID, t.TaskID), err)
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return fmt.Errorf("update task %s/%s: %w", t.RunID, t.TaskID, engine.ErrNotFound)
			}
		}
	}
	return nil
}

func strArg(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func timeArg(t time.Time) any { return strArg(engine.FormatTime(t)) }

func jsonArg(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return string(m)
}

func errArg(e *engine.TaskError) any {
	if e == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil
	}
	return string(b)
}

var errNoRows = sql.ErrNoRows

func notFound(err error, what string) error {
	if errors.Is(err, errNoRows) {
		return fmt.Errorf("%s: %w", what, engine.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// originArgs are the origin columns of a run: NULL for a run without one.
func originArgs(o *engine.Origin, alias string) []any {
	if o == nil {
		return []any{nil, nil, nil, nil, strArg(alias)}
	}
	return []any{string(o.Kind), o.ID, timeArg(o.Slot), strArg(o.Ref), strArg(alias)}
}
