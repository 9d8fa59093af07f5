package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// startKeyedWorker starts an example worker of tenant acme with an API key:
// the Go one reads it from ORCHESTRATOR_API_KEY, the Python one from
// --api-key.
func startKeyedWorker(t *testing.T, server, id, types, key string, python bool) {
	t.Helper()
	args := []string{"--server", server, "--tenant", "acme", "--types", types, "--worker-id", id}
	var cmd *exec.Cmd
	if python {
		cmd = exec.Command("python3", append([]string{"examples/workers/python/worker.py", "--api-key", key}, args...)...)
	} else {
		cmd = exec.Command(exampleWorker(t), args...)
		cmd.Env = append(os.Environ(), "ORCHESTRATOR_API_KEY="+key)
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("worker %s log:\n%s", id, logs.String())
		}
	})
}

// waitEnded waits for a run to end and returns it.
func waitEnded(t *testing.T, c *client.OrchestratorClient, id string) *wire.RunDetails {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		d, err := c.GetWorkflow(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if d.State.Terminal() {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s", id, d.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refusedWith checks that err is an answer of the given status and code.
func refusedWith(t *testing.T, err error, status int, code string) *client.Error {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != status || ce.Code != code {
		t.Fatalf("got %v, want %d %s", err, status, code)
	}
	return ce
}

// TestAccess_EndToEnd: an admin key bootstrapped offline on the database
// file, then a real server in AUTH=required: the admin creates a tenant and
// its operator and worker keys over HTTP, the operator starts a run, the
// example workers complete it with the worker key, and the events record
// the keys. Bad credentials are refused and write nothing.
func TestAccess_EndToEnd(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "access.db")

	// Offline: the first admin key, on a file no server has opened yet.
	code, adminKey, errOut := runCmd("keys", "create", "--role", "admin", "--name", "ops", "--database-url", path)
	is.Equal(code, 0) // created
	adminKey = strings.TrimSpace(adminKey)
	is.True(strings.HasPrefix(adminKey, engine.KeyPrefix))     // printed on stdout alone
	is.True(strings.Contains(errOut, "the only time the key")) // with a warning on stderr
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)")
	is.NoErr(err)
	var stored string
	is.NoErr(raw.QueryRow(`SELECT secret_hash FROM api_keys`).Scan(&stored))
	raw.Close()
	_, secret, _ := strings.Cut(strings.TrimPrefix(adminKey, engine.KeyPrefix), "_")
	is.Equal(stored, engine.HashSecret(secret)) // only the secret's hash is stored

	srv := startChild(t, path, "AUTH=required")
	t.Cleanup(func() { srv.kill(t) })
	base := "http://" + srv.addr
	newClient := func(key string, opts ...client.Option) *client.OrchestratorClient {
		c, err := client.New(base, append([]client.Option{client.WithAPIKey(key)}, opts...)...)
		is.NoErr(err)
		return c
	}
	admin := newClient(adminKey)

	t.Run("without a key only /health answers", func(t *testing.T) {
		is := is.New(t)
		anon, err := client.New(base)
		is.NoErr(err)
		_, err = anon.Health(ctx)
		is.NoErr(err) // health
		_, err = anon.ListWorkflows(ctx, client.RunFilter{})
		refusedWith(t, err, http.StatusUnauthorized, wire.CodeUnauthenticated) // the rest needs a key, from loopback too
		res, err := http.Get(base + "/metrics")
		is.NoErr(err)
		res.Body.Close()
		is.Equal(res.StatusCode, http.StatusUnauthorized)                        // metrics too
		is.True(strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer")) // asking for a bearer token
	})

	// Over HTTP with the admin key: a tenant and its keys.
	_, err = admin.CreateTenant(ctx, wire.CreateTenantRequest{ID: "acme"})
	is.NoErr(err) // tenant created
	opKey, err := admin.CreateKey(ctx, "acme", wire.CreateKeyRequest{Name: "ci", Role: wire.RoleOperator})
	is.NoErr(err) // operator key
	workerKey, err := admin.CreateKey(ctx, "acme", wire.CreateKeyRequest{Name: "fleet", Role: wire.RoleWorker, TaskTypes: []string{"python", "py2"}})
	is.NoErr(err) // worker key
	op := newClient(opKey.Key, client.WithTenant("acme"), client.WithActor("alice"))

	_, err = op.RegisterDefinition(ctx, []byte(`{"name":"etl","tasks":[{"id":"extract","type":"python","input":{"n":1}},
		{"id":"load","type":"py2","depends_on":["extract"]}]}`))
	is.NoErr(err) // registered by the operator
	run, err := op.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "etl"})
	is.NoErr(err) // started by the operator

	startKeyedWorker(t, base, "go-1", "python", workerKey.Key, false)
	pyType := "python"
	if _, err := exec.LookPath("python3"); err == nil {
		pyType = "py2"
		startKeyedWorker(t, base, "py-1", "py2", workerKey.Key, true)
	} else {
		t.Log("python3 not found: the Go worker runs both tasks")
	}
	if pyType == "python" {
		startKeyedWorker(t, base, "go-2", "py2", workerKey.Key, false)
	}
	done := waitEnded(t, op, run.ID)
	is.Equal(done.State, wire.RunCompleted) // the workers completed it

	t.Run("the events record the keys as actors", func(t *testing.T) {
		is := is.New(t)
		page, err := op.WorkflowEvents(ctx, run.ID, client.EventsQuery{})
		is.NoErr(err)
		opActor, workerActor := "key:"+opKey.ID+":ci", "key:"+workerKey.ID+":fleet"
		byWorkers := 0
		for _, e := range page.Events {
			switch {
			case e.Type == wire.EventTaskStarted || e.Type == wire.EventTaskCompleted:
				byWorkers++
			}
			switch {
			case e.Type == wire.EventRunCreated:
				is.Equal(e.Actor, opActor)    // the operator's key started it
				is.Equal(e.OnBehalf, "alice") // on behalf of its X-Actor
			case e.Type == wire.EventTaskStarted || e.Type == wire.EventTaskCompleted:
				is.Equal(e.Actor, workerActor)                                                // the worker's key leased and completed
				is.True(e.OnBehalf == "go-1" || e.OnBehalf == "py-1" || e.OnBehalf == "go-2") // for the worker that did
			}
		}
		is.Equal(byWorkers, 4) // two tasks, each leased and completed
		audit, err := op.TenantEvents(ctx, client.EventFilter{Actor: workerActor})
		is.NoErr(err)
		is.True(len(audit.Events) >= 4) // the audit query finds the worker key's events
	})

	t.Run("bad credentials are refused and write nothing", func(t *testing.T) {
		is := is.New(t)
		viewer, err := admin.CreateKey(ctx, "acme", wire.CreateKeyRequest{Name: "v", Role: wire.RoleViewer})
		is.NoErr(err)
		_, err = admin.RevokeKey(ctx, "acme", viewer.ID)
		is.NoErr(err)
		brief, err := admin.CreateKey(ctx, "acme", wire.CreateKeyRequest{Name: "brief", Role: wire.RoleOperator, ExpiresAt: time.Now().Add(100 * time.Millisecond)})
		is.NoErr(err)
		for !time.Now().After(brief.ExpiresAt) { // until its expiry has passed
			time.Sleep(time.Millisecond)
		}
		before, err := admin.AdminLog(ctx, client.AdminLogQuery{})
		is.NoErr(err)
		list, err := op.ListWorkflows(ctx, client.RunFilter{})
		is.NoErr(err)
		start := client.ExecuteRequest{Workflow: "etl"}
		for _, c := range []struct {
			name   string
			c      *client.OrchestratorClient
			status int
			code   string
		}{
			{"a malformed key", newClient("not-a-key", client.WithTenant("acme")), http.StatusUnauthorized, wire.CodeUnauthenticated},
			{"an unknown key", newClient("orch_0123456789abcdef_"+strings.Repeat("ab", 32), client.WithTenant("acme")), http.StatusUnauthorized, wire.CodeUnauthenticated},
			{"a revoked key", newClient(viewer.Key, client.WithTenant("acme")), http.StatusUnauthorized, wire.CodeUnauthenticated},
			{"an expired key", newClient(brief.Key, client.WithTenant("acme")), http.StatusUnauthorized, wire.CodeUnauthenticated},
			{"a key of another tenant", newClient(opKey.Key), http.StatusForbidden, wire.CodeForbidden},
			{"a role without the permission", newClient(workerKey.Key, client.WithTenant("acme")), http.StatusForbidden, wire.CodeForbidden},
		} {
			_, err := c.c.ExecuteWorkflow(ctx, start)
			refusedWith(t, err, c.status, c.code)
		}
		_, err = newClient(workerKey.Key, client.WithTenant("acme")).ExecuteWorkflow(ctx, start)
		is.Equal(refusedWith(t, err, http.StatusForbidden, wire.CodeForbidden).Detail, "role worker does not allow runs.start") // naming what is missing
		after, err := op.ListWorkflows(ctx, client.RunFilter{})
		is.NoErr(err)
		is.Equal(len(after.Runs), len(list.Runs)) // no run was started
		log, err := admin.AdminLog(ctx, client.AdminLogQuery{Verify: true})
		is.NoErr(err)
		is.Equal(len(log.Entries), len(before.Entries)) // nor anything administrative written
		is.True(log.Verified != nil && *log.Verified)   // and the admin log chains
	})

	t.Run("verify checks the runs and the admin log", func(t *testing.T) {
		is := is.New(t)
		code, out, _ := runCmd("verify", "--database-url", path)
		is.Equal(code, 0)                          // verified, the server still running
		is.True(strings.Contains(out, "0 differ")) // every run
		// And the admin log: the offline key, the tenant, four keys, a revocation.
		is.True(strings.Contains(out, "verified the admin log: 7 entries chain"))
		db, err := store.Open(ctx, path, store.Options{ReadOnly: true})
		is.NoErr(err)
		defer db.Close()
		k, err := db.GetKey(ctx, workerKey.ID)
		is.NoErr(err)
		is.Equal(k.TenantID, "acme") // the worker key as it was created
	})
}

