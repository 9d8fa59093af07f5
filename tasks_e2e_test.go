package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// TestBuiltinTasks_EndToEnd runs the built-in http and exec tasks through the
// real server, with data flowing between tasks by reference.
func TestBuiltinTasks_EndToEnd(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id": 42, "path": %q}`, r.URL.Path)
	}))
	defer svc.Close()
	dbPath := filepath.Join(t.TempDir(), "e2e.db")
	c := startChild(t, dbPath, "ENABLE_EXEC=true")
	t.Cleanup(func() { c.kill(t) })
	client := newClient()

	t.Run("an http task retries 5xx, then its output feeds the next tasks", func(t *testing.T) {
		is := is.New(t)
		def := fmt.Sprintf(`{"name":"fetch","output":{"id":"${echo.output.stdout}"},"tasks":[
			{"id":"get","type":"http","input":{"url":"${workflow.input.base}/items"},
			 "retry":{"max_attempts":4,"initial_interval":"10ms"}},
			{"id":"echo","type":"exec","depends_on":["get"],
			 "config":{"command":"printf"},"input":{"args":["%%s","${get.output.body.id}"]}}]}`)
		var reg struct{ Version int }
		code := apiCall(t, client, c.url("/v1/workflows"), def, &reg)
		is.Equal(code, 201) // registered
		var run struct{ ID string }
		is.Equal(apiCall(t, client, c.url("/v1/run"), fmt.Sprintf(`{"workflow":"fetch","input":{"base":%q}}`, svc.URL), &run), 201)
		v := waitRunState(t, client, c, run.ID, "completed")
		is.Equal(v.Tasks[0].Attempts, 3) // two 503s retried
		var got struct {
			Status int
			Body   struct {
				ID   int
				Path string
			}
		}
		is.NoErr(json.Unmarshal(v.Tasks[0].Output, &got))
		is.Equal(got.Status, 200)         // the response
		is.Equal(got.Body.Path, "/items") // the url came from the run input
		var out struct{ Stdout string }
		is.NoErr(json.Unmarshal(v.Tasks[1].Output, &out))
		is.Equal(out.Stdout, "42") // exec got the id from the http task's output
		events := runEvents(t, dbPath, run.ID)
		is.Equal(countEvents(events, engine.EventTaskAttemptFailed, "error"), 2) // the failures are in the history
	})

	t.Run("a refused target fails at once without retries", func(t *testing.T) {
		is := is.New(t)
		is.Equal(apiCall(t, client, c.url("/v1/workflows"), `{"name":"meta","tasks":[{"id":"m","type":"http",
			"config":{"url":"http://169.254.169.254/latest/meta-data/","timeout":"2s"},"retry":{"max_attempts":5}}]}`, nil), 201)
		var run struct{ ID string }
		is.Equal(apiCall(t, client, c.url("/v1/run"), `{"workflow":"meta"}`, &run), 201)
		v := waitRunState(t, client, c, run.ID, "failed")
		is.Equal(v.Tasks[0].Attempts, 1) // not retried
	})

	t.Run("bad http config is refused when the definition is registered", func(t *testing.T) {
		is := is.New(t)
		var prob struct {
			Code   string
			Errors []definition.Problem
		}
		is.Equal(apiCall(t, client, c.url("/v1/workflows"), `{"name":"bad","tasks":[{"id":"h","type":"http","config":{"url":"ftp://x","method":"FETCH"}}]}`, &prob), 400)
		is.Equal(prob.Code, "invalid_definition")
		is.Equal(len(prob.Errors), 2) // the scheme and the method
	})
}

func TestExecDisabled(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := startChild(t, filepath.Join(t.TempDir(), "x.db"))
	t.Cleanup(func() { c.kill(t) })
	var prob struct {
		Code   string
		Errors []definition.Problem
	}
	code := apiCall(t, newClient(), c.url("/v1/workflows"), `{"name":"x","tasks":[{"id":"e","type":"exec","config":{"command":"id"}}]}`, &prob)
	is.Equal(code, 400) // refused
	is.Equal(len(prob.Errors), 1)
	is.True(strings.Contains(prob.Errors[0].Message, "--enable-exec")) // saying how to enable it
}
