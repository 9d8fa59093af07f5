package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/cli"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// newServer serves a real engine on a SQLite file in a temporary directory.
func newServer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "cli.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Config{Store: db, ExternalTypes: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&api.Server{Engine: e, Metrics: metrics.NewSet(), Triggers: &engine.Triggers{Store: db, Engine: e}}).Handler())
	t.Cleanup(func() {
		srv.Close()
		stop, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		e.Stop(stop)
		db.Close()
	})
	return srv.URL
}

// run runs a command against url and returns its exit code and output.
func run(url string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args[0], append(args[1:], "--server", url), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	t.Parallel()
	url := newServer(t)
	dir := t.TempDir()
	def := filepath.Join(dir, "d.json")
	os.WriteFile(def, []byte(`{"name":"demo","tasks":[{"id":"a","type":"noop","input":{"x":"${workflow.input.x}"}},
		{"id":"b","type":"noop","depends_on":["a"]},{"id":"c","type":"python","depends_on":["a"]}]}`), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"name":"x","tasks":[{"id":"a","type":"noop","depends_on":["a"]},{"id":"b","type":"noop","depends_on":["zz"]}]}`), 0o600)

	t.Run("definitions register and list", func(t *testing.T) {
		is := is.New(t)
		code, out, _ := run(url, "definitions", "register", def)
		is.Equal(code, 0)
		is.True(strings.Contains(out, "registered demo version 1")) // new
		code, out, _ = run(url, "definitions", "register", def)
		is.Equal(code, 0)
		is.True(strings.Contains(out, "unchanged demo version 1")) // same again
		code, out, _ = run(url, "definitions", "list")
		is.Equal(code, 0)
		is.True(strings.Contains(out, "demo  1")) // a table row
	})

	var id string
	t.Run("workflows start, get, list, pause, resume, cancel, retry", func(t *testing.T) {
		is := is.New(t)
		code, out, errOut := run(url, "workflows", "start", "demo", "--input", `{"x":7}`, "-o", "json", "--actor", "carol")
		is.Equal(code, 0) // started
		is.Equal(errOut, "")
		var r wire.Run
		is.NoErr(json.Unmarshal([]byte(out), &r)) // -o json prints the run
		id = r.ID
		code, out, _ = run(url, "workflows", "get", id)
		is.Equal(code, 0)
		is.True(strings.Contains(out, "TASK")) // a task table
		is.True(strings.Contains(out, "python"))
		code, out, _ = run(url, "workflows", "list", "--status", "running")
		is.Equal(code, 0)
		is.True(strings.Contains(out, id)) // listed
		code, out, _ = run(url, "workflows", "pause", id)
		is.Equal(code, 0)
		is.True(strings.Contains(out, "paused"))
		code, _, errOut = run(url, "workflows", "pause", id)
		is.Equal(code, 1)                                          // refused
		is.True(strings.Contains(errOut, "current state: paused")) // with the state
		code, _, _ = run(url, "workflows", "resume", id)
		is.Equal(code, 0)
		code, out, _ = run(url, "workflows", "cancel", id)
		is.Equal(code, 0)
		is.True(strings.Contains(out, "cancelled"))
		code, out, _ = run(url, "workflows", "retry", id, "--task", "c")
		is.Equal(code, 0)
		is.True(strings.Contains(out, "running")) // c and nothing else runs again
	})

	t.Run("events prints the timeline and checks the chain", func(t *testing.T) {
		is := is.New(t)
		code, out, _ := run(url, "events", id)
		is.Equal(code, 0)
		for _, want := range []string{"run.created", "carol", "run.paused", "run.cancelled", "run.retried", "hash chain: ok"} {
			is.True(strings.Contains(out, want)) // each step and who asked
		}
		code, out, _ = run(url, "events", id, "--type", "run.paused", "-o", "json")
		is.Equal(code, 0)
		var events []wire.Event
		is.NoErr(json.Unmarshal([]byte(out), &events))
		is.Equal(len(events), 1) // filtered
	})

	t.Run("dag validate", func(t *testing.T) {
		is := is.New(t)
		code, out, _ := run(url, "dag", "validate", def)
		is.Equal(code, 0)
		is.True(strings.Contains(out, "level 1: b, c"))
		code, out, _ = run(url, "dag", "validate", bad)
		is.Equal(code, 1)                                   // invalid
		is.True(strings.Contains(out, "depends on itself")) // every problem
		is.True(strings.Contains(out, `unknown task "zz"`))
	})

	t.Run("usage, help and errors", func(t *testing.T) {
		is := is.New(t)
		code, _, errOut := run(url, "workflows", "get", "no-such-run")
		is.Equal(code, 1)
		is.True(strings.Contains(errOut, "404 not_found"))
		code, _, errOut = run(url, "workflows", "frobnicate")
		is.Equal(code, 2)
		is.True(strings.Contains(errOut, "unknown command"))
		code, _, errOut = run(url, "workflows", "get")
		is.Equal(code, 2) // missing RUN_ID
		is.True(strings.Contains(errOut, "usage"))
		code, _, errOut = run(url, "workflows", "list", "-h")
		is.Equal(code, 0) // help
		is.True(strings.Contains(errOut, "--status") || strings.Contains(errOut, "-status"))
		code, _, errOut = run(url, "workflows", "list", "-o", "yaml")
		is.Equal(code, 2)
		is.True(strings.Contains(errOut, "table or json"))
		code, _, errOut = run(url, "workflows", "start", "demo", "--input", "{not json")
		is.Equal(code, 1)
		is.True(strings.Contains(errOut, "input: not valid JSON"))
		code, _, errOut = run("http://127.0.0.1:1", "workflows", "list")
		is.Equal(code, 1) // no server
		is.True(errOut != "")
	})
}

// TestCLI_APIKey: the commands against a server send the key of --api-key or
// ORCHESTRATOR_API_KEY, and a server in AUTH=required refuses them without.
func TestCLI_APIKey(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "keys.db"), store.Options{})
	is.NoErr(err)
	t.Cleanup(func() { db.Close() })
	keys, err := engine.NewKeys(engine.KeysConfig{Store: db})
	is.NoErr(err)
	e, err := engine.New(engine.Config{Store: db, ExternalTypes: true})
	is.NoErr(err)
	is.NoErr(e.Start(ctx))
	t.Cleanup(func() { e.Stop(ctx) })
	admin := &engine.Admin{Store: db, Keys: keys}
	srv := httptest.NewServer((&api.Server{Engine: e, Metrics: metrics.NewSet(), Keys: keys, Admin: admin,
		AuthMode: api.AuthRequired}).Handler())
	t.Cleanup(srv.Close)
	_, key, err := admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleViewer, Name: "v"})
	is.NoErr(err)

	code, _, errOut := run(srv.URL, "workflows", "list")
	is.Equal(code, 1)                                    // refused without a key
	is.True(strings.Contains(errOut, "unauthenticated")) // saying why
	code, _, errOut = run(srv.URL, "workflows", "list", "--api-key", key)
	is.Equal(code, 0) // with the flag
	_ = errOut
	t.Setenv("ORCHESTRATOR_API_KEY", key)
	code, _, _ = run(srv.URL, "workflows", "list")
	is.Equal(code, 0) // and with the variable
}
