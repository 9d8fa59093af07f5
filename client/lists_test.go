package client_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
)

func TestOrchestratorClient_Idempotency(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("idem"))
	ctx := ctxFor(t)
	mustRegister(t, c, def("once", "noop"))
	count := func(t *testing.T, workflow string) int {
		t.Helper()
		page, err := c.ListWorkflows(ctx, client.RunFilter{Workflow: workflow, Limit: 100})
		if err != nil {
			t.Fatalf("list %s: %v", workflow, err)
		}
		return len(page.Runs)
	}

	t.Run("the same key twice returns the same run", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		mustRegister(t, c, def("twice", "noop"))
		req := client.ExecuteRequest{Workflow: "twice", Input: json.RawMessage(`{"n":1}`), IdempotencyKey: "order-1"}
		first, err := c.ExecuteWorkflow(ctx, req)
		is.NoErr(err)            // first
		is.True(!first.Replayed) // a new run
		second, err := c.ExecuteWorkflow(ctx, req)
		is.NoErr(err)                  // second
		is.True(second.Replayed)       // answered from the key
		is.Equal(second.ID, first.ID)  // the same run
		is.Equal(count(t, "twice"), 1) // only one run exists
	})

	t.Run("the same key with an inline definition returns the same run", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		req := client.ExecuteRequest{Definition: def("inline-idem", "noop"), IdempotencyKey: "inline-1"}
		first, err := c.ExecuteWorkflow(ctx, req)
		is.NoErr(err) // first
		second, err := c.ExecuteWorkflow(ctx, req)
		is.NoErr(err)                        // second
		is.Equal(second.ID, first.ID)        // the same run
		is.Equal(count(t, "inline-idem"), 1) // only one run exists
	})

	t.Run("a key reused for a different request is 422", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "once", Input: json.RawMessage(`{"n":1}`), IdempotencyKey: "k-422"})
		is.NoErr(err) // first
		_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "once", Input: json.RawMessage(`{"n":2}`), IdempotencyKey: "k-422"})
		wantProblem(t, err, http.StatusUnprocessableEntity, wire.CodeIdempotencyMismatch)
	})

	t.Run("a key over 255 characters is refused", func(t *testing.T) {
		t.Parallel()
		long := make([]byte, 256)
		for i := range long {
			long[i] = 'k'
		}
		_, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "once", IdempotencyKey: string(long)})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "Idempotency-Key")
	})

	t.Run("concurrent duplicates start one run", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		mustRegister(t, c, def("racy", "noop"))
		const n = 8
		var wg sync.WaitGroup
		ids := make([]string, n)
		replayed := make([]bool, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				ex, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "racy", IdempotencyKey: "race-1"})
				if err != nil {
					errs[i] = err
					return
				}
				ids[i], replayed[i] = ex.ID, ex.Replayed
			})
		}
		close(start)
		wg.Wait()
		fresh := 0
		for i := range n {
			is.NoErr(errs[i])        // every duplicate answered
			is.Equal(ids[i], ids[0]) // with the same run
			if !replayed[i] {
				fresh++
			}
		}
		is.Equal(fresh, 1)            // one request started it
		is.Equal(count(t, "racy"), 1) // only one run exists
	})
}

