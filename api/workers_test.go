package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// leaseJSON is the answer of a poll that leased a task.
type leaseJSON struct {
	ID     string `json:"id"`
	RunID  string `json:"run_id"`
	TaskID string `json:"task_id"`
	Token  string `json:"lease_token"`
}

// leaseOne starts a run of one task of the external type "py" and leases
// that task as worker w1.
func (ts *testServer) leaseOne(t *testing.T) leaseJSON {
	t.Helper()
	ts.postJSON(t, "/v1/workflows", `{"name":"one","tasks":[{"id":"t","type":"py"}]}`)
	run := ts.startRun(t, `{"workflow":"one"}`)
	var l leaseJSON
	decodeJSON(t, ts.postJSON(t, "/v1/tasks/poll", `{"types":["py"],"worker_id":"w1"}`), http.StatusOK, &l)
	if l.RunID != run.ID || l.Token == "" {
		t.Fatalf("poll leased %+v, want the task of run %s", l, run.ID)
	}
	return l
}

// eventTypes lists the types of a run's events.
func (ts *testServer) eventTypes(t *testing.T, runID string) []engine.EventType {
	t.Helper()
	var page eventsJSON
	ts.getJSON(t, "/v1/runs/"+runID+"/events", &page)
	var out []engine.EventType
	for _, e := range page.Events {
		out = append(out, e.Type)
	}
	return out
}

func TestAPI_WorkerComplete_RefusedOutput(t *testing.T) {
	t.Parallel()

	t.Run("an output over 1 MiB is refused with 413 naming output, and nothing is recorded", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts := newServer(t, serverOptions{})
		l := ts.leaseOne(t)
		before := ts.eventTypes(t, l.RunID)
		big := fmt.Sprintf(`{"lease_token":%q,"output":"%s"}`, l.Token, strings.Repeat("x", engine.MaxOutputBytes))
		p := problemOf(t, ts.postJSON(t, "/v1/tasks/"+l.ID+"/complete", big), http.StatusRequestEntityTooLarge, "output_too_large")
		is.Equal(fieldOf(t, p), "output")                                                         // the answer names the field
		is.True(strings.Contains(p.Errors[0].Message, "1048576"))                                 // and the limit
		is.Equal(ts.eventTypes(t, l.RunID), before)                                               // nothing was recorded
		is.Equal(ts.waitState(t, l.RunID, engine.RunRunning).task("t").State, engine.TaskRunning) // the attempt still runs

		// The lease still holds: the worker fails the task with its own reason.
		var ans struct{ Status string }
		decodeJSON(t, ts.postJSON(t, "/v1/tasks/"+l.ID+"/fail",
			fmt.Sprintf(`{"lease_token":%q,"error":{"code":"too_big","message":"output over the limit"},"retryable":false}`, l.Token)),
			http.StatusOK, &ans)
		is.Equal(ans.Status, "failed") // the failure is recorded
		run := ts.waitState(t, l.RunID, engine.RunFailed)
		is.Equal(run.task("t").Error.Code, "too_big") // with the worker's code, not output_too_large
	})

	t.Run("malformed JSON is refused with 400 and the lease still completes", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts := newServer(t, serverOptions{})
		l := ts.leaseOne(t)
		before := ts.eventTypes(t, l.RunID)
		problemOf(t, ts.postJSON(t, "/v1/tasks/"+l.ID+"/complete", fmt.Sprintf(`{"lease_token":%q,"output":{"a":}`, l.Token)),
			http.StatusBadRequest, "invalid_json")
		is.Equal(ts.eventTypes(t, l.RunID), before) // nothing was recorded
		var ans struct{ Status string }
		decodeJSON(t, ts.postJSON(t, "/v1/tasks/"+l.ID+"/complete", fmt.Sprintf(`{"lease_token":%q,"output":{"a":1}}`, l.Token)),
			http.StatusOK, &ans)
		is.Equal(ans.Status, "completed") // the lease held
		is.Equal(string(ts.waitState(t, l.RunID, engine.RunCompleted).task("t").Output), `{"a":1}`)
	})
}

func TestAPI_WorkerPoll_TypesLimit(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	types := func(n int) string {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("%q", fmt.Sprintf("type%d", i))
		}
		return "[" + strings.Join(names, ",") + "]"
	}
	r := ts.postJSON(t, "/v1/tasks/poll", `{"types":`+types(64)+`,"worker_id":"w1"}`)
	is.Equal(r.Status, http.StatusNoContent) // 64 types are allowed
	p := problemOf(t, ts.postJSON(t, "/v1/tasks/poll", `{"types":`+types(65)+`,"worker_id":"w1"}`), http.StatusBadRequest, "invalid_request")
	is.Equal(fieldOf(t, p), "types")                     // 65 are refused, naming types
	is.True(strings.Contains(p.Errors[0].Message, "64")) // with the limit
	p = problemOf(t, ts.postJSON(t, "/api/v1/tenants/acme/tasks/poll", `{"types":`+types(100000)+`,"worker_id":"w1"}`),
		http.StatusBadRequest, "invalid_request")
	is.Equal(fieldOf(t, p), "types") // on the tenant API too
}
