package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/cli"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// serveFile serves the database at path in AUTH=required on 127.0.0.1, as
// `orchestrator serve` would after an offline bootstrap on that file.
func serveFile(t *testing.T, path string) string {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := engine.NewKeys(engine.KeysConfig{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Stop() })
	e, err := engine.New(engine.Config{Store: db, ExternalTypes: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(ctx) })
	srv := httptest.NewServer((&api.Server{Engine: e, Metrics: metrics.NewSet(), Keys: keys,
		Admin: &engine.Admin{Store: db, Keys: keys}, AuthMode: api.AuthRequired}).Handler())
	t.Cleanup(srv.Close) // closed first: no call is in flight when the engine stops
	return srv.URL
}

// online runs a tenants or keys command on the server at url with key.
func online(url, key string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args[0], append(args[1:], "--server", url, "--api-key", key), &out, &errb)
	return code, out.String(), errb.String()
}

// mustOnline runs an online command that must succeed and returns its stdout.
func mustOnline(t *testing.T, url, key string, args ...string) string {
	t.Helper()
	code, out, errOut := online(url, key, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	return out
}

// bootstrap makes a database file with an admin key, offline, and serves it.
func bootstrap(t *testing.T) (path, url, root string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "online.db")
	root = strings.TrimSpace(mustOffline(t, path, "keys", "create", "--role", "admin", "--name", "root"))
	return path, serveFile(t, path), root
}

// TestAccessCommands_Online: with --server the tenants and keys commands
// act through the admin API, and what they do is stored in the server's file.
func TestAccessCommands_Online(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	path, url, root := bootstrap(t)

	var tn engine.Tenant
	is.NoErr(json.Unmarshal([]byte(mustOnline(t, url, root, "tenants", "create", "acme", "--name", "Acme Corp",
		"--max-active-runs", "-1", "--retention-days", "30", "-o", "json")), &tn))
	is.Equal(tn.Name, "Acme Corp")                               // created online
	is.Equal(tn.Settings.Quotas.MaxActiveRuns, engine.Unlimited) // -1 lifts the limit, on the wire too
	is.Equal(tn.Settings.RetentionDays, 30)
	is.True(strings.Contains(mustOffline(t, path, "tenants", "get", "acme"), "quotas: max_active_runs=unlimited")) // in the file
	is.True(strings.Contains(mustOnline(t, url, root, "tenants", "list"), "acme"))                                 // listed

	code, keyOut, keyErr := online(url, root, "keys", "create", "--tenant", "acme", "--role", "worker", "--name", "py",
		"--task-types", "python,shell", "--expires", "720h")
	is.Equal(code, 0)                                               // a worker key, online
	is.Equal(strings.Count(keyOut, "\n"), 1)                        // stdout is the key alone
	is.True(strings.Contains(keyErr, "only time the key is shown")) // the rest on stderr
	worker := strings.TrimSpace(keyOut)
	_, keys := openKeys(t, path)
	p, err := keys.Authenticate(ctx, worker)
	is.NoErr(err)                                      // it authenticates on the file
	is.Equal(p.TenantID, "acme")                       // of acme
	is.Equal(p.TaskTypes, []string{"python", "shell"}) // limited to its types

	var listed []map[string]any
	out := mustOnline(t, url, root, "keys", "list", "--tenant", "acme", "-o", "json")
	is.NoErr(json.Unmarshal([]byte(out), &listed))
	is.Equal(len(listed), 1)                                 // the key shows
	is.Equal(listed[0]["id"], p.KeyID)                       // by its id
	is.True(listed[0]["expires_at"] != nil)                  // with its expiry
	is.True(!strings.Contains(out, worker[len(worker)-16:])) // never its secret
	for field := range listed[0] {
		is.True(!strings.Contains(field, "secret")) // nor a field of it
	}
	is.True(strings.Contains(mustOnline(t, url, root, "keys", "list", "--tenant", "acme"), "python,shell")) // the table too

	is.True(strings.Contains(mustOnline(t, url, root, "keys", "revoke", p.KeyID, "--tenant", "acme"), "revoked key "+p.KeyID))
	var stored []engine.APIKey
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "keys", "list", "--tenant", "acme", "-o", "json")), &stored))
	is.Equal(len(stored), 1)
	is.True(!stored[0].RevokedAt.IsZero()) // the revocation is in the file
	code, _, errOut := online(url, root, "keys", "revoke", p.KeyID, "--tenant", "acme")
	is.Equal(code, 1)                         // revoking twice is refused
	is.True(strings.Contains(errOut, "(409")) // as printErr prints a refusal

	is.True(strings.Contains(mustOnline(t, url, root, "tenants", "suspend", "acme"), "tenant acme is suspended"))
	code, _, errOut = online(url, root, "tenants", "suspend", "acme")
	is.Equal(code, 1)                                             // suspending twice is refused
	is.True(strings.Contains(errOut, "current state: suspended")) // with the state
	is.True(strings.Contains(mustOnline(t, url, root, "tenants", "resume", "acme"), "tenant acme is active"))
	is.NoErr(json.Unmarshal([]byte(mustOnline(t, url, root, "tenants", "update", "acme", "--name", "Acme", "-o", "json")), &tn))
	is.Equal(tn.Name, "Acme")                                    // renamed
	is.Equal(tn.State, engine.TenantActive)                      // resumed
	is.Equal(tn.Settings.Quotas.MaxActiveRuns, engine.Unlimited) // the settings stay
	is.NoErr(json.Unmarshal([]byte(mustOnline(t, url, root, "tenants", "update", "acme", "--max-pending-runs", "7", "-o", "json")), &tn))
	is.Equal(tn.Settings.Quotas, engine.TenantQuotas{MaxActiveRuns: engine.Unlimited, MaxPendingRuns: 7}) // one quota changed, the other stays
	is.Equal(tn.Settings.RetentionDays, 30)                                                               // so does the retention
	is.Equal(tn.Name, "Acme")

	owner := strings.TrimSpace(mustOnline(t, url, root, "keys", "create", "--tenant", "acme", "--role", "owner", "--name", "boss"))
	mustOnline(t, url, owner, "keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "dash") // an owner makes its tenant's keys
	is.True(strings.Contains(mustOnline(t, url, owner, "keys", "list", "--tenant", "acme"), "dash"))      // and lists them

	db, err := store.Open(ctx, path, store.Options{})
	is.NoErr(err)
	defer db.Close()
	log, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: "acme"})
	is.NoErr(err)          // the admin log
	is.True(len(log) >= 7) // every online change
	for _, e := range log {
		is.True(!strings.HasPrefix(e.Actor, "cli")) // by the root key, not the command line's user
	}
}

