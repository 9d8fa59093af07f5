package store_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/schema"
	"github.com/orchestrator/orchestrator/store"
	"github.com/orchestrator/orchestrator/store/storetest"
)

// patience bounds every wait of these tests; reaching it is a failure, not a
// way to wait.
const patience = 20 * time.Second

// wfJSON is a definition of two noop tasks, b after a.
const wfJSON = `{"name":"wf","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`

// base is the first time of hand-made histories; it carries nanoseconds so
// that the store's microsecond precision shows.
var base = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

// openTestStore opens a store on a fresh file and closes it at cleanup.
func openTestStore(t testing.TB) *store.DB {
	t.Helper()
	return openTestStoreWith(t, store.Options{})
}

// openTestStoreWith is openTestStore with options.
func openTestStoreWith(t testing.TB, opts store.Options) *store.DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "s.db"), opts)
}

// openAt opens a store on path and closes it at cleanup.
func openAt(t testing.TB, path string, opts store.Options) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return db
}

// rawDB opens a second, plain connection pool on the store's file, to look at
// and tamper with the database behind the store's back.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open raw connection: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// recv receives from ch or fails the test after patience.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// commit commits changes and waits for the acknowledgement.
func commit(t testing.TB, db *store.DB, changes ...engine.Change) error {
	t.Helper()
	ch := make(chan error, 1)
	db.Commit(changes, func(err error) { ch <- err })
	return recv(t, ch, "commit acknowledgement")
}

// holdWriter parks the store's writer goroutine inside the done callback of an
// empty commit, so that everything submitted afterwards queues up and forms
// the next batches. The returned function lets the writer go; it also runs at
// cleanup, before the store is closed.
func holdWriter(t testing.TB, db *store.DB) (release func()) {
	t.Helper()
	held := make(chan struct{})
	let := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(let) }) }
	t.Cleanup(release)
	db.Commit(nil, func(error) {
		close(held)
		<-let // blocks the writer on purpose
	})
	recv(t, held, "writer held")
	return release
}

// putDefinition stores a definition the way the engine does (canonical JSON
// and its sha256) and returns its plan.
func putDefinition(t testing.TB, db *store.DB, tenant, data string) (*engine.StoredDefinition, *definition.Plan) {
	t.Helper()
	sd, plan := storedDefinition(t, tenant, data)
	got, _, err := db.PutDefinition(context.Background(), sd)
	if err != nil {
		t.Fatalf("put definition: %v", err)
	}
	return got, plan
}

// storedDefinition compiles a definition and returns what PutDefinition takes.
func storedDefinition(t testing.TB, tenant, data string) (*engine.StoredDefinition, *definition.Plan) {
	t.Helper()
	def, plan, problems := definition.CompileJSON([]byte(data), definition.ValidateOptions{})
	if len(problems) > 0 {
		t.Fatalf("compile definition: %v", problems)
	}
	canonical, err := json.Marshal(def)
	if err != nil {
		t.Fatalf("encode definition: %v", err)
	}
	sum := sha256.Sum256(canonical)
	return &engine.StoredDefinition{TenantID: tenant, Name: def.Name, Definition: canonical,
		Hash: hex.EncodeToString(sum[:]), CreatedAt: base}, plan
}

// ev is an event to add to a history.
type ev struct {
	typ     engine.EventType
	task    string
	attempt int
	data    *engine.EventData
}

// history builds a run's events by hand, as the engine would: numbered,
// hash-chained, and folded through engine.Replay into the rows they produce.
// It is not safe for concurrent use.
type history struct {
	t      testing.TB
	plan   *definition.Plan
	tenant string
	runID  string
	clock  time.Time
	events []engine.Event
	tasks  []engine.Task // the task rows after events
}

func newHistory(t testing.TB, plan *definition.Plan, tenant, runID string) *history {
	return &history{t: t, plan: plan, tenant: tenant, runID: runID, clock: base}
}

// next appends events and returns the Change that records them: an insert
// for the first events of the run, else an update after the last seq.
func (h *history) next(evs ...ev) engine.Change {
	h.t.Helper()
	prevSeq := int64(len(h.events))
	prevHash := ""
	if prevSeq > 0 {
		prevHash = h.events[prevSeq-1].Hash
	}
	var added []engine.Event
	for _, s := range evs {
		h.clock = h.clock.Add(time.Millisecond + 789*time.Nanosecond)
		e := engine.Event{TenantID: h.tenant, RunID: h.runID, Seq: int64(len(h.events) + 1), Type: s.typ,
			TaskID: s.task, Attempt: s.attempt, Actor: "test", At: h.clock}
		if s.data != nil {
			b, err := json.Marshal(s.data)
			if err != nil {
				h.t.Fatalf("encode event data: %v", err)
			}
			e.Data = b
		}
		e.Hash = e.ComputeHash(prevHash)
		prevHash = e.Hash
		h.events = append(h.events, e)
		added = append(added, e)
	}
	v, err := engine.Replay(h.plan, h.events)
	if err != nil {
		h.t.Fatalf("replay %s: %v", h.runID, err)
	}
	ch := engine.Change{Run: v.Run, Insert: prevSeq == 0, PrevSeq: prevSeq, Events: added}
	if ch.Insert {
		ch.Tasks = slices.Clone(v.Tasks)
	} else {
		// Like the engine, an update carries only the task rows it changed.
		for i := range v.Tasks {
			if !engine.EqualTask(&v.Tasks[i], &h.tasks[i]) {
				ch.Tasks = append(ch.Tasks, v.Tasks[i])
			}
		}
	}
	h.tasks = slices.Clone(v.Tasks)
	return ch
}

// Events of the hand-made histories.
var (
	evCreated = ev{typ: engine.EventRunCreated, data: &engine.EventData{Workflow: "wf", Version: 1,
		Input: json.RawMessage(`{"n":1}`)}}
	evStarted = ev{typ: engine.EventRunStarted}
)

// lifecycle returns the four changes of a run of wfJSON, seven events in all:
// created+started+a ready; a started; a completed+b ready; b started.
func lifecycle(h *history) []engine.Change {
	return []engine.Change{
		h.next(evCreated, evStarted, ev{typ: engine.EventTaskReady, task: "a"}),
		h.next(ev{typ: engine.EventTaskStarted, task: "a", attempt: 1}),
		h.next(ev{typ: engine.EventTaskCompleted, task: "a", attempt: 1, data: &engine.EventData{Output: json.RawMessage(`{"a":1}`)}},
			ev{typ: engine.EventTaskReady, task: "b"}),
		h.next(ev{typ: engine.EventTaskStarted, task: "b", attempt: 1}),
	}
}

