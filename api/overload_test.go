package api_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// TestAPI_Overload: past a saturation limit (here three active runs over a
// limit of two) a start answers 503 overloaded with Retry-After, while
// reads, control calls and workers' reports keep working; /health answers
// 200 degraded with the reasons and the gauge says 1; once the load is
// gone, all of it recovers by itself.
func TestAPI_Overload(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{Overload: engine.OverloadConfig{MaxActiveRuns: 2, Hold: 300 * time.Millisecond}})
	ts.register(t, `{"name":"one","tasks":[{"id":"t","type":"py"}]}`)
	var runs []runJSON
	for i := 0; i < 3; i++ {
		runs = append(runs, ts.startRun(t, `{"workflow":"one"}`))
	}
	var h wire.Health
	waitFor(t, "health to say overloaded", func() bool {
		ts.getJSON(t, "/health", &h)
		return h.Overloaded != nil
	})
	is.Equal(h.Status, "degraded")                          // degraded, not down: 200
	is.Equal(h.Storage, "ok")                               // the storage is fine
	is.Equal(h.Overloaded.Reasons[0].Signal, "active_runs") // the reason
	is.Equal(h.Overloaded.Reasons[0].Limit, 2.0)            // with its limit
	is.True(h.Overloaded.Reasons[0].Value >= 3)             // and value
	is.True(!h.Overloaded.Since.IsZero())                   // since when
	is.Equal(h.Overloaded.RetryAfterSeconds, 1)             // what a refused start is told
	v, ok := metricValue(t, ts.scrape(t), "orchestrator_overloaded")
	is.True(ok && v == 1) // the gauge says so

	for _, path := range []string{"/v1/run", "/api/v1/tenants/default/workflows"} {
		r := ts.postJSON(t, path, `{"workflow":"one"}`)
		p := problemOf(t, r, http.StatusServiceUnavailable, wire.CodeOverloaded) // a start is refused
		is.Equal(r.Header.Get("Retry-After"), "1")                               // with when to come back
		is.True(p.Detail != "")                                                  // and why
	}
	var got runJSON
	ts.getJSON(t, "/v1/runs/"+runs[0].ID, &got) // reads work
	is.Equal(got.ID, runs[0].ID)
	decodeJSON(t, ts.postJSON(t, "/v1/runs/"+runs[2].ID+"/cancel", ""), http.StatusOK, &got) // control calls work
	is.Equal(got.State, engine.RunCancelled)
	var l leaseJSON
	decodeJSON(t, ts.postJSON(t, "/v1/tasks/poll", `{"types":["py"],"worker_id":"w1"}`), http.StatusOK, &l) // polls work
	var done map[string]any
	decodeJSON(t, ts.postJSON(t, "/v1/tasks/"+l.ID+"/complete", fmt.Sprintf(`{"lease_token":%q}`, l.Token)), http.StatusOK, &done) // and reports
	ts.waitRun(t, l.RunID, "the worker's run to complete", func(r *runJSON) bool { return r.State == engine.RunCompleted })

	waitFor(t, "health to be ok again", func() bool {
		h = wire.Health{}
		ts.getJSON(t, "/health", &h)
		return h.Status == "ok"
	})
	is.True(h.Overloaded == nil) // no longer overloaded
	v, _ = metricValue(t, ts.scrape(t), "orchestrator_overloaded")
	is.Equal(v, 0.0)                     // the gauge says so
	ts.startRun(t, `{"workflow":"one"}`) // and starts are accepted again
}
