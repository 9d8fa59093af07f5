package client_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
	"github.com/orchestrator/orchestrator/engine"
)

// TestOrchestratorClient_Workers drives the external worker protocol on the
// short routes (tenant "default") and on a tenant's routes.
func TestOrchestratorClient_Workers(t *testing.T) {
	t.Parallel()
	for _, tenant := range []string{"default", "acme"} {
		t.Run("on the routes of tenant "+tenant, func(t *testing.T) {
			t.Parallel()
			testWorkers(t, tenant)
		})
	}
}

func testWorkers(t *testing.T, tenant string) {
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant(tenant))
	ctx := ctxFor(t)
	mustRegister(t, c, json.RawMessage(`{"name":"extwf","tasks":[
		{"id":"one","type":"ext","input":{"x":"${workflow.input.x}"}},
		{"id":"two","type":"ext","depends_on":["one"],"retry":{"max_attempts":3,"initial_interval":"10ms"}}]}`))
	// start starts a run of extwf with the input its references need.
	start := func(t *testing.T) *client.Execution {
		t.Helper()
		ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "extwf", Input: json.RawMessage(`{"x":1}`)})
		if err != nil {
			t.Fatalf("execute: %v", err)
		}
		return ex
	}
	poll := client.PollRequest{Types: []string{typeExt}, WorkerID: "w1", Lease: 30 * time.Second, Wait: 5 * time.Second}

	t.Run("poll answers nil when no task is ready", func(t *testing.T) {
		is := is.New(t)
		l, err := c.Poll(ctx, client.PollRequest{Types: []string{typeExt}, WorkerID: "w1"})
		is.NoErr(err)     // 204
		is.True(l == nil) // nothing to do
	})

	t.Run("poll refuses bad requests naming the field", func(t *testing.T) {
		_, err := c.Poll(ctx, client.PollRequest{WorkerID: "w1"})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "types")
		_, err = c.Poll(ctx, client.PollRequest{Types: []string{"ext"}})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "worker_id")
		_, err = c.Poll(ctx, client.PollRequest{Types: []string{"a b"}, WorkerID: "w1"})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "types[0]")
		_, err = c.Poll(ctx, client.PollRequest{Types: []string{"ext"}, WorkerID: "w1", Lease: -time.Second})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "lease")
		_, err = c.Poll(ctx, client.PollRequest{Types: []string{"ext"}, WorkerID: "w1", Wait: 2 * time.Minute})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "wait")
	})

	ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "extwf", Input: json.RawMessage(`{"x":5}`)})
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	var lease *wire.Lease

	t.Run("poll leases the ready task with its resolved input", func(t *testing.T) {
		is := is.New(t)
		l, err := c.Poll(ctx, poll)
		is.NoErr(err)                                                // poll
		is.True(l != nil)                                            // a task
		is.Equal(l.RunID, ex.ID)                                     // of the run
		is.Equal(l.TenantID, tenant)                                 // of the tenant
		is.Equal(l.TaskID, "one")                                    // the ready task
		is.Equal(l.Type, typeExt)                                    // its type
		is.Equal(l.Attempt, 1)                                       // first attempt
		is.Equal(l.ID, engine.LeaseID(ex.ID, "one", 1))              // names the attempt
		is.Equal(string(l.Input), `{"x":5}`)                         // resolved input
		is.True(l.Token != "")                                       // a token
		is.True(l.ExpiresAt.After(time.Now().Add(20 * time.Second))) // about 30s from now
		lease = l
		d, err := c.GetWorkflow(ctx, ex.ID)
		is.NoErr(err)                                   // get
		is.Equal(d.Task("one").State, wire.TaskRunning) // running
		is.Equal(d.Task("one").WorkerID, "w1")          // by the worker
	})
	if lease == nil {
		t.FailNow()
	}

	t.Run("heartbeat extends the lease", func(t *testing.T) {
		is := is.New(t)
		st, err := c.Heartbeat(ctx, lease.ID, lease.Token, time.Minute)
		is.NoErr(err)                                     // heartbeat
		is.Equal(st.ID, lease.ID)                         // names the attempt
		is.Equal(st.Status, "extended")                   // extended
		is.True(st.LeaseExpiresAt.After(lease.ExpiresAt)) // later than before
	})

	t.Run("a wrong token is refused with lease_lost and the task's state", func(t *testing.T) {
		is := is.New(t)
		_, err := c.Heartbeat(ctx, lease.ID, "not-the-token", 0)
		e := wantProblem(t, err, http.StatusConflict, wire.CodeLeaseLost)
		is.Equal(e.State, "running")    // the task is still running
		is.True(client.IsConflict(err)) // a conflict
		is.True(client.IsLeaseLost(err))
		_, err = c.Complete(ctx, lease.ID, "not-the-token", nil)
		wantProblem(t, err, http.StatusConflict, wire.CodeLeaseLost)
	})

	t.Run("complete records the output once, and again answers the same", func(t *testing.T) {
		is := is.New(t)
		st, err := c.Complete(ctx, lease.ID, lease.Token, json.RawMessage(`{"y":1}`))
		is.NoErr(err)                    // complete
		is.Equal(st.Status, "completed") // completed
		st, err = c.Complete(ctx, lease.ID, lease.Token, json.RawMessage(`{"y":1}`))
		is.NoErr(err)                    // repeated
		is.Equal(st.Status, "completed") // the same answer
		d := waitTask(t, c, ex.ID, "one", wire.TaskCompleted)
		is.Equal(string(d.Task("one").Output), `{"y":1}`) // output recorded
		page, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{TaskID: "one", Type: wire.EventTaskCompleted})
		is.NoErr(err)                           // events
		is.Equal(len(page.Events), 1)           // recorded once
		is.Equal(page.Events[0].Actor, "local") // by the caller (the local admin: no key)
		is.Equal(page.Events[0].OnBehalf, "w1") // for the worker
		_, err = c.Heartbeat(ctx, lease.ID, lease.Token, 0)
		e := wantProblem(t, err, http.StatusConflict, wire.CodeLeaseLost)
		is.Equal(e.State, "completed") // the task is done
	})

	t.Run("a retryable failure retries, a permanent one fails the run", func(t *testing.T) {
		is := is.New(t)
		l, err := c.Poll(ctx, poll)
		is.NoErr(err)             // poll
		is.Equal(l.TaskID, "two") // the next task
		st, err := c.Fail(ctx, l.ID, l.Token, wire.TaskError{Code: "oops", Message: "try again"}, true)
		is.NoErr(err)                 // fail
		is.Equal(st.Status, "failed") // recorded
		l2, err := c.Poll(ctx, poll)
		is.NoErr(err)              // poll after the backoff
		is.Equal(l2.TaskID, "two") // the same task
		is.Equal(l2.Attempt, 2)    // its second attempt
		_, err = c.Fail(ctx, l2.ID, l2.Token, wire.TaskError{Code: "fatal", Message: "give up"}, false)
		is.NoErr(err) // fail for good
		d := waitState(t, c, ex.ID, wire.RunFailed)
		is.Equal(d.Task("two").State, wire.TaskFailed) // failed with attempts left
		is.Equal(d.Task("two").Error.Code, "fatal")    // the worker's code
		_, err = c.Fail(ctx, l2.ID, l2.Token, wire.TaskError{Code: "fatal", Message: "give up"}, false)
		is.NoErr(err) // a repeated failure answers again
	})

	t.Run("fail without a code is refused", func(t *testing.T) {
		_, err := c.Fail(ctx, lease.ID, lease.Token, wire.TaskError{Message: "no code"}, true)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "error")
		_, err = c.Heartbeat(ctx, lease.ID, "", 0)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "lease_token")
	})

	t.Run("unknown tasks are 404", func(t *testing.T) {
		is := is.New(t)
		_, err := c.Heartbeat(ctx, "nope", "token", 0)
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.Complete(ctx, engine.LeaseID("01890000-0000-7000-8000-000000000000", "one", 1), "token", nil)
		is.True(client.IsNotFound(err)) // unknown run
		_, err = c.Fail(ctx, engine.LeaseID(ex.ID, "zzz", 1), "token", wire.TaskError{Code: "x"}, true)
		is.True(client.IsNotFound(err)) // unknown task of a known run
	})

	t.Run("a cancelled run's lease is lost", func(t *testing.T) {
		is := is.New(t)
		run := start(t)
		l, err := c.Poll(ctx, poll)
		is.NoErr(err)             // poll
		is.Equal(l.RunID, run.ID) // the new run's task
		_, err = c.CancelWorkflow(ctx, run.ID)
		is.NoErr(err) // cancel
		_, err = c.Complete(ctx, l.ID, l.Token, nil)
		e := wantProblem(t, err, http.StatusConflict, wire.CodeLeaseLost)
		is.Equal(e.State, "cancelled") // the task was cancelled
	})

	t.Run("a long poll answers as soon as a task is ready", func(t *testing.T) {
		is := is.New(t)
		type result struct {
			l   *wire.Lease
			err error
		}
		got := make(chan result, 1)
		begun := time.Now()
		go func() {
			l, err := c.Poll(ctx, client.PollRequest{Types: []string{typeExt}, WorkerID: "w2", Wait: 20 * time.Second})
			got <- result{l, err}
		}()
		run := start(t)
		r := <-got
		is.NoErr(r.err)                                   // poll
		is.Equal(r.l.RunID, run.ID)                       // the new task
		is.True(time.Since(begun) < 15*time.Second)       // before the wait ran out
		_, err := c.Complete(ctx, r.l.ID, r.l.Token, nil) // let the run go on
		is.NoErr(err)                                     // complete
	})

	t.Run("a long poll outlives the client's timeout", func(t *testing.T) {
		is := is.New(t)
		short := env.client(t, client.WithTenant(tenant), client.WithTimeout(100*time.Millisecond))
		begun := time.Now()
		l, err := short.Poll(ctx, client.PollRequest{Types: []string{"idle"}, WorkerID: "w3", Wait: 400 * time.Millisecond})
		is.NoErr(err)                                      // not cut at 100ms
		is.True(l == nil)                                  // nothing came
		is.True(time.Since(begun) >= 350*time.Millisecond) // it waited
	})

	t.Run("unknown worker routes are 404", func(t *testing.T) {
		base := "/v1/tasks/"
		if tenant != "default" {
			base = "/api/v1/tenants/" + tenant + "/tasks/"
		}
		_, err := c.Do(ctx, http.MethodPost, base+"peek", nil, []byte(`{}`))
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.Do(ctx, http.MethodPost, base+lease.ID+"/explode", nil, []byte(`{}`))
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
	})
}

