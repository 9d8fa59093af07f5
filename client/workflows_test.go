package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
)

func TestOrchestratorClient_ExecuteWorkflow(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("acme"))
	ctx := ctxFor(t)
	mustRegister(t, c, json.RawMessage(`{"name":"echo","tasks":[{"id":"t1","type":"noop","input":{"k":"${workflow.input.k}"}}]}`))

	t.Run("starts a registered definition by name and version", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "echo", Version: 1, Input: json.RawMessage(`{"k":7}`)})
		is.NoErr(err)                                                  // execute
		is.True(ex.ID != "")                                           // run id
		is.Equal(ex.TenantID, "acme")                                  // tenant
		is.Equal(ex.Workflow, "echo")                                  // workflow
		is.Equal(ex.Version, 1)                                        // version
		is.True(!ex.Replayed)                                          // a new run
		is.Equal(ex.Location, "/api/v1/tenants/acme/workflows/"+ex.ID) // location
		d := waitState(t, c, ex.ID, wire.RunCompleted)
		is.Equal(d.Progress.Total, 1)                         // one task
		is.Equal(d.Progress.Done, 1)                          // done
		is.Equal(d.Progress.Percent, 100.0)                   // percent
		is.Equal(d.Progress.States[wire.TaskCompleted], 1)    // per state
		is.Equal(d.Progress.States[wire.TaskFailed], 0)       // zero counts too
		is.Equal(len(d.Tasks), 1)                             // tasks listed
		is.Equal(d.Tasks[0].TaskID, "t1")                     // task id
		is.Equal(d.Tasks[0].Attempt, 1)                       // one attempt
		is.Equal(string(d.Tasks[0].Output), `{"k":7}`)        // reference resolved
		is.Equal(string(d.Output), `{"t1":{"k":7}}`)          // run output
		is.Equal(string(d.Input), `{"k":7}`)                  // run input
		is.True(!d.EndedAt.IsZero() && !d.StartedAt.IsZero()) // times
	})

	t.Run("starts an inline definition, registering it", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: def("inline", "noop")})
		is.NoErr(err)                   // execute
		is.Equal(ex.Workflow, "inline") // the definition's name
		is.Equal(ex.Version, 1)         // first version
		waitState(t, c, ex.ID, wire.RunCompleted)
		v, err := c.GetDefinitionVersion(ctx, "inline", 0)
		is.NoErr(err)          // registered
		is.Equal(v.Version, 1) // stored
	})

	t.Run("answers 404 for an unknown workflow or version", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "nope"})
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		is.True(client.IsNotFound(err)) // helper
		_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "echo", Version: 9})
		e := wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		is.True(strings.Contains(e.Detail, "no version 9")) // names the version
	})

	t.Run("refuses a request naming both or neither", func(t *testing.T) {
		t.Parallel()
		_, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "echo", Definition: def("x", "noop")})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "definition")
		_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "workflow")
		_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "echo", Version: -1})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "version")
	})

	t.Run("refuses an invalid inline definition naming every problem", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: json.RawMessage(`{"name":"bad","tasks":[
			{"id":"a","type":"noop","depends_on":["b"]},{"id":"b","type":"noop","depends_on":["a"]},
			{"id":"c","type":"noop","depends_on":["zz"]}]}`)})
		e := wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidDefinition)
		is.Equal(len(e.Errors), 2) // both problems
		var text []string
		for _, p := range e.Errors {
			text = append(text, p.Task+"|"+p.Field+"|"+p.Message)
		}
		joined := strings.Join(text, "\n")
		is.True(strings.Contains(joined, "c|depends_on|"))    // the unknown dependency, naming task and field
		is.True(strings.Contains(joined, "a -> b -> a"))      // the cycle spelled out
		is.True(strings.Contains(err.Error(), "a -> b -> a")) // in the error text too
	})
}

