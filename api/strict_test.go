package api_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// TestAPI_InvalidUTF8: a byte sequence that is not UTF-8 is refused at every
// entry point with 400 naming the field, before anything is written, so that
// no answer echoing it (the run, the lists, the events, the audit log) can
// be invalid JSON.
func TestAPI_InvalidUTF8(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	l := ts.leaseOne(t)
	const bad = "\xff"
	def := func(name string) string {
		return `{"name":"` + name + `","tasks":[{"id":"t","type":"noop"}]}`
	}
	for _, tc := range []struct {
		name, path, body, field string
	}{
		{"run input", "/v1/run", `{"workflow":"one","input":{"s":"a` + bad + `"}}`, "input.s"},
		{"run input on the tenant API", "/api/v1/tenants/acme/workflows",
			`{"definition":` + def("d") + `,"input":["ok","` + bad + `"]}`, "input[1]"},
		{"a key of a run input", "/v1/run", `{"workflow":"one","input":{"k` + bad + `":1}}`, "input.k\ufffd"},
		{"inline definition", "/api/v1/tenants/acme/workflows", `{"definition":` + def("d"+bad) + `}`, "definition.name"},
		{"definition", "/v1/workflows", def("d" + bad), "name"},
		{"definition on the tenant API", "/api/v1/tenants/acme/definitions",
			`{"name":"d","description":"` + bad + `","tasks":[{"id":"t","type":"noop"}]}`, "description"},
		{"definition to validate", "/api/v1/dag/validate", `{"definition":` + def(bad) + `}`, "definition.name"},
		{"worker output", "/v1/tasks/" + l.ID + "/complete", fmt.Sprintf(`{"lease_token":%q,"output":{"s":"`+bad+`"}}`, l.Token), "output.s"},
		{"worker error", "/v1/tasks/" + l.ID + "/fail",
			fmt.Sprintf(`{"lease_token":%q,"error":{"code":"x","message":"`+bad+`"}}`, l.Token), "error.message"},
		{"worker id", "/v1/tasks/poll", `{"types":["py"],"worker_id":"w` + bad + `"}`, "worker_id"},
		{"control body", "/v1/runs/" + l.RunID + "/retry", `{"task_id":"` + bad + `"}`, "task_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			before := [3]int{ts.countRows(t, "runs"), ts.countRows(t, "events"), ts.countRows(t, "workflows")}
			p := problemOf(t, ts.postJSON(t, tc.path, tc.body), http.StatusBadRequest, wire.CodeInvalidJSON)
			is.Equal(fieldOf(t, p), tc.field)                                                                          // the problem names the field
			is.True(strings.Contains(p.Errors[0].Message, "UTF-8"))                                                    // and says why
			is.Equal(before, [3]int{ts.countRows(t, "runs"), ts.countRows(t, "events"), ts.countRows(t, "workflows")}) // nothing was written
		})
	}

	for _, header := range []string{"X-Actor", "Idempotency-Key"} {
		t.Run(header+" header", func(t *testing.T) {
			is := is.New(t)
			runs, events := ts.countRows(t, "runs"), ts.countRows(t, "events")
			req, err := http.NewRequest(http.MethodPost, ts.URL+"/api/v1/tenants/acme/workflows",
				strings.NewReader(`{"definition":`+def("h")+`}`))
			is.NoErr(err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(header, "me"+bad)
			res, err := ts.client.Do(req)
			is.NoErr(err) // the header is sent as it is
			defer res.Body.Close()
			r := readResponse(t, res)
			p := problemOf(t, r, http.StatusBadRequest, wire.CodeInvalidRequest)
			is.Equal(fieldOf(t, p), header)             // the problem names the header
			is.Equal(ts.countRows(t, "runs"), runs)     // no run was started
			is.Equal(ts.countRows(t, "events"), events) // nothing was recorded
		})
	}
}

// TestAPI_NestedKeys: keys are matched exactly and given once at every
// depth of a body, as at the top level.
func TestAPI_NestedKeys(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	l := ts.leaseOne(t)
	fail := func(errObj string) string {
		return fmt.Sprintf(`{"lease_token":%q,"error":%s,"retryable":false}`, l.Token, errObj)
	}
	for _, tc := range []struct {
		name, path, body, field, msg string
	}{
		{"a nested key matching a field only by case is unknown", "/v1/tasks/" + l.ID + "/fail",
			fail(`{"CODE":"x","message":"m"}`), "error.CODE", "unknown field"},
		{"a nested key given twice is refused", "/v1/tasks/" + l.ID + "/fail",
			fail(`{"code":"a","code":"b","message":"m"}`), "error.code", "given more than once"},
		{"an unknown nested key is named with its path", "/v1/tasks/" + l.ID + "/fail",
			fail(`{"code":"a","message":"m","extra":1}`), "error.extra", "unknown field"},
		{"a key given twice inside a run's input is refused", "/v1/run",
			`{"workflow":"one","input":{"a":{"b":1,"b":2}}}`, "input.a.b", "given more than once"},
		{"a key given twice inside a task's output is refused", "/v1/tasks/" + l.ID + "/complete",
			fmt.Sprintf(`{"lease_token":%q,"output":[{"k":1},{"k":1,"k":2}]}`, l.Token), "output[1].k", "given more than once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			runs, events := ts.countRows(t, "runs"), ts.countRows(t, "events")
			p := problemOf(t, ts.postJSON(t, tc.path, tc.body), http.StatusBadRequest, "invalid_request")
			is.Equal(fieldOf(t, p), tc.field)           // the problem names the nested field by its path
			is.Equal(p.Errors[0].Message, tc.msg)       // and says what is wrong with it
			is.Equal(ts.countRows(t, "runs"), runs)     // no run was started
			is.Equal(ts.countRows(t, "events"), events) // nothing was recorded
		})
	}
	is := is.New(t)
	var ans struct{ Status string }
	decodeJSON(t, ts.postJSON(t, "/v1/tasks/"+l.ID+"/fail", fail(`{"code":"x","message":"m"}`)), http.StatusOK, &ans)
	is.Equal(ans.Status, "failed")                                                 // the exact keys are accepted, and the lease held through the refusals
	is.Equal(ts.waitState(t, l.RunID, engine.RunFailed).task("t").Error.Code, "x") // as the worker spelt them
}

// readResponse reads res whole.
func readResponse(t *testing.T, res *http.Response) *response {
	t.Helper()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return &response{Status: res.StatusCode, Header: res.Header, Body: data}
}