// micro returns t as the store keeps it.
func micro(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// stored returns a run row as LoadRun gives it back.
func storedRun(r engine.Run) engine.Run {
	r.CreatedAt, r.StartedAt, r.EndedAt = micro(r.CreatedAt), micro(r.StartedAt), micro(r.EndedAt)
	r.Deadline, r.UpdatedAt = micro(r.Deadline), micro(r.UpdatedAt)
	return r
}

// storedTask returns a task row as LoadRun gives it back.
func storedTask(t engine.Task) engine.Task {
	t.ReadyAt, t.NotBefore, t.StartedAt = micro(t.ReadyAt), micro(t.NotBefore), micro(t.StartedAt)
	t.EndedAt, t.WakeAt, t.LeaseExpiresAt = micro(t.EndedAt), micro(t.WakeAt), micro(t.LeaseExpiresAt)
	return t
}

// storedEvents returns events as RunEvents gives them back, without ids.
func storedEvents(evs []engine.Event) []engine.Event {
	out := make([]engine.Event, len(evs))
	for i, e := range evs {
		e.At = micro(e.At)
		out[i] = e
	}
	return out
}

// withoutIDs clears the store-assigned ids of events.
func withoutIDs(evs []engine.Event) []engine.Event {
	out := slices.Clone(evs)
	for i := range out {
		out[i].ID = 0
	}
	return out
}

// count runs a counting query on a raw connection.
func count(t testing.TB, raw *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := raw.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// metricValue reads one metric from set in the Prometheus text format.
func metricValue(t testing.TB, set *metrics.Set, name string) float64 {
	t.Helper()
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found in:\n%s", name, buf.String())
	return 0
}

// latestMigration returns the highest version among the embedded migrations.
func latestMigration(t testing.TB) int {
	t.Helper()
	vs := migrationVersions(t)
	return vs[len(vs)-1]
}

// migrationVersions returns the version of every migration, ascending;
// versions need not be consecutive.
func migrationVersions(t testing.TB) []int {
	t.Helper()
	names, err := fs.Glob(schema.FS, "*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("list migrations: %v %v", names, err)
	}
	var vs []int
	for _, name := range names {
		v, err := strconv.Atoi(name[:strings.IndexByte(name, '_')])
		if err != nil {
			t.Fatalf("migration %s: %v", name, err)
		}
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

// TestStore_Conformance holds the SQLite store to the contract every
// engine.Store meets.
func TestStore_Conformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) engine.Store { return openTestStore(t) })
}

func TestStore_Migrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("Open applies the migrations", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		raw := rawDB(t, db.Path())
		rows, err := raw.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
		is.NoErr(err) // list tables
		var tables []string
		for rows.Next() {
			var name string
			is.NoErr(rows.Scan(&name)) // table name
			tables = append(tables, name)
		}
		is.NoErr(rows.Err()) // list tables
		for _, want := range []string{"events", "goose_db_version", "runs", "tasks", "workflows"} {
			is.True(slices.Contains(tables, want)) // table exists
		}
		is.Equal(count(t, raw, `SELECT count(*) FROM goose_db_version WHERE version_id = 1`), 1)    // version 1 applied
		is.Equal(count(t, raw, `SELECT max(version_id) FROM goose_db_version`), latestMigration(t)) // and every later one
		is.Equal(count(t, raw, `SELECT count(*) FROM sqlite_master WHERE type = 'trigger'
			AND name IN ('events_no_update', 'events_no_delete', 'workflows_no_update', 'workflows_no_delete')`), 4) // immutability triggers
		is.NoErr(db.Ping(ctx)) // store answers
	})

	t.Run("Open twice on the same file is fine", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		path := filepath.Join(t.TempDir(), "s.db")
		first, err := store.Open(ctx, path, store.Options{})
		is.NoErr(err) // first open
		sd, _ := putDefinition(t, first, "default", wfJSON)
		is.Equal(sd.Version, 1) // stored through the first store

		second := openAt(t, path, store.Options{}) // while the first is open
		is.NoErr(second.Ping(ctx))                 // second store answers
		got, err := second.GetDefinition(ctx, "default", "wf", 0)
		is.NoErr(err)               // second store sees the first one's data
		is.Equal(got.Hash, sd.Hash) // same definition
		is.NoErr(first.Close())     // close the first

		third := openAt(t, path, store.Options{}) // after the first closed
		got, err = third.GetDefinition(ctx, "default", "wf", 1)
		is.NoErr(err)                                                                                       // data survives reopening
		is.Equal(got.Hash, sd.Hash)                                                                         // same definition
		is.Equal(count(t, rawDB(t, path), `SELECT count(*) FROM goose_db_version WHERE version_id = 1`), 1) // migration applied once
	})

	t.Run("Migrate on a fresh path creates the schema", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		path := filepath.Join(t.TempDir(), "m.db")
		is.NoErr(store.Migrate(ctx, path)) // migrate fresh file
		is.NoErr(store.Migrate(ctx, path)) // migrating again is a no-op
		raw := rawDB(t, path)
		is.Equal(count(t, raw, `SELECT max(version_id) FROM goose_db_version`), latestMigration(t))               // every migration applied
		is.Equal(count(t, raw, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'`), 1) // events table
		db := openAt(t, path, store.Options{})
		is.NoErr(db.Ping(ctx)) // Open accepts a migrated file
	})

	t.Run("Open refuses an unknown synchronous mode", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"), store.Options{Synchronous: "sometimes"})
		is.True(err != nil) // bad option refused
	})
}

func TestStore_Triggers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("events refuse UPDATE and DELETE", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		_, plan := putDefinition(t, db, "default", wfJSON)
		h := newHistory(t, plan, "default", "r1")
		is.NoErr(commit(t, db, lifecycle(h)[0])) // three events
		before, err := db.RunEvents(ctx, "default", "r1", 0, 0)
		is.NoErr(err) // events before

		raw := rawDB(t, db.Path())
		_, err = raw.Exec(`UPDATE events SET data = '{"forged":true}'`)
		is.True(err != nil)                                   // update refused
		is.True(strings.Contains(err.Error(), "append-only")) // says why
		_, err = raw.Exec(`DELETE FROM events`)
		is.True(err != nil)                                   // delete refused
		is.True(strings.Contains(err.Error(), "append-only")) // says why

		after, err := db.RunEvents(ctx, "default", "r1", 0, 0)
		is.NoErr(err)                                        // events after
		is.Equal(after, before)                              // unchanged
		is.Equal(len(after), 3)                              // all still there
		is.NoErr(engine.VerifyRun(ctx, db, "default", "r1")) // still verifies
	})

	t.Run("workflows refuse UPDATE and DELETE", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		sd, _ := putDefinition(t, db, "default", wfJSON)
		raw := rawDB(t, db.Path())
		_, err := raw.Exec(`UPDATE workflows SET hash = 'x'`)
		is.True(err != nil)                                 // update refused
		is.True(strings.Contains(err.Error(), "immutable")) // says why
		_, err = raw.Exec(`DELETE FROM workflows`)
		is.True(err != nil)                                 // delete refused
		is.True(strings.Contains(err.Error(), "immutable")) // says why
		got, err := db.GetDefinition(ctx, "default", "wf", 1)
		is.NoErr(err)                                           // still there
		is.Equal(got.Hash, sd.Hash)                             // unchanged hash
		is.Equal(string(got.Definition), string(sd.Definition)) // unchanged definition
	})
}

