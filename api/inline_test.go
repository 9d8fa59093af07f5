package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"
)

// TestAPI_InlineDefinitionStart checks that a start with an inline definition
// writes the definition version, the run and the idempotency key in one
// commit: a request refused for its key registers nothing, even when it
// races the request that holds the key.
func TestAPI_InlineDefinitionStart(t *testing.T) {
	t.Parallel()
	def := func(desc string) string {
		return fmt.Sprintf(`{"name":"inline","description":%q,"tasks":[{"id":"a","type":"noop"}]}`, desc)
	}
	start := func(ts *testServer, t *testing.T, key, body string) *response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/api/v1/tenants/default/workflows", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		res, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return &response{Status: res.StatusCode, Header: res.Header}
	}

	t.Run("concurrent requests with one key and different definitions register one version", func(t *testing.T) {
		is := is.New(t)
		ts := newServer(t, serverOptions{})
		for round := 0; round < 10; round++ {
			key := fmt.Sprintf("race-%d", round)
			var wg sync.WaitGroup
			statuses := make([]int, 2)
			for i := range statuses {
				wg.Add(1)
				go func() {
					defer wg.Done()
					statuses[i] = start(ts, t, key, `{"definition":`+def(fmt.Sprintf("r%d-%d", round, i))+`}`).Status
				}()
			}
			wg.Wait()
			won, refused := 0, 0
			for _, s := range statuses {
				switch s {
				case http.StatusCreated:
					won++
				case http.StatusUnprocessableEntity:
					refused++
				}
			}
			is.Equal(won, 1)     // one request starts its run
			is.Equal(refused, 1) // the other is refused for reusing the key
		}
		is.Equal(ts.countRows(t, "workflows"), 10) // and only the winners' definitions were stored
		is.Equal(ts.countRows(t, "runs"), 10)      // with their runs
	})

	t.Run("the same inline definition again pins the same version", func(t *testing.T) {
		is := is.New(t)
		ts := newServer(t, serverOptions{})
		for i := 0; i < 3; i++ {
			r := ts.postJSON(t, "/api/v1/tenants/default/workflows", `{"definition":`+def("same")+`}`)
			is.Equal(r.Status, http.StatusCreated) // started
			is.True(strings.Contains(string(r.Body), `"version":1`))
		}
		r := ts.postJSON(t, "/api/v1/tenants/default/workflows", `{"definition":`+def("changed")+`}`)
		is.True(strings.Contains(string(r.Body), `"version":2`)) // a changed one is the next version
		is.Equal(ts.countRows(t, "workflows"), 2)
	})
}
