package client_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
)

// TestOrchestratorClient_TenantIsolation: globex sees nothing of acme's,
// whatever route it calls with acme's ids and names.
func TestOrchestratorClient_TenantIsolation(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	acme := env.client(t, client.WithTenant("acme"))
	globex := env.client(t, client.WithTenant("globex"))
	dflt := env.client(t)
	ctx := ctxFor(t)
	mustRegister(t, acme, json.RawMessage(`{"name":"secret","tasks":[{"id":"t1","type":"ext"},{"id":"t2","type":"hold"}]}`))
	run := mustExecute(t, acme, "secret")
	waitTask(t, acme, run.ID, "t2", wire.TaskRunning)
	mustRegister(t, globex, def("own", "noop"))
	own := mustExecute(t, globex, "own")
	waitState(t, globex, own.ID, wire.RunCompleted)

	// The checks run in parallel; the group ends before globex registers a
	// definition of acme's name below.
	t.Run("reads", func(t *testing.T) {
		t.Run("every run route answers 404 for another tenant's run", func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			calls := map[string]func() error{
				"get":        func() error { _, err := globex.GetWorkflow(ctx, run.ID); return err },
				"pause":      func() error { _, err := globex.PauseWorkflow(ctx, run.ID); return err },
				"resume":     func() error { _, err := globex.ResumeWorkflow(ctx, run.ID); return err },
				"cancel":     func() error { _, err := globex.CancelWorkflow(ctx, run.ID); return err },
				"retry":      func() error { _, err := globex.RetryWorkflow(ctx, run.ID, ""); return err },
				"retry task": func() error { _, err := globex.RetryWorkflow(ctx, run.ID, "t1"); return err },
				"metrics":    func() error { _, err := globex.GetWorkflowMetrics(ctx, run.ID); return err },
				"events":     func() error { _, err := globex.WorkflowEvents(ctx, run.ID, client.EventsQuery{}); return err },
				"verify": func() error {
					_, err := globex.WorkflowEvents(ctx, run.ID, client.EventsQuery{Verify: true})
					return err
				},
				"definition": func() error { _, err := globex.GetDefinitionVersion(ctx, "secret", 1); return err },
				"latest":     func() error { _, err := globex.GetDefinitionVersion(ctx, "secret", 0); return err },
				"execute": func() error {
					_, err := globex.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "secret"})
					return err
				},
				// The short API is the tenant "default": acme's run is not there either.
				"short get":        func() error { _, err := dflt.GetRun(ctx, run.ID); return err },
				"short events":     func() error { _, err := dflt.RunEvents(ctx, run.ID, client.EventsQuery{}); return err },
				"short pause":      func() error { _, err := dflt.PauseRun(ctx, run.ID); return err },
				"short resume":     func() error { _, err := dflt.ResumeRun(ctx, run.ID); return err },
				"short cancel":     func() error { _, err := dflt.CancelRun(ctx, run.ID); return err },
				"short retry":      func() error { _, err := dflt.RetryRun(ctx, run.ID, "t1"); return err },
				"short definition": func() error { _, err := dflt.GetWorkflowDefinition(ctx, "secret", 0); return err },
				"short run":        func() error { _, err := dflt.Run(ctx, client.ExecuteRequest{Workflow: "secret"}); return err },
			}
			for name, call := range calls {
				err := call()
				if !client.IsNotFound(err) {
					t.Errorf("%s: want 404, got %v", name, err)
				}
			}
			d, err := acme.GetWorkflow(ctx, run.ID)
			is.NoErr(err)                      // acme still sees its run
			is.Equal(d.State, wire.RunRunning) // untouched by globex's calls
		})

		t.Run("lists and event queries hold only the tenant's own data", func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			page, err := globex.ListWorkflows(ctx, client.RunFilter{})
			is.NoErr(err)                     // list
			is.Equal(len(page.Runs), 1)       // its own run only
			is.Equal(page.Runs[0].ID, own.ID) // globex's
			page, err = globex.ListWorkflows(ctx, client.RunFilter{Workflow: "secret"})
			is.NoErr(err)               // by acme's workflow name
			is.Equal(len(page.Runs), 0) // nothing
			defs, err := globex.ListDefinitions(ctx)
			is.NoErr(err)                 // definitions
			is.Equal(len(defs), 1)        // its own
			is.Equal(defs[0].Name, "own") // not acme's
			ev, err := globex.TenantEvents(ctx, client.EventFilter{Run: run.ID})
			is.NoErr(err)               // by acme's run
			is.Equal(len(ev.Events), 0) // nothing
			is.NoErr(globex.AllTenantEvents(ctx, client.EventFilter{}, func(e wire.Event) error {
				is.Equal(e.TenantID, "globex") // only globex's events
				is.True(e.RunID != run.ID)     // never acme's run
				return nil
			})) // paged
			n := 0
			is.NoErr(globex.StreamTenantEvents(ctx, client.EventFilter{}, func(e wire.Event) error {
				n++
				is.Equal(e.TenantID, "globex") // only globex's events
				return nil
			})) // streamed
			is.True(n > 0) // its own events are there
			n = 0
			is.NoErr(globex.StreamTenantEvents(ctx, client.EventFilter{Run: run.ID}, func(wire.Event) error { n++; return nil }))
			is.Equal(n, 0) // acme's run streams nothing
		})

		t.Run("globex's workers never lease acme's tasks", func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			l, err := globex.Poll(ctx, client.PollRequest{Types: []string{"ext"}, WorkerID: "g1"})
			is.NoErr(err)     // poll
			is.True(l == nil) // acme's ready task is not offered
			l, err = dflt.Poll(ctx, client.PollRequest{Types: []string{"ext"}, WorkerID: "d1"})
			is.NoErr(err)     // poll
			is.True(l == nil) // the default tenant's routes neither
			l, err = acme.Poll(ctx, client.PollRequest{Types: []string{"ext"}, WorkerID: "a1"})
			is.NoErr(err)             // acme's own worker
			is.True(l != nil)         // gets it
			is.Equal(l.RunID, run.ID) // acme's task
			_, err = globex.Heartbeat(ctx, l.ID, l.Token, 0)
			is.True(client.IsNotFound(err)) // globex cannot heartbeat it, even with the token
			_, err = globex.Complete(ctx, l.ID, l.Token, nil)
			is.True(client.IsNotFound(err)) // nor complete it
			_, err = globex.Fail(ctx, l.ID, l.Token, wire.TaskError{Code: "x"}, false)
			is.True(client.IsNotFound(err)) // nor fail it
			_, err = acme.Complete(ctx, l.ID, l.Token, nil)
			is.NoErr(err) // acme's worker still holds it
		})

	})

	t.Run("globex's definition of the same name is its own", func(t *testing.T) {
		is := is.New(t)
		v := mustRegister(t, globex, def("secret", "noop"))
		is.True(v.Created)     // a new definition for globex
		is.Equal(v.Version, 1) // its first version, whatever acme has
		a, err := acme.GetDefinitionVersion(ctx, "secret", 0)
		is.NoErr(err)                                             // acme's
		is.True(strings.Contains(string(a.Definition), `"hold"`)) // unchanged
	})

	t.Run("idempotency keys are per tenant", func(t *testing.T) {
		is := is.New(t)
		req := client.ExecuteRequest{Definition: def("keyed", "noop"), IdempotencyKey: "shared-key"}
		a, err := acme.ExecuteWorkflow(ctx, req)
		is.NoErr(err) // acme
		g, err := globex.ExecuteWorkflow(ctx, req)
		is.NoErr(err)                  // globex, same key and body
		is.True(!g.Replayed)           // not acme's answer
		is.True(g.ID != a.ID)          // its own run
		is.Equal(g.TenantID, "globex") // of its own tenant
	})
}