func TestStore_Constraints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	is := is.New(t)
	db := openTestStore(t)
	putDefinition(t, db, "default", wfJSON)
	raw := rawDB(t, db.Path())
	const insert = `INSERT INTO runs (id, tenant_id, workflow, version, state, created_at, ended_at, updated_at, last_seq, last_hash)
		VALUES (?, 'default', 'wf', 1, ?, '2024-01-01T00:00:00.000000Z', ?, '2024-01-01T00:00:00.000000Z', 1, 'h')`

	t.Run("a valid row is accepted", func(t *testing.T) {
		is := is.New(t)
		_, err := raw.Exec(insert, "ok-pending", "pending", nil)
		is.NoErr(err) // pending without ended_at
		_, err = raw.Exec(insert, "ok-completed", "completed", "2024-01-01T00:00:01.000000Z")
		is.NoErr(err) // completed with ended_at
	})

	t.Run("an unknown state is refused", func(t *testing.T) {
		is := is.New(t)
		_, err := raw.Exec(insert, "bad-state", "sleeping", nil)
		is.True(err != nil)                                               // refused
		is.True(strings.Contains(err.Error(), "CHECK constraint failed")) // by a CHECK
	})

	t.Run("a terminal state without ended_at is refused", func(t *testing.T) {
		is := is.New(t)
		for _, s := range []string{"completed", "failed", "cancelled", "timed_out"} {
			_, err := raw.Exec(insert, "bad-"+s, s, nil)
			is.True(err != nil)                                               // refused
			is.True(strings.Contains(err.Error(), "CHECK constraint failed")) // by a CHECK
		}
	})

	t.Run("an active state with ended_at is refused", func(t *testing.T) {
		is := is.New(t)
		_, err := raw.Exec(insert, "bad-running", "running", "2024-01-01T00:00:01.000000Z")
		is.True(err != nil)                                               // refused
		is.True(strings.Contains(err.Error(), "CHECK constraint failed")) // by a CHECK
	})

	t.Run("Commit turns a CHECK failure into ErrConflict and writes nothing", func(t *testing.T) {
		is := is.New(t)
		_, plan := storedDefinition(t, "default", wfJSON)
		ch := newHistory(t, plan, "default", "bad-commit").next(evCreated)
		ch.Run.State = "sleeping"
		err := commit(t, db, ch)
		is.True(errors.Is(err, engine.ErrConflict)) // constraint failure is a conflict
		_, _, err = db.LoadRun(ctx, "default", "bad-commit")
		is.True(errors.Is(err, engine.ErrNotFound))                                           // no run row
		is.Equal(count(t, raw, `SELECT count(*) FROM events WHERE run_id = 'bad-commit'`), 0) // no events
	})
	is.Equal(count(t, raw, `SELECT count(*) FROM runs`), 2) // only the valid rows
}

// fullChanges returns an insert and an update of run r1 by hand, with every
// field of the run and task rows set somewhere.
func fullChanges() (insert, update engine.Change) {
	at := func(ms int) time.Time { return base.Add(time.Duration(ms)*time.Millisecond + 987*time.Nanosecond) }
	evs := []engine.Event{
		{TenantID: "default", RunID: "r1", Seq: 1, Type: engine.EventRunCreated, Actor: "key:alice",
			Data: json.RawMessage(`{"workflow":"wf","version":1,"input":{"n": 1}}`), At: at(0)},
		{TenantID: "default", RunID: "r1", Seq: 2, Type: engine.EventRunStarted, Actor: "engine", At: at(1)},
		{TenantID: "default", RunID: "r1", Seq: 3, Type: engine.EventTaskStarted, TaskID: "a", Attempt: 2, Actor: "worker-7",
			Data: json.RawMessage(`{"wake_at":"2024-05-06T08:00:00Z"}`), At: at(2)},
		{TenantID: "default", RunID: "r1", Seq: 4, Type: engine.EventRunFailed, Actor: "engine",
			Data: json.RawMessage(`{"error":{"code":"boom","message":"it broke"}}`), At: at(3)},
	}
	prev := ""
	for i := range evs {
		evs[i].Hash = evs[i].ComputeHash(prev)
		prev = evs[i].Hash
	}
	run := engine.Run{ID: "r1", TenantID: "default", Workflow: "wf", Version: 1, State: engine.RunRunning,
		Input: json.RawMessage(`{"n": 1}`), CreatedAt: at(0), StartedAt: at(1), Deadline: at(60_000),
		UpdatedAt: at(1), LastSeq: 2, LastHash: evs[1].Hash}
	taskA := engine.Task{RunID: "r1", TaskID: "a", Pos: 0, Type: "noop", State: engine.TaskReady,
		ReadyAt: at(1), NotBefore: at(500)}
	taskB := engine.Task{RunID: "r1", TaskID: "b", Pos: 1, Type: "noop", State: engine.TaskPending}
	insert = engine.Change{Run: run, Insert: true, Tasks: []engine.Task{taskA, taskB}, Events: evs[:2]}

	run.State = engine.RunFailed
	run.Output = json.RawMessage(`[1, 2]`)
	run.Error = &engine.TaskError{Code: "boom", Message: "it broke"}
	run.EndedAt = at(3)
	run.UpdatedAt = at(3)
	run.LastSeq = 4
	run.LastHash = evs[3].Hash
	taskA.State = engine.TaskCompleted
	taskA.Attempt = 2
	taskA.Charged = 1
	taskA.StartedAt = at(2)
	taskA.EndedAt = at(3)
	taskA.WakeAt = at(3_600_000)
	taskA.Error = &engine.TaskError{Code: "flaky", Message: "first attempt failed"}
	taskA.Output = json.RawMessage(`{"ok": true}`)
	taskA.Input = json.RawMessage(`{"from": "a"}`)
	taskA.WorkerID = "worker-7"
	taskA.LeaseExpiresAt = at(30_000)
	taskA.LeaseHash = "0123abcd"
	update = engine.Change{Run: run, PrevSeq: 2, Tasks: []engine.Task{taskA}, Events: evs[2:]}
	return insert, update
}

