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

// TestOrchestratorClient_ShortAPI covers the /v1 routes of the tenant
// "default".
func TestOrchestratorClient_ShortAPI(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	// The short API acts on "default" whatever tenant the client names.
	c := env.client(t, client.WithTenant("elsewhere"))
	dflt := env.client(t)
	ctx := ctxFor(t)

	t.Run("registers a workflow and reads its versions", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		v, err := c.RegisterWorkflow(ctx, def("short", "noop"))
		is.NoErr(err)             // register
		is.True(v.Created)        // 201
		is.Equal(v.Name, "short") // name
		is.Equal(v.Version, 1)    // version
		v, err = c.RegisterWorkflow(ctx, def("short", "noop"))
		is.NoErr(err)          // unchanged
		is.True(!v.Created)    // 200
		is.Equal(v.Version, 1) // same version
		_, err = c.RegisterWorkflow(ctx, def("short", typeHold))
		is.NoErr(err) // version 2

		got, err := c.GetWorkflowDefinition(ctx, "short", 0)
		is.NoErr(err)                                               // latest
		is.Equal(got.Version, 2)                                    // version 2
		is.True(strings.Contains(string(got.Definition), typeHold)) // its JSON
		latestHash := got.Hash
		got, err = c.GetWorkflowDefinition(ctx, "short", 1)
		is.NoErr(err)            // version 1
		is.Equal(got.Version, 1) // it
		_, err = c.GetWorkflowDefinition(ctx, "short", 7)
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.GetWorkflowDefinition(ctx, "", 0)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "name")
		_, err = c.GetWorkflowDefinition(ctx, "short", -2)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "version")

		tv, err := dflt.GetDefinitionVersion(ctx, "short", 2)
		is.NoErr(err)                 // the tenant API of "default" sees it
		is.Equal(tv.Hash, latestHash) // the same version
		_, err = c.GetDefinitionVersion(ctx, "short", 0)
		is.True(client.IsNotFound(err)) // the tenant "elsewhere" does not

		_, err = c.RegisterWorkflow(ctx, json.RawMessage(`{"name":"x","tasks":[{"id":"a","type":"noop","depends_on":["nope"]}]}`))
		e := wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidDefinition)
		is.Equal(e.Errors[0].Task, "a")           // names the task
		is.Equal(e.Errors[0].Field, "depends_on") // and the field
		_, err = c.RegisterWorkflow(ctx, json.RawMessage(`nope`))
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidJSON)
	})

	t.Run("runs a workflow and reads the run and its events", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := c.RegisterWorkflow(ctx, json.RawMessage(`{"name":"greet","tasks":[{"id":"say","type":"noop","input":"${workflow.input.msg}"}]}`))
		is.NoErr(err) // register
		run, err := c.Run(ctx, client.ExecuteRequest{Workflow: "greet", Input: json.RawMessage(`{"msg":"hi"}`)})
		is.NoErr(err)                              // run
		is.Equal(run.TenantID, "default")          // on the default tenant
		is.Equal(run.Workflow, "greet")            // workflow
		is.Equal(run.Location, "/v1/runs/"+run.ID) // on the short API
		waitFor(t, "the run completed", func() (bool, error) {
			d, err := c.GetRun(ctx, run.ID)
			return err == nil && d.State == wire.RunCompleted, err
		})
		d, err := c.GetRun(ctx, run.ID)
		is.NoErr(err)                                  // get
		is.Equal(string(d.Task("say").Output), `"hi"`) // the task's output
		is.Equal(d.Progress.Percent, 100.0)            // done
		page, err := c.RunEvents(ctx, run.ID, client.EventsQuery{Limit: 2, Verify: true})
		is.NoErr(err)                      // events
		is.Equal(len(page.Events), 2)      // a page
		is.Equal(page.NextAfter, int64(2)) // more follow
		is.True(*page.Verified)            // the chain verifies
		page, err = c.RunEvents(ctx, run.ID, client.EventsQuery{After: 2, Type: wire.EventTaskCompleted, TaskID: "say"})
		is.NoErr(err)                 // filtered
		is.Equal(len(page.Events), 1) // the completion
		_, err = c.RunEvents(ctx, run.ID, client.EventsQuery{Limit: 5000})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "limit")

		_, err = c.Run(ctx, client.ExecuteRequest{Workflow: "nope"})
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.Run(ctx, client.ExecuteRequest{Workflow: "greet", Version: 4})
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.Run(ctx, client.ExecuteRequest{})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "workflow")
		_, err = c.GetRun(ctx, "nope")
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.Do(ctx, http.MethodGet, "/v1/runs/"+run.ID+"?verbose=1", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "verbose")
		_, err = c.Do(ctx, http.MethodGet, "/v1/workflows?name=greet&latest=1", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "latest")
		_, err = c.RunEvents(ctx, run.ID, client.EventsQuery{Type: "task.exploded"})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "type")
		_, err = c.GetRun(ctx, "nope")
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.RunEvents(ctx, "nope", client.EventsQuery{})
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
	})

	t.Run("runs an inline definition once per idempotency key", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		alice := env.client(t, client.WithActor("alice"))
		req := client.ExecuteRequest{Definition: def("short-inline", "noop"), IdempotencyKey: "short-key"}
		first, err := alice.Run(ctx, req)
		is.NoErr(err)                            // run
		is.Equal(first.Workflow, "short-inline") // the inline definition
		is.True(!first.Replayed)                 // new
		again, err := alice.Run(ctx, req)
		is.NoErr(err)                // repeat
		is.True(again.Replayed)      // answered from the key
		is.Equal(again.ID, first.ID) // the same run
		viaTenant, err := dflt.ExecuteWorkflow(ctx, req)
		is.NoErr(err)                    // the tenant API of "default" shares the keys
		is.Equal(viaTenant.ID, first.ID) // the same run
		req.Input = json.RawMessage(`{"other":true}`)
		_, err = alice.Run(ctx, req)
		wantProblem(t, err, http.StatusUnprocessableEntity, wire.CodeIdempotencyMismatch)
		page, err := dflt.WorkflowEvents(ctx, first.ID, client.EventsQuery{Type: wire.EventRunCreated})
		is.NoErr(err)                              // events
		is.Equal(page.Events[0].OnBehalf, "alice") // X-Actor recorded beside the actor on the short API too
	})

	t.Run("controls a run", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := c.RegisterWorkflow(ctx, def("shortheld", typeHold))
		is.NoErr(err) // register
		run, err := c.Run(ctx, client.ExecuteRequest{Workflow: "shortheld"})
		is.NoErr(err) // run
		waitTask(t, dflt, run.ID, "t1", wire.TaskRunning)
		r, err := c.PauseRun(ctx, run.ID)
		is.NoErr(err)                     // pause
		is.Equal(r.State, wire.RunPaused) // paused
		r, err = c.ResumeRun(ctx, run.ID)
		is.NoErr(err)                      // resume
		is.Equal(r.State, wire.RunRunning) // running
		_, err = c.ResumeRun(ctx, run.ID)
		e := wantProblem(t, err, http.StatusConflict, wire.CodeInvalidTransition)
		is.Equal(e.State, "running") // the current state
		r, err = c.CancelRun(ctx, run.ID)
		is.NoErr(err)                        // cancel
		is.Equal(r.State, wire.RunCancelled) // cancelled
		waitTask(t, dflt, run.ID, "t1", wire.TaskCancelled)
		r, err = c.RetryRun(ctx, run.ID, "t1")
		is.NoErr(err)                      // retry the task
		is.Equal(r.State, wire.RunRunning) // running again
		waitTask(t, dflt, run.ID, "t1", wire.TaskRunning)
		_, err = c.CancelRun(ctx, run.ID)
		is.NoErr(err) // cancel
		waitTask(t, dflt, run.ID, "t1", wire.TaskCancelled)
		_, err = c.RetryRun(ctx, run.ID, "")
		is.NoErr(err) // retry the run
		for _, verb := range []string{"pause", "resume", "cancel", "retry"} {
			_, err := c.Do(ctx, http.MethodPost, "/v1/runs/nope/"+verb, nil, nil)
			wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		}
		_, err = c.PauseRun(ctx, "nope")
		is.True(client.IsNotFound(err)) // typed too
	})
}

