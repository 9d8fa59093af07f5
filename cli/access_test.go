package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/cli"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// offline runs an offline command on the database at path.
func offline(path string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args[0], append(args[1:], "--database-url", path), &out, &errb)
	return code, out.String(), errb.String()
}

// mustOffline runs an offline command that must succeed and returns its stdout.
func mustOffline(t *testing.T, path string, args ...string) string {
	t.Helper()
	code, out, errOut := offline(path, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	return out
}

// openKeys opens the store at path and an authenticator on it, with no
// cache, as a server on the same file would see it.
func openKeys(t *testing.T, path string) (*store.DB, *engine.Keys) {
	t.Helper()
	db, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := engine.NewKeys(engine.KeysConfig{Store: db, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Stop() })
	return db, keys
}

func TestAccessCommands_Bootstrap(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fresh.db") // no file yet: bootstrap before the first serve

	root := strings.TrimSpace(mustOffline(t, path, "keys", "create", "--role", "admin", "--name", "root"))
	out := mustOffline(t, path, "tenants", "create", "acme", "--name", "Acme Corp")
	is.True(strings.Contains(out, "created tenant acme (Acme Corp)")) // told
	code, ciOut, ciErr := offline(path, "keys", "create", "--tenant", "acme", "--role", "operator", "--name", "ci", "--expires", "720h")
	is.Equal(code, 0)                                              // created
	is.True(strings.Contains(ciErr, "only time the key is shown")) // told it is shown once
	ci := strings.TrimSpace(ciOut)
	is.Equal(strings.Count(ciOut, "\n"), 1) // stdout is the key alone
	var w struct {
		Key string `json:"key"`
		engine.APIKey
	}
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "keys", "create", "--tenant", "acme", "--role", "worker",
		"--name", "py", "--task-types", "python,shell", "-o", "json")), &w)) // -o json prints the key and its record

	db, keys := openKeys(t, path)
	p, err := keys.Authenticate(ctx, root)
	is.NoErr(err)                      // the bootstrap key authenticates
	is.Equal(p.Role, engine.RoleAdmin) // as the admin
	p, err = keys.Authenticate(ctx, ci)
	is.NoErr(err)                         // the ci key too
	is.Equal(p.TenantID, "acme")          // of acme
	is.Equal(p.Role, engine.RoleOperator) // an operator
	is.Equal(p.Name, "ci")
	stored, err := db.GetKey(ctx, p.KeyID)
	is.NoErr(err)                       // its record
	is.True(!stored.ExpiresAt.IsZero()) // with its expiry
	p, err = keys.Authenticate(ctx, w.Key)
	is.NoErr(err)                                      // the worker key
	is.Equal(p.TaskTypes, []string{"python", "shell"}) // limited to its types
	is.Equal(p.KeyID, w.ID)

	var listed []map[string]any
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "keys", "list", "--tenant", "acme", "-o", "json")), &listed))
	is.Equal(len(listed), 2) // acme's two keys
	for _, k := range listed {
		for field := range k {
			is.True(!strings.Contains(field, "secret")) // no secret, nor its hash
		}
	}
	table := mustOffline(t, path, "keys", "list")
	is.True(strings.Contains(table, "root"))               // every key without --tenant
	is.True(!strings.Contains(table, root[len(root)-64:])) // never a secret

	mustOffline(t, path, "keys", "revoke", p.KeyID)
	_, err = keys.Authenticate(ctx, w.Key)
	is.True(errors.Is(err, engine.ErrKeyRevoked)) // revoked on the file holds for a server on it
	mustOffline(t, path, "tenants", "suspend", "acme")
	_, err = keys.Authenticate(ctx, ci)
	is.True(errors.Is(err, engine.ErrTenantSuspended)) // so does a suspension
	mustOffline(t, path, "tenants", "resume", "acme")
	_, err = keys.Authenticate(ctx, ci)
	is.NoErr(err) // and a resumption

	log, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: engine.AllTenants})
	is.NoErr(err) // the admin log
	var actions []engine.AdminAction
	for _, e := range log {
		actions = append(actions, e.Action)
		is.True(strings.HasPrefix(e.Actor, "cli")) // by the command line's user
	}
	is.Equal(actions, []engine.AdminAction{engine.AdminKeyCreated, engine.AdminTenantCreated, engine.AdminKeyCreated,
		engine.AdminKeyCreated, engine.AdminKeyRevoked, engine.AdminTenantSuspended, engine.AdminTenantResumed}) // every change
	n, err := db.VerifyAdminLog(ctx)
	is.NoErr(err)             // the chain verifies
	is.Equal(n, len(actions)) // every entry
}