func TestOrchestratorClient_Control(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("ops"))
	ctx := ctxFor(t)
	mustRegister(t, c, def("held", typeHold))
	mustRegister(t, c, def("quick", "noop"))

	t.Run("pause, resume, cancel and retry move a run and refuse what its state forbids", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		id := mustExecute(t, c, "held").ID
		waitTask(t, c, id, "t1", wire.TaskRunning)

		run, err := c.PauseWorkflow(ctx, id)
		is.NoErr(err)                       // pause
		is.Equal(run.State, wire.RunPaused) // paused
		_, err = c.PauseWorkflow(ctx, id)
		e := wantProblem(t, err, http.StatusConflict, wire.CodeInvalidTransition)
		is.Equal(e.State, "paused") // the current state
		is.True(client.IsConflict(err))

		run, err = c.ResumeWorkflow(ctx, id)
		is.NoErr(err)                        // resume
		is.Equal(run.State, wire.RunRunning) // running
		_, err = c.ResumeWorkflow(ctx, id)
		e = wantProblem(t, err, http.StatusConflict, wire.CodeInvalidTransition)
		is.Equal(e.State, "running") // the current state

		_, err = c.RetryWorkflow(ctx, id, "")
		e = wantProblem(t, err, http.StatusConflict, wire.CodeInvalidTransition)
		is.Equal(e.State, "running") // a running run is not retried

		run, err = c.CancelWorkflow(ctx, id)
		is.NoErr(err)                          // cancel
		is.Equal(run.State, wire.RunCancelled) // cancelled
		waitTask(t, c, id, "t1", wire.TaskCancelled)
		_, err = c.CancelWorkflow(ctx, id)
		e = wantProblem(t, err, http.StatusConflict, wire.CodeInvalidTransition)
		is.Equal(e.State, "cancelled") // the current state

		run, err = c.RetryWorkflow(ctx, id, "")
		is.NoErr(err)                        // retry the cancelled run
		is.Equal(run.State, wire.RunRunning) // running again
		d := waitTask(t, c, id, "t1", wire.TaskRunning)
		is.Equal(d.Tasks[0].Attempt, 2) // attempt numbers carry on
		_, err = c.CancelWorkflow(ctx, id)
		is.NoErr(err) // cancel again
	})

	t.Run("a completed run refuses every verb with its state", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		id := mustExecute(t, c, "quick").ID
		waitState(t, c, id, wire.RunCompleted)
		for name, verb := range map[string]func(context.Context, string) (*wire.Run, error){
			"pause": c.PauseWorkflow, "resume": c.ResumeWorkflow, "cancel": c.CancelWorkflow,
			"retry": func(ctx context.Context, id string) (*wire.Run, error) { return c.RetryWorkflow(ctx, id, "") },
		} {
			_, err := verb(ctx, id)
			e := wantProblem(t, err, http.StatusConflict, wire.CodeInvalidTransition)
			is.Equal(e.State, "completed") // names the state
			_ = name
		}
		_, err := c.RetryWorkflow(ctx, id, "t1")
		wantProblem(t, err, http.StatusConflict, wire.CodeInvalidTransition) // a completed task is not retried
	})

	t.Run("unknown runs and tasks are 404", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		const ghost = "01890000-0000-7000-8000-000000000000"
		_, err := c.GetWorkflow(ctx, ghost)
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		for _, verb := range []func(context.Context, string) (*wire.Run, error){c.PauseWorkflow, c.ResumeWorkflow, c.CancelWorkflow} {
			_, err := verb(ctx, ghost)
			is.True(client.IsNotFound(err)) // unknown run
		}
		_, err = c.RetryWorkflow(ctx, ghost, "")
		is.True(client.IsNotFound(err)) // unknown run
		_, err = c.RetryWorkflow(ctx, ghost, "t1")
		is.True(client.IsNotFound(err)) // unknown run, with a task
		_, err = c.GetWorkflowMetrics(ctx, ghost)
		is.True(client.IsNotFound(err)) // metrics
		_, err = c.WorkflowEvents(ctx, ghost, client.EventsQuery{})
		is.True(client.IsNotFound(err)) // events

		id := mustExecute(t, c, "held").ID
		waitTask(t, c, id, "t1", wire.TaskRunning)
		_, err = c.CancelWorkflow(ctx, id)
		is.NoErr(err) // cancel
		_, err = c.RetryWorkflow(ctx, id, "nope")
		e := wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		is.True(strings.Contains(e.Detail, `no task "nope"`)) // names the task
	})
}

