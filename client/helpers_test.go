package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// waitTimeout bounds every wait on a condition; pollEvery is how often it
// looks again.
const (
	waitTimeout = 15 * time.Second
	pollEvery   = 5 * time.Millisecond
)

// Task types the test server runs in-process; any other type ("ext") waits
// for an external worker.
const (
	typeHold  = "hold"    // runs until the env releases it or its context ends
	typeBoom  = "boom"    // always fails with code "boom"
	typeFlaky = "flaky"   // fails its first attempt with code "flaky", then returns its input
	typePanic = "panicky" // panics
	typeExt   = "ext"     // no handler: leased to external workers
)

// testEnv is a real server: a SQLite file in t.TempDir(), an engine and the
// API on 127.0.0.1, all stopped at cleanup.
type testEnv struct {
	URL    string
	DB     *store.DB
	Engine *engine.Engine

	srv         *httptest.Server
	release     chan struct{} // closed by Release: every hold attempt returns
	releaseOnce sync.Once
}

// envOptions change what newEnv builds.
type envOptions struct {
	MaxBodyBytes int64 // 0: the API's default
}

// newEnv starts a server for one test.
func newEnv(t *testing.T, opts envOptions) *testEnv {
	t.Helper()
	ctx := context.Background()
	set := metrics.NewSet()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), store.Options{Metrics: set})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	eng, err := engine.New(engine.Config{Store: db, ExternalTypes: true, Metrics: set})
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	env := &testEnv{DB: db, Engine: eng, release: make(chan struct{})}
	handlers := map[string]engine.HandlerFunc{
		typeHold: func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
			select {
			case <-env.release:
				return a.Input, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
		typeBoom: func(context.Context, *engine.Attempt) (json.RawMessage, error) {
			return nil, &engine.TaskError{Code: "boom", Message: "this task always fails"}
		},
		typeFlaky: func(_ context.Context, a *engine.Attempt) (json.RawMessage, error) {
			if a.Attempt == 1 {
				return nil, &engine.TaskError{Code: "flaky", Message: "the first attempt fails"}
			}
			return a.Input, nil
		},
		typePanic: func(context.Context, *engine.Attempt) (json.RawMessage, error) {
			panic("the handler fell over")
		},
	}
	for typ, h := range handlers {
		if err := eng.Register(typ, h); err != nil {
			t.Fatalf("register %s: %v", typ, err)
		}
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatalf("start engine: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Stop(ctx)
	})
	t.Cleanup(env.Release) // runs before Stop: hold attempts end at once
	srv := httptest.NewServer((&api.Server{Engine: eng, Metrics: set, MaxBodyBytes: opts.MaxBodyBytes}).Handler())
	t.Cleanup(srv.Close)
	env.URL, env.srv = srv.URL, srv
	return env
}

// Release lets every hold attempt, running or to come, finish.
func (e *testEnv) Release() { e.releaseOnce.Do(func() { close(e.release) }) }

// client returns a client of the env's server.
func (e *testEnv) client(t *testing.T, opts ...client.Option) *client.OrchestratorClient {
	t.Helper()
	c, err := client.New(e.URL, opts...)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

// ctxFor is a context that ends with the test or after a minute.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitRun polls the run through the tenant API until ok holds, failing the
// test after waitTimeout.
func waitRun(t *testing.T, c *client.OrchestratorClient, id string, what string, ok func(*client.RunDetails) bool) *client.RunDetails {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		d, err := c.GetWorkflow(context.Background(), id)
		if err != nil {
			t.Fatalf("wait for run %s to be %s: %v", id, what, err)
		}
		if ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s is not %s after %s: state %s, tasks %+v", id, what, waitTimeout, d.State, d.Tasks)
		}
		time.Sleep(pollEvery)
	}
}

// waitState waits until the run is in state s.
func waitState(t *testing.T, c *client.OrchestratorClient, id string, s wire.RunState) *client.RunDetails {
	t.Helper()
	return waitRun(t, c, id, string(s), func(d *client.RunDetails) bool { return d.State == s })
}

// waitTask waits until a task of the run is in state s.
func waitTask(t *testing.T, c *client.OrchestratorClient, id, task string, s wire.TaskState) *client.RunDetails {
	t.Helper()
	return waitRun(t, c, id, "with task "+task+" "+string(s), func(d *client.RunDetails) bool {
		tk := d.Task(task)
		return tk != nil && tk.State == s
	})
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("wait for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, waitTimeout)
		}
		time.Sleep(pollEvery)
	}
}

// apiError returns err as a *client.Error, failing the test otherwise.
func apiError(t *testing.T, err error) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a *client.Error, got %T: %v", err, err)
	}
	return e
}

// wantProblem checks err is a *client.Error with the status and code and,
// when fields are given, that its errors[] name exactly those fields.
func wantProblem(t *testing.T, err error, status int, code string, fields ...string) *client.Error {
	t.Helper()
	is := is.NewRelaxed(t)
	e := apiError(t, err)
	is.Equal(e.Status, status) // status
	is.Equal(e.Code, code)     // problem code
	if len(fields) > 0 {
		is.Equal(e.Fields(), fields) // errors[] names the fields
	}
	return e
}

// def is a one-task definition JSON of the given type.
func def(name, typ string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"name":%q,"tasks":[{"id":"t1","type":%q}]}`, name, typ))
}

// mustExecute starts a run of a registered workflow.
func mustExecute(t *testing.T, c *client.OrchestratorClient, workflow string) *client.Execution {
	t.Helper()
	ex, err := c.ExecuteWorkflow(context.Background(), client.ExecuteRequest{Workflow: workflow})
	if err != nil {
		t.Fatalf("execute %s: %v", workflow, err)
	}
	return ex
}

// mustRegister registers a definition for the client's tenant.
func mustRegister(t *testing.T, c *client.OrchestratorClient, d json.RawMessage) *client.Registration {
	t.Helper()
	v, err := c.RegisterDefinition(context.Background(), d)
	if err != nil {
		t.Fatalf("register definition: %v", err)
	}
	return v
}