// TestAccess_PolicyReloadOnSIGHUP: SIGHUP makes the server read its policy
// again; the admin log records both loads.
func TestAccess_PolicyReloadOnSIGHUP(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "access.db")
	pol := filepath.Join(dir, "authz.rego")
	text, err := os.ReadFile("examples/policy/authz.rego")
	is.NoErr(err)
	is.NoErr(os.WriteFile(pol, text, 0o644))
	code, adminKey, _ := runCmd("keys", "create", "--role", "admin", "--name", "ops", "--database-url", path)
	is.Equal(code, 0)
	code, ciKey, _ := runCmd("keys", "create", "--tenant", "default", "--role", "operator", "--name", "ci", "--database-url", path)
	is.Equal(code, 0)
	srv := startChild(t, path, "AUTH=required", "POLICY_FILE="+pol)
	t.Cleanup(func() { srv.kill(t) })
	admin, err := client.New("http://"+srv.addr, client.WithAPIKey(strings.TrimSpace(adminKey)))
	is.NoErr(err)
	ci, err := client.New("http://"+srv.addr, client.WithAPIKey(strings.TrimSpace(ciKey)))
	is.NoErr(err)
	_, err = ci.RegisterWorkflow(ctx, []byte(`{"name":"deploy","tasks":[{"id":"a","type":"noop"}]}`))
	is.NoErr(err) // registering is not what the policy restricts
	_, err = ci.Run(ctx, client.ExecuteRequest{Workflow: "deploy"})
	refusedWith(t, err, http.StatusForbidden, wire.CodeForbidden) // the example policy: ci keys start ci-* only

	is.NoErr(os.WriteFile(pol, []byte("package orchestrator\n\ndefault allow := true\n"), 0o644))
	is.NoErr(srv.cmd.Process.Signal(syscall.SIGHUP))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err = ci.Run(ctx, client.ExecuteRequest{Workflow: "deploy"}); err == nil {
			break // the new policy is in force
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new policy is not in force after SIGHUP: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The reload is recorded right after it takes effect: wait for the entry.
	var loads []string
	for {
		log, err := admin.AdminLog(ctx, client.AdminLogQuery{})
		is.NoErr(err)
		loads = loads[:0]
		for _, e := range log.Entries {
			if e.Action == string(engine.AdminPolicyLoaded) {
				loads = append(loads, e.Actor)
			}
		}
		if len(loads) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	is.Equal(loads, []string{"server", "server:SIGHUP"}) // loaded at start and on the signal
}
