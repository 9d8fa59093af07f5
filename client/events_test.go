package client_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
)

func TestOrchestratorClient_WorkflowEvents(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("history"))
	ctx := ctxFor(t)
	ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: []byte(`{"name":"chain","tasks":[
		{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]},{"id":"c","type":"noop","depends_on":["b"]}]}`)})
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	waitState(t, c, ex.ID, wire.RunCompleted)
	all, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{})
	if err != nil {
		t.Fatalf("events: %v", err)
	}

	t.Run("returns the whole history in seq order", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		is.Equal(all.RunID, ex.ID)        // names the run
		is.Equal(len(all.Events), 12)     // created, started, 3 x (ready, started, completed), completed
		is.Equal(all.NextAfter, int64(0)) // one page
		is.True(all.Verified == nil)      // not asked to verify
		for i, e := range all.Events {
			is.Equal(e.Seq, int64(i+1))     // gapless
			is.Equal(e.RunID, ex.ID)        // of the run
			is.Equal(e.TenantID, "history") // of the tenant
			is.True(e.Hash != "")           // chained
		}
		is.Equal(all.Events[0].Type, wire.EventRunCreated)    // first
		is.Equal(all.Events[11].Type, wire.EventRunCompleted) // last
	})

	t.Run("pages with after and limit", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		var got []wire.Event
		q := client.EventsQuery{Limit: 5}
		pages := 0
		for {
			page, err := c.WorkflowEvents(ctx, ex.ID, q)
			is.NoErr(err) // page
			pages++
			got = append(got, page.Events...)
			if page.NextAfter == 0 {
				break
			}
			q.After = page.NextAfter
		}
		is.Equal(pages, 3)        // 5 + 5 + 2
		is.Equal(got, all.Events) // the same events
	})

	t.Run("filters by task and type", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		page, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{TaskID: "b"})
		is.NoErr(err)                 // by task
		is.Equal(len(page.Events), 3) // ready, started, completed
		for _, e := range page.Events {
			is.Equal(e.TaskID, "b") // only b
		}
		page, err = c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{Type: wire.EventTaskCompleted})
		is.NoErr(err)                 // by type
		is.Equal(len(page.Events), 3) // one per task
		page, err = c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{Type: wire.EventTaskCompleted, TaskID: "c"})
		is.NoErr(err)                       // both
		is.Equal(len(page.Events), 1)       // one
		is.Equal(page.Events[0].Attempt, 1) // attempt recorded
	})

	t.Run("verify=true reports a verified chain", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		page, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{Verify: true, Limit: 1})
		is.NoErr(err)                  // verify
		is.True(page.Verified != nil)  // answered
		is.True(*page.Verified)        // the whole chain verifies
		is.Equal(page.VerifyError, "") // no error
		is.Equal(len(page.Events), 1)  // the page is still one event
	})

	t.Run("refuses bad query parameters naming them", func(t *testing.T) {
		t.Parallel()
		_, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{Limit: -1})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "limit")
		_, err = c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{After: -5})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "after")
		_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/history/workflows/"+ex.ID+"/events?verify=maybe", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "verify")
		_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/history/workflows/"+ex.ID+"/events?limit=0", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "limit")
		_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/history/workflows/"+ex.ID+"/events?sort=desc", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "sort")
		_, err = c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{Type: "task.exploded"})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "type")
		_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/history/workflows/"+ex.ID+"?full=1", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "full")
	})
}