func TestStore_Commit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("an insert then an update are loaded back exactly", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		putDefinition(t, db, "default", wfJSON)
		insert, update := fullChanges()

		is.NoErr(commit(t, db, insert)) // insert run r1
		run, tasks, err := db.LoadRun(ctx, "default", "r1")
		is.NoErr(err)                                                                            // load after insert
		is.Equal(*run, storedRun(insert.Run))                                                    // run row as inserted
		is.Equal(tasks, []engine.Task{storedTask(insert.Tasks[0]), storedTask(insert.Tasks[1])}) // task rows as inserted

		is.NoErr(commit(t, db, update)) // update run r1
		run, tasks, err = db.LoadRun(ctx, "default", "r1")
		is.NoErr(err)                                                                               // load after update
		is.Equal(*run, storedRun(update.Run))                                                       // run row as updated, times at microseconds
		is.Equal(run.CreatedAt.Nanosecond()%1000, 0)                                                // no sub-microsecond part
		is.Equal(tasks, []engine.Task{storedTask(update.Tasks[0]), storedTask(insert.Tasks[1])})    // a updated, b untouched
		is.Equal(string(tasks[0].Output), `{"ok": true}`)                                           // JSON kept verbatim
		is.Equal(*tasks[0].Error, engine.TaskError{Code: "flaky", Message: "first attempt failed"}) // error kept

		events, err := db.RunEvents(ctx, "default", "r1", 0, 0)
		is.NoErr(err)                                                                       // read events
		is.Equal(withoutIDs(events), storedEvents(append(insert.Events, update.Events...))) // every field of every event
		is.NoErr(engine.VerifyChain(events))                                                // hashes survive the round trip
		got, err := db.GetRunRow(ctx, "default", "r1")
		is.NoErr(err)        // GetRunRow for the owner
		is.Equal(*got, *run) // same row as LoadRun
	})

	t.Run("a stale PrevSeq fails with ErrConflict and writes nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		putDefinition(t, db, "default", wfJSON)
		insert, update := fullChanges()
		is.NoErr(commit(t, db, insert)) // insert run r1
		before, beforeTasks, err := db.LoadRun(ctx, "default", "r1")
		is.NoErr(err) // load before

		stale := update
		stale.PrevSeq = 1
		err = commit(t, db, stale)
		is.True(errors.Is(err, engine.ErrConflict)) // compare-and-set lost

		after, afterTasks, err := db.LoadRun(ctx, "default", "r1")
		is.NoErr(err)                     // load after
		is.Equal(after, before)           // run row unchanged
		is.Equal(afterTasks, beforeTasks) // task rows unchanged
		events, err := db.RunEvents(ctx, "default", "r1", 0, 0)
		is.NoErr(err)                   // read events
		is.Equal(len(events), 2)        // no event of the failed change
		is.NoErr(commit(t, db, update)) // the right PrevSeq still commits
	})

	t.Run("a duplicate seq fails with ErrConflict and writes nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		putDefinition(t, db, "default", wfJSON)
		insert, update := fullChanges()
		is.NoErr(commit(t, db, insert)) // insert run r1
		before, _, err := db.LoadRun(ctx, "default", "r1")
		is.NoErr(err) // load before

		dup := update
		dup.Events = slices.Clone(update.Events)
		dup.Events[0].Seq = 2 // already stored
		err = commit(t, db, dup)
		is.True(errors.Is(err, engine.ErrConflict)) // UNIQUE(run_id, seq)

		after, _, err := db.LoadRun(ctx, "default", "r1")
		is.NoErr(err)           // load after
		is.Equal(after, before) // the run update was rolled back with the events
		events, err := db.RunEvents(ctx, "default", "r1", 0, 0)
		is.NoErr(err)                                             // read events
		is.Equal(withoutIDs(events), storedEvents(insert.Events)) // only the first change's events
	})

	t.Run("inserting a run twice or after a seq fails with ErrConflict", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		putDefinition(t, db, "default", wfJSON)
		insert, _ := fullChanges()
		is.NoErr(commit(t, db, insert))                               // first insert
		is.True(errors.Is(commit(t, db, insert), engine.ErrConflict)) // same run again

		other := insert
		other.Run.ID = "r2"
		other.PrevSeq = 1
		is.True(errors.Is(commit(t, db, other), engine.ErrConflict)) // an insert cannot follow a seq
		_, _, err := db.LoadRun(ctx, "default", "r2")
		is.True(errors.Is(err, engine.ErrNotFound)) // nothing written
	})

	t.Run("an update of an unknown task fails and writes nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		putDefinition(t, db, "default", wfJSON)
		insert, update := fullChanges()
		is.NoErr(commit(t, db, insert)) // insert run r1
		bad := update
		bad.Tasks = slices.Clone(update.Tasks)
		bad.Tasks[0].TaskID = "zz"
		err := commit(t, db, bad)
		is.True(errors.Is(err, engine.ErrNotFound)) // no such task row
		run, _, err := db.LoadRun(ctx, "default", "r1")
		is.NoErr(err)                   // load after
		is.Equal(run.LastSeq, int64(2)) // run update rolled back
	})

	t.Run("a run of an unknown definition version is refused", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		putDefinition(t, db, "default", wfJSON)
		insert, _ := fullChanges()
		insert.Run.Version = 9
		is.True(errors.Is(commit(t, db, insert), engine.ErrConflict)) // foreign key to workflows
	})
}

func TestStore_GroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	is := is.New(t)
	set := metrics.NewSet()
	db := openTestStoreWith(t, store.Options{Metrics: set})
	_, plan := putDefinition(t, db, "default", wfJSON)

	// 50 runs of four changes each; run-07 also gets a replay of its second
	// change, which is stale by then.
	const runs, workers = 50, 5
	type request struct {
		run     int
		changes []engine.Change
		bad     bool
		done    chan error
	}
	perWorker := make([][]*request, workers)
	all := []*request{}
	for i := range runs {
		h := newHistory(t, plan, "default", fmt.Sprintf("run-%02d", i))
		chs := lifecycle(h)
		for j, ch := range chs {
			r := &request{run: i, changes: []engine.Change{ch}, done: make(chan error, 1)}
			perWorker[i%workers] = append(perWorker[i%workers], r)
			all = append(all, r)
			if i == 7 && j == 1 {
				r := &request{run: i, changes: []engine.Change{ch}, bad: true, done: make(chan error, 1)}
				perWorker[i%workers] = append(perWorker[i%workers], r)
				all = append(all, r)
			}
		}
	}

	release := holdWriter(t, db) // everything below queues up behind this
	var wg sync.WaitGroup
	for _, reqs := range perWorker {
		wg.Go(func() {
			for _, r := range reqs { // one worker per run keeps each run's order
				db.Commit(r.changes, func(err error) { r.done <- err })
			}
		})
	}
	wg.Wait()
	release()

	for _, r := range all {
		err := recv(t, r.done, "commit acknowledgement")
		if r.bad {
			is.True(errors.Is(err, engine.ErrConflict)) // only the stale change fails
		} else {
			is.NoErr(err) // every good change is acknowledged
		}
	}

	raw := rawDB(t, db.Path())
	is.Equal(count(t, raw, `SELECT count(*) FROM events`), runs*7)                      // every good event is durable
	is.Equal(count(t, raw, `SELECT count(*) FROM runs WHERE last_seq = 7`), runs)       // every run got all four changes
	is.Equal(count(t, raw, `SELECT count(*) FROM tasks WHERE state = 'running'`), runs) // b running everywhere
	for i := range runs {
		is.NoErr(engine.VerifyRun(ctx, db, "default", fmt.Sprintf("run-%02d", i))) // rows equal the replayed log
	}

	requests := float64(len(all) + 1) // and the one holding the writer
	commits := metricValue(t, set, "orchestrator_commits_total")
	is.True(commits < requests)                                            // requests were batched
	is.Equal(metricValue(t, set, "orchestrator_commit_errors_total"), 1.0) // one failed request
}

