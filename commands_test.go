package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/pressly/goose/v3"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/schema"
	"github.com/orchestrator/orchestrator/store"
)

// makeRuns fills a database at path with n completed runs and returns their ids.
func makeRuns(t *testing.T, path string, n int) []string {
	t.Helper()
	is := is.New(t)
	ctx := context.Background()
	db, err := store.Open(ctx, path, store.Options{})
	is.NoErr(err) // open store
	defer db.Close()
	e, err := engine.New(engine.Config{Store: db})
	is.NoErr(err)
	is.NoErr(e.Start(ctx)) // start engine
	defer e.Stop(ctx)
	_, _, err = e.RegisterDefinition(ctx, "default", []byte(`{"name":"two","tasks":[{"id":"a","type":"noop","input":{"n":1}},{"id":"b","type":"noop","depends_on":["a"]}]}`))
	is.NoErr(err) // register
	var ids []string
	for i := 0; i < n; i++ {
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "two"})
		is.NoErr(err) // start run
		run, err = e.Wait(ctx, "default", run.ID)
		is.NoErr(err)                            // wait
		is.Equal(run.State, engine.RunCompleted) // completed
		ids = append(ids, run.ID)
	}
	return ids
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, nil)
	return code, out.String(), errb.String()
}

func TestCommand_Verify(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v.db")
	ids := makeRuns(t, path, 3)

	t.Run("a clean log verifies", func(t *testing.T) {
		is := is.New(t)
		code, out, _ := runCmd("verify", "--database-url", path)
		is.Equal(code, 0)                                                 // exit 0
		is.True(strings.Contains(out, "verified 3 runs: 3 ok, 0 differ")) // summary
	})

	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	t.Run("a projection that differs from its events is named", func(t *testing.T) {
		is := is.New(t)
		_, err := raw.Exec(`UPDATE tasks SET output = '{"n":2}' WHERE run_id = ? AND task_id = 'a'`, ids[0])
		is.NoErr(err) // tamper with a projection row
		code, out, _ := runCmd("verify", "--database-url", path)
		is.Equal(code, 1)                                        // exit 1
		is.True(strings.Contains(out, "MISMATCH "+ids[0]))       // the run is named
		is.True(strings.Contains(out, "task a row differs"))     // and the task
		is.True(strings.Contains(out, "3 runs: 2 ok, 1 differ")) // the others are fine
	})

	t.Run("a rewritten event breaks the hash chain", func(t *testing.T) {
		is := is.New(t)
		_, err := raw.Exec(`UPDATE events SET actor = 'mallory' WHERE run_id = ? AND seq = 2`, ids[1])
		is.True(err != nil) // the database refuses to rewrite history
		_, err = raw.Exec(`DROP TRIGGER events_no_update`)
		is.NoErr(err) // an attacker with file access can drop the trigger...
		_, err = raw.Exec(`UPDATE events SET actor = 'mallory' WHERE run_id = ? AND seq = 2`, ids[1])
		is.NoErr(err)
		code, out, _ := runCmd("verify", "--database-url", path)
		is.Equal(code, 1)                                  // ...but verify notices
		is.True(strings.Contains(out, "MISMATCH "+ids[1])) // names the run
		is.True(strings.Contains(out, "hash chain"))       // and why
	})
}

// TestCommand_VerifyAdminLog: verify checks the admin log's chain too.
func TestCommand_VerifyAdminLog(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	path := filepath.Join(t.TempDir(), "admin.db")
	for _, args := range [][]string{
		{"tenants", "create", "acme", "--database-url", path},
		{"keys", "create", "--tenant", "acme", "--role", "operator", "--name", "ci", "--database-url", path},
	} {
		code, _, errOut := runCmd(args...)
		is.Equal(code, 0) // an administrative action, recorded
		_ = errOut
	}
	code, out, _ := runCmd("verify", "--database-url", path)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "verified the admin log: 2 entries chain")) // both entries
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	is.NoErr(err)
	defer raw.Close()
	_, err = raw.Exec(`DROP TRIGGER admin_log_no_update`)
	is.NoErr(err) // an attacker with the file drops the guard...
	_, err = raw.Exec(`UPDATE admin_log SET actor = 'mallory' WHERE id = 1`)
	is.NoErr(err) // ...and rewrites who created the tenant
	code, out, _ = runCmd("verify", "--database-url", path)
	is.Equal(code, 1)                                                    // but verify notices
	is.True(strings.Contains(out, "MISMATCH admin log after 0 entries")) // naming the admin log
	is.True(strings.Contains(out, "entry 1"))                            // and the entry
}