func TestAccessCommands_Tenants(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	path := filepath.Join(t.TempDir(), "t.db")
	mustOffline(t, path, "tenants", "create", "acme")
	var tn engine.Tenant
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "tenants", "get", "acme", "-o", "json")), &tn))
	is.Equal(tn.Name, "acme")       // the name defaults to the id
	is.True(!tn.Settings.AllowExec) // a new tenant may not run exec tasks
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "tenants", "update", "acme", "--allow-exec", "-o", "json")), &tn))
	is.True(tn.Settings.AllowExec) // until an admin allows it
	is.Equal(tn.Name, "acme")      // the name stays
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "tenants", "update", "acme", "--name", "Acme", "-o", "json")), &tn))
	is.Equal(tn.Name, "Acme")      // renamed
	is.True(tn.Settings.AllowExec) // the settings stay
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "tenants", "update", "acme", "--max-active-runs", "5",
		"--on-active-limit", "queue", "--start-rate", "2.5", "-o", "json")), &tn))
	is.Equal(tn.Settings.Quotas, engine.TenantQuotas{MaxActiveRuns: 5, OnActiveLimit: "queue", StartRate: 2.5}) // quotas set
	is.True(tn.Settings.AllowExec)                                                                              // the rest stays
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "tenants", "update", "acme", "--max-active-runs", "-1", "-o", "json")), &tn))
	is.Equal(tn.Settings.Quotas.MaxActiveRuns, engine.Unlimited) // one quota changed
	is.Equal(tn.Settings.Quotas.StartRate, 2.5)                  // the others stay
	is.True(strings.Contains(mustOffline(t, path, "tenants", "get", "acme"), "quotas: start_rate=2.5 max_active_runs=unlimited on_active_limit=queue"))
	code, _, errOut := offline(path, "tenants", "update", "acme", "--max-pending-runs", "-3")
	is.Equal(code, 2)                                        // refused
	is.True(strings.Contains(errOut, "--max-pending-runs:")) // naming the flag
	is.NoErr(json.Unmarshal([]byte(mustOffline(t, path, "tenants", "create", "beta", "--max-input-bytes", "1024", "-o", "json")), &tn))
	is.Equal(tn.Settings.Quotas.MaxInputBytes, int64(1024)) // set at creation
	out := mustOffline(t, path, "tenants", "list")
	is.True(strings.Contains(out, "acme")) // listed
	is.True(strings.Contains(out, "default"))
	code, _, errOut = offline(path, "tenants", "suspend", "acme")
	is.Equal(code, 0)
	code, _, errOut = offline(path, "tenants", "suspend", "acme")
	is.Equal(code, 1)                                    // suspending twice is refused
	is.True(strings.Contains(errOut, "state suspended")) // naming the state
}

func TestAccessCommands_BadInput(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "b.db")
	mustOffline(t, path, "tenants", "create", "acme")
	cases := []struct {
		args []string
		code int
		says string
	}{
		{[]string{"keys", "create", "--tenant", "acme", "--role", "operator"}, 2, "--name: must match"},
		{[]string{"keys", "create", "--tenant", "acme", "--role", "boss", "--name", "x"}, 2, `--role: "boss": want one of`},
		{[]string{"keys", "create", "--role", "operator", "--name", "x"}, 2, "--tenant: required for role operator"},
		{[]string{"keys", "create", "--tenant", "acme", "--role", "admin", "--name", "x"}, 2, "--tenant: an admin key belongs to no tenant"},
		{[]string{"keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "x", "--task-types", "a"}, 2, "--task-types"},
		{[]string{"keys", "create", "--tenant", "acme", "--role", "worker", "--name", "x", "--task-types", "a,,b"}, 2, "--task-types (task_types[1])"},
		{[]string{"keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "x", "--expires", "-1h"}, 2, "--expires: must be a positive duration"},
		{[]string{"keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "x", "--expires", "soon"}, 2, "invalid value"},
		{[]string{"keys", "create", "--tenant", "ghost", "--role", "viewer", "--name", "x"}, 1, "ghost: tenant not found"},
		{[]string{"keys", "create", "extra", "--role", "admin", "--name", "x"}, 2, "usage"},
		{[]string{"keys", "revoke", "0123456789abcdef"}, 1, "not found"},
		{[]string{"keys", "list", "--tenant", "ghost"}, 1, "tenant not found"},
		{[]string{"keys", "list", "-o", "yaml"}, 2, "table or json"},
		{[]string{"tenants", "create", "a b"}, 2, "ID: tenant id \"a b\": must match"},
		{[]string{"tenants", "create", "acme"}, 1, "already taken"},
		{[]string{"tenants", "get", "ghost"}, 1, "tenant not found"},
		{[]string{"tenants", "update", "acme"}, 2, "nothing to change"},
		{[]string{"tenants", "resume", "acme"}, 1, "state active"},
		{[]string{"tenants", "frobnicate"}, 2, "unknown command"},
		{[]string{"tenants"}, 2, "usage"},
	}
	for _, c := range cases {
		code, _, errOut := offline(path, c.args...)
		if code != c.code || !strings.Contains(errOut, c.says) {
			t.Errorf("%v: exit %d, %q; want exit %d saying %q", c.args, code, errOut, c.code, c.says)
		}
	}
	is := is.New(t)
	db, _ := openKeys(t, path)
	log, err := db.ListAdmin(context.Background(), engine.AdminFilter{TenantID: engine.AllTenants})
	is.NoErr(err)         // the admin log
	is.Equal(len(log), 1) // holds only the tenant's creation: no refused command wrote anything
	keys, err := db.ListKeys(context.Background(), engine.AllTenants)
	is.NoErr(err)          // the keys
	is.Equal(len(keys), 0) // none was made

	missing := filepath.Join(t.TempDir(), "missing.db")
	code, _, errOut := offline(missing, "keys", "list")
	is.Equal(code, 1)                               // a missing database is an error for a read
	is.True(strings.Contains(errOut, "missing.db")) // naming it
	_, err = os.Stat(missing)
	is.True(errors.Is(err, os.ErrNotExist)) // and is not created
}

// TestAccessCommands_DatabaseURL is not parallel: it sets DATABASE_URL.
func TestAccessCommands_DatabaseURL(t *testing.T) {
	is := is.New(t)
	path := filepath.Join(t.TempDir(), "env.db")
	t.Setenv("DATABASE_URL", "sqlite://"+path)
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), "tenants", []string{"create", "acme"}, &out, &errb)
	is.Equal(code, 0) // created through DATABASE_URL
	_, keys := openKeys(t, path)
	_, err := keys.Tenant(context.Background(), "acme")
	is.NoErr(err) // in the file it names
}