// TestOrchestratorClient_TenantEvents is the audit query: who did what,
// across runs, by page and as one NDJSON stream.
func TestOrchestratorClient_TenantEvents(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("audit"))
	alice := env.client(t, client.WithTenant("audit"), client.WithActor("alice"))
	ctx := ctxFor(t)
	mustRegister(t, c, def("held", typeHold))
	mustRegister(t, c, def("quick", "noop"))
	r1 := mustExecute(t, c, "held").ID
	waitTask(t, c, r1, "t1", wire.TaskRunning)
	paused, err := alice.PauseWorkflow(ctx, r1)
	if err != nil {
		t.Fatalf("pause: %v", err)
	}
	if paused.State != wire.RunPaused {
		t.Fatalf("pause: state %s", paused.State)
	}
	r2 := mustExecute(t, c, "quick").ID
	r3 := mustExecute(t, c, "quick").ID
	waitState(t, c, r2, wire.RunCompleted)
	waitState(t, c, r3, wire.RunCompleted)
	// Nothing changes from here on: r1 is paused with its attempt held.
	var all []wire.Event
	if err := c.AllTenantEvents(ctx, client.EventFilter{Limit: 1000}, func(e wire.Event) error {
		all = append(all, e)
		return nil
	}); err != nil {
		t.Fatalf("all events: %v", err)
	}

	// The reads run in parallel on a log nothing changes; the group ends
	// before the cancellation below appends to it.
	t.Run("reads", func(t *testing.T) {
		t.Run("filters by actor and by whom it acted for", func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			page, err := c.TenantEvents(ctx, client.EventFilter{OnBehalf: "alice"})
			is.NoErr(err)                                      // by on_behalf
			is.Equal(len(page.Events), 1)                      // alice did one thing
			is.Equal(page.Events[0].Type, wire.EventRunPaused) // she paused
			is.Equal(page.Events[0].RunID, r1)                 // r1
			is.Equal(page.Events[0].OnBehalf, "alice")         // recorded as done for her
			is.Equal(page.Events[0].Actor, "local")            // by the caller, the local admin
			both, err := c.TenantEvents(ctx, client.EventFilter{Actor: "local", OnBehalf: "alice"})
			is.NoErr(err)                      // by both
			is.Equal(both.Events, page.Events) // the same event
			byActor, err := c.TenantEvents(ctx, client.EventFilter{Actor: "local"})
			is.NoErr(err)                                   // by actor alone
			is.True(len(byActor.Events) > len(page.Events)) // every call of the local admin
			page, err = c.TenantEvents(ctx, client.EventFilter{Actor: "mallory"})
			is.NoErr(err)                 // nobody
			is.Equal(len(page.Events), 0) // nothing
			is.True(page.Events != nil)   // an empty list, not null
			page, err = c.TenantEvents(ctx, client.EventFilter{OnBehalf: "mallory"})
			is.NoErr(err)                 // nobody
			is.Equal(len(page.Events), 0) // nothing
		})

		t.Run("filters by type and run and task", func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			page, err := c.TenantEvents(ctx, client.EventFilter{Type: wire.EventRunCreated})
			is.NoErr(err)                                                                                              // by type
			is.Equal(len(page.Events), 3)                                                                              // three runs
			is.Equal([]string{page.Events[0].RunID, page.Events[1].RunID, page.Events[2].RunID}, []string{r1, r2, r3}) // in log order
			for _, e := range page.Events {
				is.Equal(e.Actor, "local") // started by the local admin
			}
			byRun, err := c.TenantEvents(ctx, client.EventFilter{Run: r2})
			is.NoErr(err) // by run
			hist, err := c.WorkflowEvents(ctx, r2, client.EventsQuery{})
			is.NoErr(err)                       // the run's history
			is.Equal(byRun.Events, hist.Events) // the same events
			page, err = c.TenantEvents(ctx, client.EventFilter{Run: r1, TaskID: "t1", Type: wire.EventTaskStarted})
			is.NoErr(err)                 // by run, task and type
			is.Equal(len(page.Events), 1) // t1 started once
		})

		t.Run("filters by since and until", func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			mid := all[len(all)/2].At
			var since, until []wire.Event
			is.NoErr(c.AllTenantEvents(ctx, client.EventFilter{Since: mid}, func(e wire.Event) error {
				since = append(since, e)
				return nil
			})) // since
			is.NoErr(c.AllTenantEvents(ctx, client.EventFilter{Until: mid}, func(e wire.Event) error {
				until = append(until, e)
				return nil
			})) // until
			for _, e := range since {
				is.True(!e.At.Before(mid)) // since is inclusive
			}
			for _, e := range until {
				is.True(e.At.Before(mid)) // until is exclusive
			}
			is.Equal(len(since)+len(until), len(all)) // together, every event once
			is.True(len(since) > 0 && len(until) > 0) // both sides non-empty
			page, err := c.TenantEvents(ctx, client.EventFilter{Since: mid, Until: mid})
			is.NoErr(err)                 // an empty window
			is.Equal(len(page.Events), 0) // nothing
		})

		t.Run("pages with page_token without duplicates or gaps", func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			var got []wire.Event
			f := client.EventFilter{Limit: 4}
			for {
				page, err := c.TenantEvents(ctx, f)
				is.NoErr(err)                  // page
				is.True(len(page.Events) <= 4) // at most the limit
				got = append(got, page.Events...)
				if page.NextPageToken == "" {
					break
				}
				f.PageToken = page.NextPageToken
			}
			is.Equal(got, all) // the same events in the same order
			for i := 1; i < len(got); i++ {
				is.True(got[i].ID > got[i-1].ID) // log order
			}
		})

		t.Run("the NDJSON stream returns the same events as paging", func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			var streamed []wire.Event
			err := c.StreamTenantEvents(ctx, client.EventFilter{}, func(e wire.Event) error {
				streamed = append(streamed, e)
				return nil
			})
			is.NoErr(err)           // stream
			is.Equal(streamed, all) // the same events

			streamed = nil
			is.NoErr(c.StreamTenantEvents(ctx, client.EventFilter{Type: wire.EventTaskCompleted}, func(e wire.Event) error {
				streamed = append(streamed, e)
				return nil
			})) // filtered stream
			paged, err := c.TenantEvents(ctx, client.EventFilter{Type: wire.EventTaskCompleted})
			is.NoErr(err)                    // filtered page
			is.Equal(streamed, paged.Events) // the same

			n := 0
			is.NoErr(c.StreamTenantEvents(ctx, client.EventFilter{Limit: 2}, func(wire.Event) error { n++; return nil })) // limited
			is.Equal(n, 2)                                                                                                // limit caps the stream
			n = 0
			is.NoErr(c.StreamTenantEvents(ctx, client.EventFilter{}, func(wire.Event) error { n++; return client.ErrStop })) // stopped
			is.Equal(n, 1)                                                                                                   // one event, then stop
			boom := errors.New("boom")
			err = c.StreamTenantEvents(ctx, client.EventFilter{}, func(wire.Event) error { return boom })
			is.True(errors.Is(err, boom)) // the callback's error comes back
			err = c.StreamTenantEvents(ctx, client.EventFilter{PageToken: "zzz"}, func(wire.Event) error { return nil })
			wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "page_token") // problems before the stream
		})

		t.Run("refuses bad filters naming them", func(t *testing.T) {
			t.Parallel()
			_, err := c.TenantEvents(ctx, client.EventFilter{PageToken: "!!"})
			wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "page_token")
			_, err = c.TenantEvents(ctx, client.EventFilter{Limit: -3})
			wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "limit")
			_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/audit/events?since=last-week", nil, nil)
			wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "since")
			_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/audit/events?until=1", nil, nil)
			wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "until")
			_, err = c.TenantEvents(ctx, client.EventFilter{Type: "run.exploded"})
			wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "type")
			_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/audit/events?who=me", nil, nil)
			wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "who")
		})

	})

	t.Run("records who cancelled", func(t *testing.T) {
		is := is.New(t)
		bob := env.client(t, client.WithTenant("audit"), client.WithActor("bob"))
		run, err := bob.CancelWorkflow(ctx, r1)
		is.NoErr(err)                          // cancel
		is.Equal(run.State, wire.RunCancelled) // cancelled
		page, err := c.TenantEvents(ctx, client.EventFilter{OnBehalf: "bob", Type: wire.EventRunCancelled})
		is.NoErr(err)                 // by on_behalf and type
		is.Equal(len(page.Events), 1) // bob's cancellation
		is.Equal(page.Events[0].RunID, r1)
	})
}