func TestCommand_History(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	path := filepath.Join(t.TempDir(), "h.db")
	ids := makeRuns(t, path, 1)
	code, out, errOut := runCmd("history", "--database-url", path, ids[0])
	is.Equal(code, 0) // exit 0
	is.Equal(errOut, "")
	for _, want := range []string{"run " + ids[0], "run.created", "task.started", "task.completed", "run.completed", "hash chain: ok (9 events)", `output={"n":1}`} {
		is.True(strings.Contains(out, want)) // the timeline shows each step
	}
	code, _, errOut = runCmd("history", "--database-url", path, "no-such-run")
	is.Equal(code, 1)                              // unknown run
	is.True(strings.Contains(errOut, "not found")) // says so
}

// dbState is what a write to a database would change: the main file's
// bytes and time, and the size of its write-ahead log.
type dbState struct {
	sum     [32]byte
	modTime time.Time
	walSize int64
}

func stateOfDB(t *testing.T, path string) dbState {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := dbState{sum: sha256.Sum256(data), modTime: fi.ModTime()}
	if wal, err := os.Stat(path + "-wal"); err == nil {
		st.walSize = wal.Size()
	}
	return st
}

// schemaVersion reads the highest migration applied to the database at path.
func schemaVersion(t *testing.T, path string) int64 {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var v int64
	if err := raw.QueryRow(`SELECT max(version_id) FROM goose_db_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCommand_VerifyAndHistoryReadOnly(t *testing.T) {
	t.Parallel()

	t.Run("a database that needs migrations is reported, not migrated", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		path := filepath.Join(t.TempDir(), "old.db")
		raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
		is.NoErr(err)
		p, err := goose.NewProvider(goose.DialectSQLite3, raw, schema.FS)
		is.NoErr(err)
		sources := p.ListSources()
		older := sources[len(sources)-2].Version
		_, err = p.UpTo(context.Background(), older)
		is.NoErr(err) // a database of the previous release
		is.NoErr(raw.Close())
		before := stateOfDB(t, path)
		for _, args := range [][]string{{"verify", "--database-url", path}, {"history", "--database-url", path, "some-run"}} {
			code, _, errOut := runCmd(args...)
			is.Equal(code, 1)                                             // refused
			is.True(strings.Contains(errOut, "run orchestrator migrate")) // saying what to do
			is.Equal(stateOfDB(t, path), before)                          // nothing written
			is.Equal(schemaVersion(t, path), older)                       // still at the older version
		}
	})

	t.Run("a read-only file verifies and is left as it was", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		path := filepath.Join(t.TempDir(), "ro.db")
		ids := makeRuns(t, path, 2)
		is.NoErr(os.Chmod(path, 0o444))
		before := stateOfDB(t, path)
		code, out, errOut := runCmd("verify", "--database-url", path)
		is.Equal(errOut, "")
		is.Equal(code, 0)                                                 // verified
		is.True(strings.Contains(out, "verified 2 runs: 2 ok, 0 differ")) // every run
		code, out, _ = runCmd("history", "--database-url", path, ids[0])
		is.Equal(code, 0)                                // and the history is read
		is.True(strings.Contains(out, "hash chain: ok")) // whole
		is.Equal(stateOfDB(t, path), before)             // nothing written
	})
}

func TestCommand_ValidateAndUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(good, []byte(`{"name":"d","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`), 0o600)
	os.WriteFile(bad, []byte(`{"name":"d","tasks":[{"id":"a","type":"noop","depends_on":["b"]},{"id":"b","type":"noop","depends_on":["a"]},{"id":"c","type":"noop","depends_on":["zz"]}]}`), 0o600)

	t.Run("a valid file prints its levels", func(t *testing.T) {
		is := is.New(t)
		code, out, _ := runCmd("validate", good)
		is.Equal(code, 0)
		is.True(strings.Contains(out, "level 1: b")) // levels
	})
	t.Run("an invalid file prints every problem", func(t *testing.T) {
		is := is.New(t)
		code, out, _ := runCmd("validate", bad)
		is.Equal(code, 1)
		is.True(strings.Contains(out, "cycle: a -> b -> a")) // the cycle
		is.True(strings.Contains(out, `"zz"`))               // the unknown dependency
	})
	t.Run("bad settings and commands exit 2 with the reason", func(t *testing.T) {
		is := is.New(t)
		code, _, errOut := runCmd("frobnicate")
		is.Equal(code, 2)
		is.True(strings.Contains(errOut, `unknown command "frobnicate"`))
		code, _, errOut = runCmd("serve", "--log-format", "xml")
		is.Equal(code, 2)
		is.True(strings.Contains(errOut, "log-format"))
		code, _, errOut = runCmd("serve", "--database-url", "postgres://x/y")
		is.Equal(code, 2)
		is.True(strings.Contains(errOut, "postgres"))
		code, _, errOut = runCmd("serve", "--port", "99999")
		is.Equal(code, 2)
		is.True(strings.Contains(errOut, "port"))
		code, _, _ = runCmd("verify", "-h")
		is.Equal(code, 0) // help is not an error
	})
	t.Run("migrate creates the schema", func(t *testing.T) {
		is := is.New(t)
		code, out, _ := runCmd("migrate", "--database-url", "sqlite://"+filepath.Join(dir, "m.db"))
		is.Equal(code, 0)
		is.True(strings.Contains(out, "migrations applied"))
	})
}

// TestGracefulShutdown sends SIGTERM while an attempt runs: the server stops
// accepting, lets the attempt finish within the grace period, records it, and
// exits 0; an attempt longer than the grace period is recorded as interrupted.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "g.db")
	c := startChild(t, dbPath, "SHUTDOWN_GRACE=3s")
	client := newClient()
	code, _, err := postJSON(client, c.url("/v1/workflows"), `{"name":"g","tasks":[
		{"id":"short","type":"work","input":{"ms":400}},
		{"id":"long","type":"work","input":{"ms":60000}}]}`)
	is.NoErr(err)
	is.Equal(code, 201) // registered
	code, body, err := postJSON(client, c.url("/v1/run"), `{"workflow":"g"}`)
	is.NoErr(err)
	is.Equal(code, 201) // started
	id := jsonField(t, body, "id")
	waitTasks(t, client, c, id, func(states map[string]string) bool {
		return states["short"] == "running" && states["long"] == "running"
	})
	start := time.Now()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		is.NoErr(c.err) // exit 0
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	t.Logf("shutdown took %s", time.Since(start))

	ctx := context.Background()
	db, err := store.Open(ctx, dbPath, store.Options{})
	is.NoErr(err)
	defer db.Close()
	_, tasks, err := db.LoadRun(ctx, "default", id)
	is.NoErr(err)
	states := map[string]engine.TaskState{}
	for _, tk := range tasks {
		states[tk.TaskID] = tk.State
	}
	is.Equal(states["short"], engine.TaskCompleted) // finished within the grace period and recorded
	is.Equal(states["long"], engine.TaskReady)      // interrupted, back to ready for the next start
	events, err := db.RunEvents(ctx, "default", id, 0, 0)
	is.NoErr(err)
	interrupted := false
	for _, e := range events {
		if e.TaskID == "long" && e.Type == engine.EventTaskAttemptFailed && bytes.Contains(e.Data, []byte(`"reason":"interrupted"`)) {
			interrupted = true
		}
	}
	is.True(interrupted) // the interruption is in the history
}

func TestCommand_Run(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	def := filepath.Join(dir, "local.json")
	os.WriteFile(def, []byte(`{"name":"local","output":{"greeting":"${b.output.msg}"},"tasks":[
		{"id":"a","type":"sleep","config":{"duration":"20ms"}},
		{"id":"b","type":"noop","depends_on":["a"],"input":{"msg":"hello ${workflow.input.who}"}}]}`), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"name":"x","tasks":[{"id":"a","type":"nope"}]}`), 0o600)
	failing := filepath.Join(dir, "failing.json")
	os.WriteFile(failing, []byte(`{"name":"f","tasks":[{"id":"a","type":"exec","config":{"command":"false"}}]}`), 0o600)

	t.Run("a definition runs in this process and its history is printed", func(t *testing.T) {
		is := is.New(t)
		code, out, _ := runCmd("run", "--input", `{"who":"world"}`, "--log-level", "warn", def)
		is.Equal(code, 0)                                                    // completed
		is.True(strings.Contains(out, `output: {"greeting":"hello world"}`)) // the run's output
		is.True(strings.Contains(out, "hash chain: ok (9 events)"))          // and its checked history
	})
	t.Run("the database is kept when named", func(t *testing.T) {
		is := is.New(t)
		path := filepath.Join(dir, "kept.db")
		code, _, _ := runCmd("run", "--database-url", path, "--log-level", "warn", "--input", `{"who":"me"}`, def)
		is.Equal(code, 0)
		code, out, _ := runCmd("verify", "--database-url", path)
		is.Equal(code, 0)
		is.True(strings.Contains(out, "verified 1 runs")) // the run is in the named database
	})
	t.Run("an invalid definition and a failed run exit 1", func(t *testing.T) {
		is := is.New(t)
		code, _, errOut := runCmd("run", "--log-level", "warn", bad)
		is.Equal(code, 1)
		is.True(strings.Contains(errOut, `unknown task type "nope"`)) // the problem
		code, _, errOut = runCmd("run", "--log-level", "warn", failing)
		is.Equal(code, 1) // exec is disabled unless asked
		is.True(strings.Contains(errOut, "--enable-exec"))
		code, _, errOut = runCmd("run", "--log-level", "warn", "--enable-exec", failing)
		is.Equal(code, 1) // false exits 1: the run fails
		is.True(strings.Contains(errOut, "ended failed"))
	})
}