func TestOrchestratorClient_HealthAndMetrics(t *testing.T) {
	t.Parallel()

	t.Run("health answers ok and metrics are Prometheus text", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		env := newEnv(t, envOptions{})
		c := env.client(t)
		ctx := ctxFor(t)
		h, err := c.Health(ctx)
		is.NoErr(err)              // health
		is.Equal(h.Status, "ok")   // ok
		is.Equal(h.Database, "ok") // database ok
		ex := mustExecute(t, c, mustRegister(t, c, def("m", "noop")).Name)
		waitState(t, c, ex.ID, wire.RunCompleted)
		waitFor(t, "the run counted", func() (bool, error) {
			text, err := c.Metrics(ctx)
			return strings.Contains(text, `orchestrator_runs_total{outcome="completed"} 1`), err
		})
		text, err := c.Metrics(ctx)
		is.NoErr(err)                                                         // metrics
		is.True(strings.Contains(text, "orchestrator_task_duration_seconds")) // engine histograms
		is.True(strings.Contains(text, "go_goroutines"))                      // process metrics
	})

	t.Run("health answers 503 when the database is gone", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		env := newEnv(t, envOptions{})
		c := env.client(t)
		is.NoErr(env.DB.Close()) // the database goes away
		_, err := c.Health(ctxFor(t))
		e := apiError(t, err)
		is.Equal(e.Status, http.StatusServiceUnavailable)  // 503
		is.True(strings.Contains(e.Detail, "unreachable")) // the body says why
	})
}