func TestStore_GroupCommitOfOneRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("consecutive changes of a run in one batch all land", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		set := metrics.NewSet()
		db := openTestStoreWith(t, store.Options{Metrics: set})
		_, plan := putDefinition(t, db, "default", wfJSON)
		chs := lifecycle(newHistory(t, plan, "default", "r1"))
		release := holdWriter(t, db)
		acks := make([]chan error, len(chs))
		for i, ch := range chs {
			acks[i] = make(chan error, 1)
			db.Commit([]engine.Change{ch}, func(err error) { acks[i] <- err })
		}
		release()
		for i := range acks {
			is.NoErr(recv(t, acks[i], "acknowledgement")) // every change committed
		}
		is.Equal(metricValue(t, set, "orchestrator_commits_total"), 3.0) // definition, holder, one batch
		run, tasks, err := db.LoadRun(ctx, "default", "r1")
		is.NoErr(err)                                        // load
		is.Equal(*run, storedRun(chs[3].Run))                // the run row of the last change
		is.Equal(tasks[0].State, engine.TaskCompleted)       // a from the third change
		is.Equal(tasks[1].State, engine.TaskRunning)         // b from the fourth change
		is.NoErr(engine.VerifyRun(ctx, db, "default", "r1")) // rows equal the replayed log
	})

	t.Run("changes submitted out of order fail alone", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		_, plan := putDefinition(t, db, "default", wfJSON)
		chs := lifecycle(newHistory(t, plan, "default", "r1"))
		release := holdWriter(t, db)
		order := []int{0, 2, 1} // the third change before the second
		acks := make([]chan error, len(order))
		for i, k := range order {
			acks[i] = make(chan error, 1)
			db.Commit([]engine.Change{chs[k]}, func(err error) { acks[i] <- err })
		}
		release()
		is.NoErr(recv(t, acks[0], "insert"))                                     // insert lands
		is.True(errors.Is(recv(t, acks[1], "third change"), engine.ErrConflict)) // too early: conflict
		is.NoErr(recv(t, acks[2], "second change"))                              // second lands
		run, _, err := db.LoadRun(ctx, "default", "r1")
		is.NoErr(err)                                        // load
		is.Equal(*run, storedRun(chs[1].Run))                // at the second change
		is.NoErr(engine.VerifyRun(ctx, db, "default", "r1")) // and consistent with the log
	})

	t.Run("a request with changes of several runs is all or nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		_, plan := putDefinition(t, db, "default", wfJSON)
		good := lifecycle(newHistory(t, plan, "default", "good"))[0]
		bad := lifecycle(newHistory(t, plan, "default", "bad"))[0]
		bad.PrevSeq = 5
		is.True(errors.Is(commit(t, db, good, bad), engine.ErrConflict)) // one bad change fails the request
		_, _, err := db.LoadRun(ctx, "default", "good")
		is.True(errors.Is(err, engine.ErrNotFound)) // the good change of the same request is not written
	})
}

func TestStore_Close(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("done is never called before Commit returns", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		// The caller holds a lock across Commit that done takes: a done
		// called from within Commit would deadlock the caller.
		check := func(what string) error {
			var mu sync.Mutex
			returned := false
			result := make(chan bool, 1)
			errs := make(chan error, 1)
			callerDone := make(chan struct{})
			go func() {
				defer close(callerDone)
				mu.Lock()
				db.Commit(nil, func(err error) {
					mu.Lock()
					r := returned
					mu.Unlock()
					result <- r
					errs <- err
				})
				returned = true
				mu.Unlock()
			}()
			recv(t, callerDone, what+": Commit to return")
			is.True(recv(t, result, what+": done")) // done ran after Commit returned
			return recv(t, errs, what+": done error")
		}
		is.NoErr(check("open store")) // an empty commit succeeds
		is.NoErr(db.Close())          // close
		err := check("closed store")
		is.True(errors.Is(err, engine.ErrClosed)) // after Close: ErrClosed
	})

	t.Run("Close commits what is queued and is idempotent", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		path := filepath.Join(t.TempDir(), "s.db")
		db, err := store.Open(ctx, path, store.Options{})
		is.NoErr(err) // open
		_, plan := putDefinition(t, db, "default", wfJSON)

		release := holdWriter(t, db)
		acks := make([]chan error, 10)
		for i := range acks {
			acks[i] = make(chan error, 1)
			ch := newHistory(t, plan, "default", fmt.Sprintf("q%d", i)).next(evCreated)
			db.Commit([]engine.Change{ch}, func(err error) { acks[i] <- err })
		}
		closed := make(chan error, 1)
		go func() { closed <- db.Close() }()
		release()
		is.NoErr(recv(t, closed, "Close")) // Close returns once the queue is committed
		for i := range acks {
			is.NoErr(recv(t, acks[i], "queued commit")) // queued before Close: committed
		}
		is.NoErr(db.Close()) // Close again is fine

		ch := newHistory(t, plan, "default", "late").next(evCreated)
		err = commit(t, db, ch)
		is.True(errors.Is(err, engine.ErrClosed)) // Commit after Close
		_, _, err = db.PutDefinition(ctx, &engine.StoredDefinition{TenantID: "default", Name: "x",
			Definition: json.RawMessage(`{}`), Hash: "h"})
		is.True(errors.Is(err, engine.ErrClosed)) // write after Close

		again := openAt(t, path, store.Options{})
		for i := range acks {
			_, _, err := again.LoadRun(ctx, "default", fmt.Sprintf("q%d", i))
			is.NoErr(err) // durable across reopening
		}
		_, _, err = again.LoadRun(ctx, "default", "late")
		is.True(errors.Is(err, engine.ErrNotFound)) // the late commit wrote nothing
	})

	t.Run("Close waits until the refusal of a later commit has run", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		is.NoErr(db.Close()) // closed: commits are refused from now on
		synctest.Test(t, func(t *testing.T) {
			is := is.New(t)
			release := make(chan struct{})
			var refused error
			db.Commit(nil, func(err error) {
				<-release // the refusal is still running
				refused = err
			})
			returned := false
			go func() {
				db.Close()
				returned = true
			}()
			synctest.Wait() // every goroutine here is blocked
			waited := !returned
			close(release)
			synctest.Wait()
			is.True(waited)                               // Close waited for the refusal it did not start
			is.True(returned)                             // and returned once it was over
			is.True(errors.Is(refused, engine.ErrClosed)) // having refused the commit
		})
	})

	t.Run("Close while commits keep arriving does not deadlock", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		const n = 200
		acks := make(chan error, n)
		submitted := make(chan struct{})
		go func() {
			defer close(submitted)
			for range n {
				db.Commit(nil, func(err error) { acks <- err })
			}
		}()
		is.NoErr(db.Close()) // close in the middle of the stream
		recv(t, submitted, "every Commit to return")
		for range n {
			err := recv(t, acks, "acknowledgement")
			is.True(err == nil || errors.Is(err, engine.ErrClosed)) // committed before Close, or refused after
		}
	})
}

func TestStore_PutDefinition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestStore(t)
	v1, _ := storedDefinition(t, "a", wfJSON)
	v2, _ := storedDefinition(t, "a", `{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`)

	t.Run("the first is version 1, created", func(t *testing.T) {
		is := is.New(t)
		got, created, err := db.PutDefinition(ctx, v1)
		is.NoErr(err)            // put
		is.True(created)         // new
		is.Equal(got.Version, 1) // first version
	})

	t.Run("the same hash again returns version 1, not created", func(t *testing.T) {
		is := is.New(t)
		got, created, err := db.PutDefinition(ctx, v1)
		is.NoErr(err)                             // put
		is.True(!created)                         // not new
		is.Equal(got.Version, 1)                  // the existing version
		is.Equal(got.Hash, v1.Hash)               // its hash
		is.True(got.CreatedAt.Equal(micro(base))) // its stored time
	})

	t.Run("a different hash is version 2", func(t *testing.T) {
		is := is.New(t)
		got, created, err := db.PutDefinition(ctx, v2)
		is.NoErr(err)            // put
		is.True(created)         // new
		is.Equal(got.Version, 2) // next version
	})

	t.Run("GetDefinition returns a version, 0 is the latest", func(t *testing.T) {
		is := is.New(t)
		latest, err := db.GetDefinition(ctx, "a", "wf", 0)
		is.NoErr(err)                                              // get latest
		is.Equal(latest.Version, 2)                                // latest
		is.Equal(latest.Hash, v2.Hash)                             // of the second definition
		is.Equal(string(latest.Definition), string(v2.Definition)) // its JSON
		first, err := db.GetDefinition(ctx, "a", "wf", 1)
		is.NoErr(err)                 // get v1
		is.Equal(first.Hash, v1.Hash) // of the first definition
		is.Equal(first.TenantID, "a") // tenant
		is.Equal(first.Name, "wf")    // name
	})

	t.Run("unknown names and versions are ErrNotFound", func(t *testing.T) {
		is := is.New(t)
		_, err := db.GetDefinition(ctx, "a", "nope", 0)
		is.True(errors.Is(err, engine.ErrNotFound)) // unknown name
		_, err = db.GetDefinition(ctx, "a", "wf", 3)
		is.True(errors.Is(err, engine.ErrNotFound)) // unknown version
	})

	t.Run("tenants are separate", func(t *testing.T) {
		is := is.New(t)
		_, err := db.GetDefinition(ctx, "b", "wf", 0)
		is.True(errors.Is(err, engine.ErrNotFound)) // b sees nothing of a
		forB := *v2
		forB.TenantID = "b"
		got, created, err := db.PutDefinition(ctx, &forB)
		is.NoErr(err)            // put for b
		is.True(created)         // new for b
		is.Equal(got.Version, 1) // b's own version 1
		list, err := db.ListDefinitions(ctx, "a")
		is.NoErr(err)                   // list a
		is.Equal(len(list), 1)          // one definition for a
		is.Equal(list[0].Name, "wf")    // named wf
		is.Equal(list[0].Version, 2)    // a still has two versions
		is.Equal(list[0].Hash, v2.Hash) // listed with the latest version's hash
	})
}