// TestOrchestratorClient_LargeHistory pages and streams a history larger
// than the server's internal read pages and the default page.
func TestOrchestratorClient_LargeHistory(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("large"))
	ctx := ctxFor(t)
	var tasks []string
	for i := range 400 {
		tasks = append(tasks, fmt.Sprintf(`{"id":"t%03d","type":"noop"}`, i))
	}
	ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: []byte(`{"name":"wide","tasks":[` + strings.Join(tasks, ",") + `]}`)})
	is.NoErr(err) // execute
	waitState(t, c, ex.ID, wire.RunCompleted)
	const total = 2 + 3*400 + 1 // run created and started, each task ready, started, completed, run completed

	first, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{})
	is.NoErr(err)                          // default page
	is.Equal(len(first.Events), 1000)      // the default limit
	is.Equal(first.NextAfter, int64(1000)) // continues
	rest, err := c.WorkflowEvents(ctx, ex.ID, client.EventsQuery{After: first.NextAfter})
	is.NoErr(err)                          // second page
	is.Equal(len(rest.Events), total-1000) // the rest
	is.Equal(rest.NextAfter, int64(0))     // the last page
	history := append(first.Events, rest.Events...)

	var paged []wire.Event
	is.NoErr(c.AllTenantEvents(ctx, client.EventFilter{Limit: 333}, func(e wire.Event) error {
		paged = append(paged, e)
		return nil
	})) // paged
	var streamed []wire.Event
	is.NoErr(c.StreamTenantEvents(ctx, client.EventFilter{}, func(e wire.Event) error {
		streamed = append(streamed, e)
		return nil
	})) // streamed
	is.Equal(len(paged), total) // every event paged
	is.Equal(paged, history)    // the same as the run's history
	is.Equal(streamed, paged)   // the stream returns the same events
	n := 0
	is.NoErr(c.StreamTenantEvents(ctx, client.EventFilter{Limit: 777}, func(wire.Event) error { n++; return nil }))
	is.Equal(n, 777) // a limit across the server's read pages
}