// TestOrchestratorClient_Refusals covers the answers every route shares:
// malformed bodies, unknown fields, wrong types, wrong media types, bodies
// too large, unknown routes and methods.
func TestOrchestratorClient_Refusals(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{MaxBodyBytes: 1024})
	c := env.client(t, client.WithTenant("strict"))
	ctx := ctxFor(t)
	mustRegister(t, c, def("small", "noop"))
	big := json.RawMessage(`{"name":"big","description":"` + strings.Repeat("x", 2048) + `","tasks":[{"id":"a","type":"noop"}]}`)

	t.Run("bad JSON is 400 invalid_json", func(t *testing.T) {
		t.Parallel()
		for path, body := range map[string]string{
			"/api/v1/tenants/strict/workflows":         `{"workflow":`,
			"/v1/run":                                  `{"workflow":"small"`,
			"/v1/tasks/poll":                           `{"types":["ext"],`,
			"/api/v1/tenants/strict/workflows/x/pause": `{"task_id"`,
			"/api/v1/tenants/strict/definitions":       `{"name":"x",}`,
		} {
			_, err := c.Do(ctx, http.MethodPost, path, nil, []byte(body))
			wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidJSON)
		}
		_, err := c.Do(ctx, http.MethodPost, "/api/v1/tenants/strict/workflows", nil, []byte(`["small"]`))
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidJSON)
		_, err = c.Do(ctx, http.MethodPost, "/api/v1/tenants/strict/workflows", nil, []byte(`{"workflow":"small"} {}`))
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidJSON)
	})

	t.Run("unknown, repeated and mistyped fields are 400 naming the field", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ path, body, field string }{
			{"/api/v1/tenants/strict/workflows", `{"workflow":"small","bogus":1}`, "bogus"},
			{"/api/v1/tenants/strict/workflows", `{"Workflow":"small"}`, "Workflow"},
			{"/api/v1/tenants/strict/workflows", `{"workflow":"small","workflow":"small"}`, "workflow"},
			{"/api/v1/tenants/strict/workflows", `{"workflow":1}`, "workflow"},
			{"/api/v1/tenants/strict/workflows", `{"workflow":"small","version":"1"}`, "version"},
			{"/v1/run", `{"workflow":"small","extra":true}`, "extra"},
			{"/v1/tasks/poll", `{"types":"ext","worker_id":"w"}`, "types"},
			{"/api/v1/tenants/strict/workflows/x/retry", `{"task_id":7}`, "task_id"},
			{"/api/v1/tenants/strict/workflows/x/pause", `{"task_id":"a"}`, "task_id"},
		} {
			_, err := c.Do(ctx, http.MethodPost, tc.path, nil, []byte(tc.body))
			wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, tc.field)
		}
	})

	t.Run("a body over the limit is 413", func(t *testing.T) {
		t.Parallel()
		_, err := c.RegisterDefinition(ctx, big)
		wantProblem(t, err, http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge)
		_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: big})
		wantProblem(t, err, http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge)
		_, err = c.RegisterWorkflow(ctx, big)
		wantProblem(t, err, http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge)
		_, err = c.ValidateDAG(ctx, big)
		wantProblem(t, err, http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge)
	})

	t.Run("a body that is not JSON is 415", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		for _, ct := range []string{"text/plain", "application/xml", "multipart/form-data; boundary=x", "bogus"} {
			_, err := c.Do(ctx, http.MethodPost, "/api/v1/tenants/strict/workflows", http.Header{"Content-Type": {ct}}, []byte(`{"workflow":"small"}`))
			wantProblem(t, err, http.StatusUnsupportedMediaType, wire.CodeUnsupportedMedia)
		}
		res, err := c.Do(ctx, http.MethodPost, "/api/v1/tenants/strict/workflows",
			http.Header{"Content-Type": {"application/merge-patch+json"}}, []byte(`{"workflow":"small"}`))
		is.NoErr(err)                            // any +json type is JSON
		is.Equal(res.Status, http.StatusCreated) // started
	})

	t.Run("unknown routes are 404 and wrong methods 405", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := c.Do(ctx, http.MethodGet, "/v2/nothing", nil, nil)
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.Do(ctx, http.MethodDelete, "/api/v1/tenants/strict/workflows", nil, nil)
		e := wantProblem(t, err, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)
		is.True(strings.Contains(e.Detail, "DELETE")) // names the method
	})

	t.Run("a bad X-Actor is 400", func(t *testing.T) {
		t.Parallel()
		long := env.client(t, client.WithTenant("strict"), client.WithActor(strings.Repeat("a", 129)))
		_, err := long.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "small"})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "X-Actor")
		_, err = long.PauseWorkflow(ctx, "x")
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "X-Actor")
	})
}