// runIn returns the changes that bring a run of wfJSON into state s.
func runIn(t testing.TB, plan *definition.Plan, tenant, id string, s engine.RunState) []engine.Change {
	h := newHistory(t, plan, tenant, id)
	oops := &engine.EventData{Error: &engine.TaskError{Code: "x", Message: "y"}}
	switch s {
	case engine.RunPending:
		return []engine.Change{h.next(evCreated)}
	case engine.RunRunning:
		return []engine.Change{h.next(evCreated), h.next(evStarted, ev{typ: engine.EventTaskReady, task: "a"})}
	case engine.RunPaused:
		return []engine.Change{h.next(evCreated, evStarted), h.next(ev{typ: engine.EventRunPaused})}
	case engine.RunCompleted:
		return []engine.Change{h.next(evCreated, evStarted),
			h.next(ev{typ: engine.EventRunCompleted, data: &engine.EventData{Output: json.RawMessage(`{}`)}})}
	case engine.RunFailed:
		return []engine.Change{h.next(evCreated, evStarted), h.next(ev{typ: engine.EventRunFailed, data: oops})}
	case engine.RunCancelled:
		return []engine.Change{h.next(evCreated), h.next(ev{typ: engine.EventRunCancelled})}
	case engine.RunTimedOut:
		return []engine.Change{h.next(evCreated, evStarted), h.next(ev{typ: engine.EventRunTimedOut, data: oops})}
	}
	t.Fatalf("no history for state %s", s)
	return nil
}

func TestStore_LoadActiveRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	is := is.New(t)
	db := openTestStore(t)
	_, plan := putDefinition(t, db, "default", wfJSON)
	putDefinition(t, db, "other", wfJSON)
	want := map[string][]engine.Task{}
	for _, s := range engine.RunStates() {
		for _, tenant := range []string{"default", "other"} {
			id := tenant + "-" + string(s)
			chs := runIn(t, plan, tenant, id, s)
			for _, ch := range chs {
				is.NoErr(commit(t, db, ch)) // commit history
			}
			if !s.Terminal() {
				var tasks []engine.Task
				for _, tk := range newHistory(t, plan, tenant, id).replayed(chs) {
					tasks = append(tasks, storedTask(tk))
				}
				want[id] = tasks
			}
		}
	}

	t.Run("only pending, running and paused runs come, with all their tasks", func(t *testing.T) {
		is := is.New(t)
		got := map[string][]engine.Task{}
		states := map[string]engine.RunState{}
		err := db.LoadActiveRuns(ctx, func(r *engine.Run, tasks []engine.Task) error {
			slices.SortFunc(tasks, func(a, b engine.Task) int { return a.Pos - b.Pos })
			got[r.ID] = tasks
			states[r.ID] = r.State
			return nil
		})
		is.NoErr(err)         // load
		is.Equal(len(got), 6) // three active states, two tenants
		is.Equal(got, want)   // every task of each, as stored
		for id, s := range states {
			is.True(!s.Terminal())                    // active only
			is.True(strings.HasSuffix(id, string(s))) // the run in that state
		}
	})

	t.Run("an error from fn stops the walk", func(t *testing.T) {
		is := is.New(t)
		stop := errors.New("stop")
		calls := 0
		err := db.LoadActiveRuns(ctx, func(*engine.Run, []engine.Task) error { calls++; return stop })
		is.True(errors.Is(err, stop)) // fn's error returned
		is.Equal(calls, 1)            // no further calls
	})

	t.Run("LoadRun of another tenant's run is ErrNotFound", func(t *testing.T) {
		is := is.New(t)
		_, _, err := db.LoadRun(ctx, "other", "default-running")
		is.True(errors.Is(err, engine.ErrNotFound)) // not visible to other tenants
		run, tasks, err := db.LoadRun(ctx, "default", "default-running")
		is.NoErr(err)                          // visible to its tenant
		is.Equal(run.State, engine.RunRunning) // its state
		is.Equal(len(tasks), 2)                // its tasks
		_, err = db.GetRunRow(ctx, "other", "default-running")
		is.True(errors.Is(err, engine.ErrNotFound)) // nor its row alone
		_, _, err = db.LoadRun(ctx, "default", "nope")
		is.True(errors.Is(err, engine.ErrNotFound)) // unknown run
	})
}

// replayed returns the task rows after all of chs, as the last change holds
// them when it carries every task.
func (h *history) replayed(chs []engine.Change) []engine.Task {
	h.t.Helper()
	var evs []engine.Event
	for _, ch := range chs {
		evs = append(evs, ch.Events...)
	}
	v, err := engine.Replay(h.plan, evs)
	if err != nil {
		h.t.Fatalf("replay: %v", err)
	}
	return v.Tasks
}

func TestStore_RunEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	is := is.New(t)
	db := openTestStore(t)
	_, plan := putDefinition(t, db, "default", wfJSON)
	// Two runs committed alternately, so their events interleave in the log.
	one, two := lifecycle(newHistory(t, plan, "default", "one")), lifecycle(newHistory(t, plan, "default", "two"))
	var want []engine.Event
	for i := range one {
		is.NoErr(commit(t, db, one[i])) // commit one
		is.NoErr(commit(t, db, two[i])) // commit two
		want = append(want, one[i].Events...)
	}
	want = storedEvents(want)

	t.Run("all events of a run come in seq order", func(t *testing.T) {
		is := is.New(t)
		got, err := db.RunEvents(ctx, "default", "one", 0, 0)
		is.NoErr(err)                   // read
		is.Equal(withoutIDs(got), want) // every event of run one only
		for i := 1; i < len(got); i++ {
			is.True(got[i].ID > got[i-1].ID) // log positions ascend
		}
		all, err := db.RunEvents(ctx, "default", "one", 0, -1)
		is.NoErr(err)      // negative limit
		is.Equal(all, got) // means all as well
	})

	t.Run("afterSeq and limit page through the log", func(t *testing.T) {
		is := is.New(t)
		var pages [][]engine.Event
		after := int64(0)
		for {
			page, err := db.RunEvents(ctx, "default", "one", after, 3)
			is.NoErr(err) // read a page
			if len(page) == 0 {
				break
			}
			is.True(len(page) <= 3)        // at most limit
			is.Equal(page[0].Seq, after+1) // continues after the cursor
			pages = append(pages, page)
			after = page[len(page)-1].Seq
		}
		is.Equal(len(pages), 3)                             // 3 + 3 + 1
		is.Equal(withoutIDs(slices.Concat(pages...)), want) // pages add up to the log
		tail, err := db.RunEvents(ctx, "default", "one", 5, 0)
		is.NoErr(err)                        // after seq 5
		is.Equal(withoutIDs(tail), want[5:]) // seq 6 and 7
		none, err := db.RunEvents(ctx, "default", "nope", 0, 0)
		is.NoErr(err)          // unknown run
		is.Equal(len(none), 0) // has no events
	})
}

func TestStore_ReadersDoNotWaitForTheWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("reads succeed while another connection holds the write lock", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		_, plan := putDefinition(t, db, "default", wfJSON)
		is.NoErr(commit(t, db, lifecycle(newHistory(t, plan, "default", "r1"))[0])) // run r1
		raw := rawDB(t, db.Path())
		conn, err := raw.Conn(ctx)
		is.NoErr(err) // one raw connection
		defer conn.Close()
		_, err = conn.ExecContext(ctx, `BEGIN IMMEDIATE`)
		is.NoErr(err) // take the write lock
		_, err = conn.ExecContext(ctx, `UPDATE tasks SET attempt = 9 WHERE run_id = 'r1'`)
		is.NoErr(err) // uncommitted change

		readCtx, cancel := context.WithTimeout(ctx, 3*time.Second) // less than busy_timeout
		defer cancel()
		_, tasks, err := db.LoadRun(readCtx, "default", "r1")
		is.NoErr(err)                 // read while the lock is held
		is.Equal(tasks[0].Attempt, 0) // sees the committed state only
		_, err = db.RunEvents(readCtx, "default", "r1", 0, 0)
		is.NoErr(err) // events too
		_, err = db.GetDefinition(readCtx, "default", "wf", 0)
		is.NoErr(err) // definitions too
		_, err = conn.ExecContext(ctx, `ROLLBACK`)
		is.NoErr(err) // let go
	})

	t.Run("reads succeed during a large group commit, which is atomic", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		_, plan := putDefinition(t, db, "default", wfJSON)
		is.NoErr(commit(t, db, lifecycle(newHistory(t, plan, "default", "seed"))[0])) // a run to read
		big := make([]engine.Change, 1000)
		for i := range big {
			big[i] = lifecycle(newHistory(t, plan, "default", fmt.Sprintf("big-%04d", i)))[0]
		}
		acked := make(chan error, 1)
		db.Commit(big, func(err error) { acked <- err })
		raw := rawDB(t, db.Path())
		reads := 0
		for done := false; !done; {
			select {
			case err := <-acked:
				is.NoErr(err) // the large commit succeeded
				done = true
			default:
			}
			_, _, err := db.LoadRun(ctx, "default", "seed")
			is.NoErr(err) // read during the commit
			n := count(t, raw, `SELECT count(*) FROM runs`)
			is.True(n == 1 || n == 1001) // all of the commit or none of it
			reads++
		}
		is.True(reads >= 1)                                            // read at least once
		is.Equal(count(t, raw, `SELECT count(*) FROM events`), 3*1001) // all durable
	})
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	ok := []struct{ in, want string }{
		{"orchestrator.db", "orchestrator.db"},
		{"/var/lib/orchestrator.db", "/var/lib/orchestrator.db"},
		{"data/x.db", "data/x.db"},
		{"file:x.db", "x.db"},
		{"file:path/x.db?mode=rwc&cache=shared", "path/x.db"},
		{"file:///abs/x.db", "/abs/x.db"},
		{"file:/abs/x.db", "/abs/x.db"},
		{"sqlite:///abs/path/x.db", "/abs/path/x.db"},
		{"sqlite://rel.db", "rel.db"},
		{"sqlite://localhost/abs/x.db", "/abs/x.db"},
	}
	for _, c := range ok {
		t.Run("accepts "+c.in, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			got, err := store.ParseURL(c.in)
			is.NoErr(err)         // accepted
			is.Equal(got, c.want) // file path
		})
	}
	bad := []struct{ in, mention string }{
		{"", "empty"},
		{"postgres://user:pw@host/db", "postgres"},
		{"postgresql://host/db", "postgres"},
		{"http://x", "unsupported scheme"},
		{"sqlite://", "needs a path"},
		{"file:", "needs a path"},
		{"sqlite://dir/rel.db", "remote host"},
		{":memory:", "in-memory"},
	}
	for _, c := range bad {
		t.Run("refuses "+c.in, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			_, err := store.ParseURL(c.in)
			is.True(err != nil)                               // refused
			is.True(strings.Contains(err.Error(), c.mention)) // with a clear reason
			is.True(!strings.Contains(err.Error(), "pw"))     // without echoing a password
		})
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"", "x.db", "file:x.db?a=b", "file:///a/b.db", "sqlite:///a.db", "sqlite://r.db",
		"postgres://h/db", "http://x", "sqlite://%zz", "file:?x", "file://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := store.ParseURL(s)
		if err != nil {
			return
		}
		if p == "" {
			t.Fatalf("ParseURL(%q) accepted an empty path", s)
		}
		if strings.HasPrefix(s, "postgres") && strings.Contains(s, "://") {
			t.Fatalf("ParseURL(%q) accepted a postgres url: %q", s, p)
		}
	})
}

// engineRun starts an engine on db, runs wfJSON to completion and returns the run id.
func engineRun(t testing.TB, db *store.DB, e *engine.Engine) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "wf", Input: json.RawMessage(`{"n":1}`)})
	if err != nil {
		t.Fatalf("start run: %v", err)
	}
	done, err := e.Wait(ctx, "default", run.ID)
	if err != nil {
		t.Fatalf("wait for run: %v", err)
	}
	if done.State != engine.RunCompleted {
		t.Fatalf("run ended %s", done.State)
	}
	return run.ID
}

// startEngine starts an engine on db with wfJSON registered, stopped at cleanup
// before the store closes.
func startEngine(t testing.TB, db *store.DB) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Config{Store: db})
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("start engine: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		e.Stop(ctx)
	})
	if _, _, err := e.RegisterDefinition(context.Background(), "default", []byte(wfJSON)); err != nil {
		t.Fatalf("register definition: %v", err)
	}
	return e
}