// TestOrchestratorClient_WorkerLeases: pause, max_parallel and lease expiry
// apply to external tasks as to in-process ones.
func TestOrchestratorClient_WorkerLeases(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("leases"))
	ctx := ctxFor(t)
	poll := client.PollRequest{Types: []string{typeExt}, WorkerID: "w1"}

	t.Run("max_parallel and pause hold tasks back from workers", func(t *testing.T) {
		is := is.New(t)
		mustRegister(t, c, json.RawMessage(`{"name":"one-at-a-time","max_parallel":1,"tasks":[{"id":"a","type":"ext"},{"id":"b","type":"ext"}]}`))
		ex := mustExecute(t, c, "one-at-a-time")
		l1, err := c.Poll(ctx, poll)
		is.NoErr(err)      // poll
		is.True(l1 != nil) // the first task
		l, err := c.Poll(ctx, poll)
		is.NoErr(err)     // poll
		is.True(l == nil) // max_parallel 1 holds the second back
		_, err = c.PauseWorkflow(ctx, ex.ID)
		is.NoErr(err) // pause
		_, err = c.Complete(ctx, l1.ID, l1.Token, nil)
		is.NoErr(err) // a running attempt finishes while paused
		l, err = c.Poll(ctx, poll)
		is.NoErr(err)     // poll
		is.True(l == nil) // a paused run starts nothing
		_, err = c.ResumeWorkflow(ctx, ex.ID)
		is.NoErr(err) // resume
		l2, err := c.Poll(ctx, poll)
		is.NoErr(err)                   // poll
		is.True(l2 != nil)              // the second task
		is.True(l2.TaskID != l1.TaskID) // the other one
		_, err = c.Complete(ctx, l2.ID, l2.Token, nil)
		is.NoErr(err) // complete
		waitState(t, c, ex.ID, wire.RunCompleted)
	})

	t.Run("a lease not extended expires and its token is refused", func(t *testing.T) {
		is := is.New(t)
		mustRegister(t, c, json.RawMessage(`{"name":"expiring","tasks":[{"id":"a","type":"ext"}]}`))
		ex := mustExecute(t, c, "expiring")
		l, err := c.Poll(ctx, client.PollRequest{Types: []string{typeExt}, WorkerID: "slow", Lease: 200 * time.Millisecond})
		is.NoErr(err)            // poll
		is.Equal(l.RunID, ex.ID) // leased
		d := waitState(t, c, ex.ID, wire.RunFailed)
		is.Equal(d.Task("a").Error.Code, "lease_expired") // the lease expired
		_, err = c.Complete(ctx, l.ID, l.Token, json.RawMessage(`{}`))
		e := wantProblem(t, err, http.StatusConflict, wire.CodeLeaseLost)
		is.Equal(e.State, "failed") // the task's state
		page, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{Type: wire.EventTaskCompleted})
		is.NoErr(err)                 // events
		is.Equal(len(page.Events), 0) // the refused completion recorded nothing
	})
}