// TestOrchestratorClient_ListWorkflows pages 120 runs, newest first, and
// checks every filter.
func TestOrchestratorClient_ListWorkflows(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("pages"))
	ctx := ctxFor(t)
	mustRegister(t, c, def("page", "noop"))
	mustRegister(t, c, def("fails", typeBoom))
	const total = 120
	var created []wire.Run // in creation order
	for range total {
		ex := mustExecute(t, c, "page")
		created = append(created, ex.Run)
	}
	var failing []string
	for range 5 {
		failing = append(failing, mustExecute(t, c, "fails").ID)
	}
	waitFor(t, "every run ended", func() (bool, error) {
		ended := 0
		err := c.AllWorkflows(ctx, client.RunFilter{Limit: 1000}, func(r wire.Run) error {
			if r.State.Terminal() {
				ended++
			}
			return nil
		})
		return ended == total+5, err
	})

	t.Run("limit 50 walks three pages newest first without duplicates or gaps", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		var got []wire.Run
		var sizes []int
		f := client.RunFilter{Workflow: "page", Limit: 50}
		for {
			page, err := c.ListWorkflows(ctx, f)
			is.NoErr(err) // page
			sizes = append(sizes, len(page.Runs))
			got = append(got, page.Runs...)
			if page.NextPageToken == "" {
				break
			}
			f.PageToken = page.NextPageToken
		}
		is.Equal(sizes, []int{50, 50, 20}) // three pages
		is.Equal(len(got), total)          // every run
		seen := map[string]bool{}
		for i, r := range got {
			is.True(!seen[r.ID]) // no duplicates
			seen[r.ID] = true
			is.Equal(r.ID, created[total-1-i].ID) // newest first, no gaps
			is.Equal(r.State, wire.RunCompleted)  // projection listed
			if i > 0 {
				is.True(!r.CreatedAt.After(got[i-1].CreatedAt)) // ordered by creation, descending
			}
		}
	})

	t.Run("AllWorkflows walks every page and stops on ErrStop", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		n := 0
		err := c.AllWorkflows(ctx, client.RunFilter{Workflow: "page", Limit: 7}, func(wire.Run) error {
			n++
			return nil
		})
		is.NoErr(err)      // walked
		is.Equal(n, total) // every run once
		n = 0
		err = c.AllWorkflows(ctx, client.RunFilter{Limit: 7}, func(wire.Run) error {
			if n++; n == 10 {
				return client.ErrStop
			}
			return nil
		})
		is.NoErr(err)   // stopped without an error
		is.Equal(n, 10) // at the tenth
		boom := errors.New("boom")
		err = c.AllWorkflows(ctx, client.RunFilter{Limit: 7}, func(wire.Run) error { return boom })
		is.True(errors.Is(err, boom)) // the callback's error comes back
	})

	t.Run("filters by status and workflow", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		page, err := c.ListWorkflows(ctx, client.RunFilter{Status: wire.RunFailed})
		is.NoErr(err)               // list failed
		is.Equal(len(page.Runs), 5) // only the failed runs
		for i, r := range page.Runs {
			is.Equal(r.Workflow, "fails")     // of the failing workflow
			is.Equal(r.ID, failing[4-i])      // newest first
			is.Equal(r.State, wire.RunFailed) // failed
		}
		page, err = c.ListWorkflows(ctx, client.RunFilter{Workflow: "fails", Status: wire.RunCompleted})
		is.NoErr(err)               // both filters
		is.Equal(len(page.Runs), 0) // none completed
		is.True(page.Runs != nil)   // an empty list, not null
		page, err = c.ListWorkflows(ctx, client.RunFilter{Workflow: "page", Status: wire.RunCompleted, Limit: 1000})
		is.NoErr(err)                    // list
		is.Equal(len(page.Runs), total)  // every page run completed
		is.Equal(page.NextPageToken, "") // one page
	})

	t.Run("filters by creation time, both bounds exclusive", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		after, before := created[39].CreatedAt, created[80].CreatedAt
		var got []string
		err := c.AllWorkflows(ctx, client.RunFilter{Workflow: "page", CreatedAfter: after, CreatedBefore: before, Limit: 13},
			func(r wire.Run) error {
				got = append(got, r.ID)
				return nil
			})
		is.NoErr(err)          // list
		is.Equal(len(got), 40) // runs 40..79
		is.Equal(got[0], created[79].ID)
		is.Equal(got[39], created[40].ID)
		page, err := c.ListWorkflows(ctx, client.RunFilter{CreatedAfter: time.Now().Add(time.Hour)})
		is.NoErr(err)               // list
		is.Equal(len(page.Runs), 0) // nothing from the future
	})

	t.Run("refuses bad query parameters naming them", func(t *testing.T) {
		t.Parallel()
		_, err := c.ListWorkflows(ctx, client.RunFilter{Status: "bogus"})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "status")
		_, err = c.ListWorkflows(ctx, client.RunFilter{Limit: -1})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "limit")
		_, err = c.ListWorkflows(ctx, client.RunFilter{Limit: 1001})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "limit")
		_, err = c.ListWorkflows(ctx, client.RunFilter{PageToken: "not-a-token"})
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "page_token")
		_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/pages/workflows?limit=0", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "limit")
		_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/pages/workflows?created_after=yesterday", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "created_after")
		_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/pages/workflows?colour=red", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "colour")
	})
}