// TestAccessCommands_OnlineRefused: the server's refusals exit 1 as the
// other server commands print them, and what the API cannot do is a usage
// error naming --tenant, before any call.
func TestAccessCommands_OnlineRefused(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	path, url, root := bootstrap(t)
	mustOnline(t, url, root, "tenants", "create", "acme")
	operator := strings.TrimSpace(mustOnline(t, url, root, "keys", "create", "--tenant", "acme", "--role", "operator", "--name", "ci"))

	code, out, errOut := online(url, operator, "keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "v")
	is.Equal(code, 1)                                                             // an operator may not make keys
	is.Equal(out, "")                                                             // no key printed
	is.True(strings.Contains(errOut, "(403 forbidden)"))                          // the server's refusal
	is.True(strings.Contains(errOut, "role operator does not allow keys.manage")) // naming the permission
	var stored []engine.APIKey
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "keys", "list", "--tenant", "acme", "-o", "json")), &stored))
	is.Equal(len(stored), 1) // nothing was created: the operator's key alone

	code, _, errOut = online(url, "", "tenants", "list")
	is.Equal(code, 1)                                    // no key
	is.True(strings.Contains(errOut, "unauthenticated")) // saying why

	cases := []struct {
		args []string
		says string
	}{
		{[]string{"keys", "create", "--role", "admin", "--name", "root2"}, "--tenant: required with --server"},
		{[]string{"keys", "list"}, "--tenant: required with --server"},
		{[]string{"keys", "revoke", stored[0].ID}, "--tenant: required with --server"},
		{[]string{"keys", "list", "--database-url", path}, "give one of them"},
	}
	for _, c := range cases {
		code, _, errOut := online(url, root, c.args...)
		if code != 2 || !strings.Contains(errOut, c.says) {
			t.Errorf("%v: exit %d, %q; want exit 2 saying %q", c.args, code, errOut, c.says)
		}
	}
	code, _, errOut = online("ftp://nowhere", root, "tenants", "list")
	is.Equal(code, 2) // a --server that is not an http URL
	is.True(strings.Contains(errOut, "--server"))

	// Bad input is a usage error naming the flag in both modes, whether the
	// file or the server (a 400 naming the field) finds it.
	bad := []struct {
		args []string
		says string
	}{
		{[]string{"tenants", "update", "acme", "--max-pending-runs", "-3"}, "--max-pending-runs: "},
		{[]string{"tenants", "update", "acme", "--retention-days", "99999"}, "--retention-days: "},
		{[]string{"tenants", "create", "beta", "--on-active-limit", "wait"}, "--on-active-limit: "},
		{[]string{"tenants", "update", "acme", "--start-rate", "NaN"}, "--start-rate: "}, // no JSON can carry it to the server
		{[]string{"tenants", "create", "beta", "--start-rate", "+Inf"}, "--start-rate: "},
		{[]string{"keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "a b"}, "--name: must match"},
	}
	for _, c := range bad {
		code, _, errOut := offline(path, c.args...)
		if code != 2 || !strings.Contains(errOut, c.says) {
			t.Errorf("offline %v: exit %d, %q; want exit 2 saying %q", c.args, code, errOut, c.says)
		}
		code, _, errOut = online(url, root, c.args...)
		if code != 2 || !strings.Contains(errOut, c.says) {
			t.Errorf("online %v: exit %d, %q; want exit 2 saying %q", c.args, code, errOut, c.says)
		}
	}
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "keys", "list", "--tenant", "acme", "-o", "json")), &stored))
	is.Equal(len(stored), 1) // still the operator's key alone
}

// TestAccessCommands_URLEnvStaysOffline is not parallel: it sets
// ORCHESTRATOR_URL, which must not take the commands off the file (the
// Docker image sets it for its health check).
func TestAccessCommands_URLEnvStaysOffline(t *testing.T) {
	is := is.New(t)
	t.Setenv("ORCHESTRATOR_URL", "http://127.0.0.1:1")
	path := filepath.Join(t.TempDir(), "env.db")
	mustOffline(t, path, "keys", "create", "--role", "admin", "--name", "root")
	is.True(strings.Contains(mustOffline(t, path, "keys", "list"), "root")) // on the file
}