// TestOrchestratorClient_InvalidTenant: tenant ids the server does not
// accept are refused by the router (404) or by the handler (400).
func TestOrchestratorClient_InvalidTenant(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	ctx := ctxFor(t)
	for _, tc := range []struct {
		tenant string
		status int
	}{
		{"a/b", http.StatusNotFound},                     // two path segments: no route
		{strings.Repeat("x", 65), http.StatusBadRequest}, // too long
		{"bad id", http.StatusBadRequest},                // a space
		{"é", http.StatusBadRequest},                     // not [A-Za-z0-9_.-]
	} {
		t.Run("tenant "+tc.tenant[:min(len(tc.tenant), 10)], func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			c := env.client(t, client.WithTenant(tc.tenant))
			calls := map[string]func() error{
				"list": func() error { _, err := c.ListWorkflows(ctx, client.RunFilter{}); return err },
				"execute": func() error {
					_, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: def("x", "noop")})
					return err
				},
				"get":         func() error { _, err := c.GetWorkflow(ctx, "r1"); return err },
				"events":      func() error { _, err := c.TenantEvents(ctx, client.EventFilter{}); return err },
				"definitions": func() error { _, err := c.ListDefinitions(ctx); return err },
				"register":    func() error { _, err := c.RegisterDefinition(ctx, def("x", "noop")); return err },
				"poll": func() error {
					_, err := c.Poll(ctx, client.PollRequest{Types: []string{"ext"}, WorkerID: "w"})
					return err
				},
			}
			for name, call := range calls {
				err := call()
				e := apiError(t, err)
				if e.Status != tc.status {
					t.Errorf("%s: want %d, got %v", name, tc.status, err)
				}
				if tc.status == http.StatusBadRequest {
					is.Equal(e.Fields(), []string{"tenantId"}) // names the path parameter
				}
			}
		})
	}
}