// TestOrchestratorClient_RetryTask retries one failed task of a run whose
// other tasks completed: only that task runs again.
func TestOrchestratorClient_RetryTask(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("retry"))
	ctx := ctxFor(t)
	ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: json.RawMessage(`{"name":"abc","tasks":[
		{"id":"a","type":"noop","input":{"v":1}},
		{"id":"b","type":"flaky","depends_on":["a"],"input":"${a.output.v}","retry":{"max_attempts":1}},
		{"id":"c","type":"noop"}]}`)})
	is.NoErr(err) // execute
	d := waitState(t, c, ex.ID, wire.RunFailed)
	is.Equal(d.Task("a").State, wire.TaskCompleted)   // a completed
	is.Equal(d.Task("c").State, wire.TaskCompleted)   // c completed
	is.Equal(d.Task("b").State, wire.TaskFailed)      // b failed its one attempt
	is.Equal(d.Task("b").Error.Code, "flaky")         // with its code
	is.Equal(d.Error.Code, "task_failed")             // so did the run
	is.True(strings.Contains(d.Error.Message, `"b"`)) // naming the task

	run, err := c.RetryWorkflow(ctx, ex.ID, "b")
	is.NoErr(err)                        // retry b
	is.Equal(run.State, wire.RunRunning) // the run runs again
	d = waitState(t, c, ex.ID, wire.RunCompleted)
	is.Equal(d.Task("a").Attempt, 1)                // a did not run again
	is.Equal(d.Task("c").Attempt, 1)                // c did not run again
	is.Equal(d.Task("b").Attempt, 2)                // b ran a second attempt
	is.Equal(d.Task("b").State, wire.TaskCompleted) // and completed
	is.Equal(string(d.Task("b").Output), "1")       // with its input
	is.True(d.Error == nil)                         // the run's error is cleared

	page, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{Type: wire.EventRunRetried})
	is.NoErr(err)                 // events
	is.Equal(len(page.Events), 1) // one retry
	var data wire.EventData
	is.NoErr(json.Unmarshal(page.Events[0].Data, &data)) // retry data
	is.Equal(data.Tasks, []string{"b"})                  // names only b
	page, err = c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{Type: wire.EventTaskStarted, TaskID: "a"})
	is.NoErr(err)                 // events
	is.Equal(len(page.Events), 1) // a started once
}

func TestOrchestratorClient_RetryWorkflow(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t)
	ctx := ctxFor(t)
	ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: json.RawMessage(`{"name":"doomed","tasks":[
		{"id":"a","type":"boom"},{"id":"b","type":"noop","depends_on":["a"]}]}`)})
	is.NoErr(err) // execute
	d := waitState(t, c, ex.ID, wire.RunFailed)
	is.Equal(d.Task("b").State, wire.TaskSkipped) // downstream skipped
	_, err = c.RetryWorkflow(ctx, ex.ID, "")
	is.NoErr(err) // retry the whole run
	d = waitRun(t, c, ex.ID, "failed again", func(d *client.RunDetails) bool {
		return d.State == wire.RunFailed && d.Task("a").Attempt == 2
	})
	is.Equal(d.Task("a").State, wire.TaskFailed)  // failed again
	is.Equal(d.Task("b").State, wire.TaskSkipped) // skipped again
}

// TestOrchestratorClient_Panic: a handler that panics fails its task with
// code "panic", and the server goes on serving.
func TestOrchestratorClient_Panic(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t)
	ctx := ctxFor(t)
	ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: def("falls", typePanic)})
	is.NoErr(err) // execute
	d := waitState(t, c, ex.ID, wire.RunFailed)
	is.Equal(d.Tasks[0].State, wire.TaskFailed) // the task failed
	is.Equal(d.Tasks[0].Error.Code, "panic")    // with code panic
	is.True(strings.Contains(d.Tasks[0].Error.Message, "the handler fell over"))
	page, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{Type: wire.EventTaskFailed})
	is.NoErr(err) // events
	is.Equal(len(page.Events), 1)
	is.True(strings.Contains(string(page.Events[0].Data), `"reason":"panic"`)) // reason recorded

	h, err := c.Health(ctx)
	is.NoErr(err)            // the server still answers
	is.Equal(h.Status, "ok") // healthy
	ex, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: def("fine", "noop")})
	is.NoErr(err) // and still runs workflows
	waitState(t, c, ex.ID, wire.RunCompleted)
}

