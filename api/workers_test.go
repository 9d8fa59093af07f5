package api_test

import (
	"net/http"
	"testing"
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