func TestStore_VerifyRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngine(t, db)
	clean, tampered, forged := engineRun(t, db, e), engineRun(t, db, e), engineRun(t, db, e)
	raw := rawDB(t, db.Path())

	t.Run("an engine-made run verifies", func(t *testing.T) {
		is := is.New(t)
		is.NoErr(engine.VerifyRun(ctx, db, "default", clean)) // rows equal the replayed log
		counted := &definitionCounter{Auditor: db}
		n, err := engine.Verify(ctx, counted, func(_, id string, err error) { t.Errorf("run %s: %v", id, err) })
		is.NoErr(err)                    // verify all
		is.Equal(n, 3)                   // three runs checked
		is.Equal(counted.definitions, 1) // one definition version, read and compiled once
	})

	t.Run("a tampered task row is reported by name", func(t *testing.T) {
		is := is.New(t)
		_, err := raw.Exec(`UPDATE tasks SET attempt = attempt + 1 WHERE run_id = ? AND task_id = 'b'`, tampered)
		is.NoErr(err) // projections are not append-only
		err = engine.VerifyRun(ctx, db, "default", tampered)
		is.True(err != nil)                               // difference found
		is.True(strings.Contains(err.Error(), "task b ")) // names the task
	})

	t.Run("a changed event breaks the hash chain", func(t *testing.T) {
		is := is.New(t)
		_, err := raw.Exec(`DROP TRIGGER events_no_update`)
		is.NoErr(err) // what an attacker with file access can do
		_, err = raw.Exec(`UPDATE events SET data = '{"workflow":"wf","version":1,"input":{"n":2}}' WHERE run_id = ? AND seq = 1`, forged)
		is.NoErr(err) // rewrite history
		err = engine.VerifyRun(ctx, db, "default", forged)
		is.True(err != nil)                                  // forgery found
		is.True(strings.Contains(err.Error(), "hash chain")) // by the hash chain
	})

	t.Run("Verify checks every run and reports the bad ones", func(t *testing.T) {
		is := is.New(t)
		var bad []string
		n, err := engine.Verify(ctx, db, func(_, id string, err error) { bad = append(bad, id) })
		is.NoErr(err)  // verify all
		is.Equal(n, 3) // three runs checked
		slices.Sort(bad)
		want := []string{tampered, forged}
		slices.Sort(want)
		is.Equal(bad, want) // exactly the two tampered runs
	})
}

// definitionCounter counts the definitions a verification reads from the
// store it wraps.
type definitionCounter struct {
	engine.Auditor
	definitions int
}

func (c *definitionCounter) GetDefinition(ctx context.Context, tenantID, name string, version int) (*engine.StoredDefinition, error) {
	c.definitions++
	return c.Auditor.GetDefinition(ctx, tenantID, name, version)
}

// TestStore_OpenPathWithURICharacters documents a bug: Open pastes the path
// into a "file:" URI unescaped, so SQLite reads '#' as the start of a fragment
// and '%' as an escape, and opens or creates another file than the one named
// (here "<tmp>/runs" instead of "<tmp>/runs#1/s.db"), or fails.
func TestStore_OpenPathWithURICharacters(t *testing.T) {
	t.Parallel()
	// The subtest names must not hold these characters themselves: t.TempDir
	// keeps them, and the stray file would land outside the temporary directory.
	cases := []struct{ name, dir string }{
		{"a directory whose name holds a hash sign", "runs#1"},
		{"a directory whose name holds a percent escape", "100%25"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			d := filepath.Join(t.TempDir(), c.dir)
			is.NoErr(os.Mkdir(d, 0o755)) // directory with a URI character
			path := filepath.Join(d, "s.db")
			db, err := store.Open(context.Background(), path, store.Options{})
			is.NoErr(err) // opens
			defer db.Close()
			putDefinition(t, db, "default", wfJSON)
			_, err = os.Stat(path)
			is.NoErr(err) // the database is the file that was named
		})
	}
}

// TestParseURL_FileURIWithHost documents a bug: "file://localhost/abs" is the
// same file URI as "file:///abs" (RFC 8089, and SQLite accepts it), but
// ParseURL returns the relative path "localhost/abs", so the server silently
// creates a new database under the working directory.
func TestParseURL_FileURIWithHost(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	got, err := store.ParseURL("file://localhost/var/lib/o.db")
	is.NoErr(err)                  // a valid file URI
	is.Equal(got, "/var/lib/o.db") // the absolute path it names
	_, err = store.ParseURL("file://example.com/var/lib/o.db")
	is.True(err != nil) // a remote host cannot be opened
}

// TestStore_GroupCommitChecksEveryChange documents a bug: apply merges the
// consecutive changes of a run in one batch into one write of the final rows,
// so a change that fails alone succeeds when it shares a batch with the run's
// other changes. The outcome of a Commit then depends on timing.
func TestStore_GroupCommitChecksEveryChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// inBatch commits chs in one batch, each as its own request, and returns
	// their outcomes.
	inBatch := func(t *testing.T, db *store.DB, chs ...engine.Change) []error {
		release := holdWriter(t, db)
		acks := make([]chan error, len(chs))
		for i, ch := range chs {
			acks[i] = make(chan error, 1)
			db.Commit([]engine.Change{ch}, func(err error) { acks[i] <- err })
		}
		release()
		errs := make([]error, len(chs))
		for i := range acks {
			errs[i] = recv(t, acks[i], "acknowledgement")
		}
		return errs
	}

	t.Run("an update of an unknown task after the insert fails", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		_, plan := putDefinition(t, db, "default", wfJSON)
		chs := lifecycle(newHistory(t, plan, "default", "r1"))
		bad := chs[1]
		bad.Tasks = slices.Clone(bad.Tasks)
		bad.Tasks[0].TaskID = "zz" // no such task
		errs := inBatch(t, db, chs[0], bad)
		is.NoErr(errs[0])                               // the insert lands
		is.True(errors.Is(errs[1], engine.ErrNotFound)) // as it does alone: unknown task
		_, tasks, err := db.LoadRun(ctx, "default", "r1")
		is.NoErr(err)           // load
		is.Equal(len(tasks), 2) // no row for the unknown task
	})

	t.Run("a row the schema refuses fails even when a later change fixes it", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		_, plan := putDefinition(t, db, "default", wfJSON)
		chs := lifecycle(newHistory(t, plan, "default", "r1"))
		bad := chs[1]
		bad.Run.State = engine.RunCompleted // terminal without ended_at: CHECK fails
		alone := commit(t, openTestStoreWithRun(t, chs[0]), bad)
		is.True(errors.Is(alone, engine.ErrConflict)) // refused when committed alone
		errs := inBatch(t, db, chs[0], bad, chs[2])
		is.NoErr(errs[0])                               // the insert lands
		is.True(errors.Is(errs[1], engine.ErrConflict)) // refused in a batch too
		is.True(errors.Is(errs[2], engine.ErrConflict)) // so the next change is stale
	})
}

// openTestStoreWithRun opens a fresh store holding wfJSON and the committed change ch.
func openTestStoreWithRun(t *testing.T, ch engine.Change) *store.DB {
	t.Helper()
	db := openTestStore(t)
	putDefinition(t, db, "default", wfJSON)
	if err := commit(t, db, ch); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return db
}

// TestStore_Metrics documents a bug: a definition write is counted as one
// appended event, because writeLoop adds size(request), which is at least 1 so
// that a request without events still takes room in a batch, to
// orchestrator_events_appended_total and orchestrator_commit_batch_events.
func TestStore_Metrics(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	set := metrics.NewSet()
	db := openTestStoreWith(t, store.Options{Metrics: set})
	_, plan := putDefinition(t, db, "default", wfJSON)
	is.NoErr(commit(t, db, lifecycle(newHistory(t, plan, "default", "r1"))[0])) // three events
	is.Equal(metricValue(t, set, "orchestrator_commits_total"), 2.0)            // the definition and the run
	is.Equal(metricValue(t, set, "orchestrator_events_appended_total"), 3.0)    // a definition is not an event
}