// TestOrchestratorClient_Metrics checks a diamond's timings: a -> b, a -> c,
// b and c -> d, with c a 150ms durable timer, so c is on the critical path.
func TestOrchestratorClient_Metrics(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("metrics"))
	ctx := ctxFor(t)
	ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: json.RawMessage(`{"name":"diamond","tasks":[
		{"id":"a","type":"noop"},
		{"id":"b","type":"noop","depends_on":["a"]},
		{"id":"c","type":"sleep","depends_on":["a"],"config":{"duration":"150ms"}},
		{"id":"d","type":"noop","depends_on":["b","c"]}]}`)})
	is.NoErr(err) // execute

	running, err := c.GetWorkflowMetrics(ctx, ex.ID)
	is.NoErr(err)                  // metrics of a run under way
	is.Equal(running.RunID, ex.ID) // names the run
	is.Equal(len(running.Tasks), 4)

	waitState(t, c, ex.ID, wire.RunCompleted)
	m, err := c.GetWorkflowMetrics(ctx, ex.ID)
	is.NoErr(err)                                     // metrics
	is.Equal(m.State, wire.RunCompleted)              // state
	is.Equal(m.Attempts, 4)                           // one attempt per task
	is.Equal(m.CriticalPath, []string{"a", "c", "d"}) // through the slow branch
	is.True(m.CriticalPathMS >= 150)                  // at least the timer
	is.True(m.DurationMS >= m.CriticalPathMS)         // the run took at least its critical path
	byID := map[string]wire.TaskMetrics{}
	for _, tm := range m.Tasks {
		byID[tm.TaskID] = tm
		is.Equal(tm.State, wire.TaskCompleted) // every task completed
		is.Equal(tm.Attempts, 1)               // once
		is.True(!tm.StartedAt.IsZero() && !tm.EndedAt.IsZero())
	}
	is.True(byID["c"].DurationMS >= 150)                    // the timer's duration
	is.True(byID["b"].DurationMS < byID["c"].DurationMS)    // b was quicker
	is.True(!byID["d"].StartedAt.Before(byID["c"].EndedAt)) // d waited for c
}

// TestOrchestratorClient_RetryTaskOfActiveRun retries a failed task while
// the run still runs another task, paused: only that task and what depends
// on it go back, and the run completes once resumed.
func TestOrchestratorClient_RetryTaskOfActiveRun(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("active"))
	ctx := ctxFor(t)
	ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: json.RawMessage(`{"name":"abdc","tasks":[
		{"id":"a","type":"noop"},
		{"id":"b","type":"flaky","depends_on":["a"]},
		{"id":"d","type":"noop","depends_on":["b"]},
		{"id":"c","type":"hold"}]}`)})
	is.NoErr(err) // execute
	d := waitTask(t, c, ex.ID, "d", wire.TaskSkipped)
	is.Equal(d.State, wire.RunRunning)           // c still holds the run
	is.Equal(d.Task("b").State, wire.TaskFailed) // b failed
	_, err = c.PauseWorkflow(ctx, ex.ID)
	is.NoErr(err) // pause
	run, err := c.RetryWorkflow(ctx, ex.ID, "b")
	is.NoErr(err)                       // retry b of the paused run
	is.Equal(run.State, wire.RunPaused) // the run stays paused
	d, err = c.GetWorkflow(ctx, ex.ID)
	is.NoErr(err)                                 // get
	is.Equal(d.Task("b").State, wire.TaskReady)   // b waits to run again
	is.Equal(d.Task("d").State, wire.TaskPending) // d waits for b
	is.Equal(d.Task("a").State, wire.TaskCompleted)
	_, err = c.ResumeWorkflow(ctx, ex.ID)
	is.NoErr(err) // resume
	waitTask(t, c, ex.ID, "d", wire.TaskCompleted)
	env.Release()
	d = waitState(t, c, ex.ID, wire.RunCompleted)
	is.Equal(d.Task("a").Attempt, 1) // a ran once
	is.Equal(d.Task("b").Attempt, 2) // b twice
	is.Equal(d.Task("c").Attempt, 1) // c once
	is.Equal(d.Task("d").Attempt, 1) // d once, after the retry
}
