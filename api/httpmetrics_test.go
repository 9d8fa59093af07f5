package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// GET /metrics parses with Prometheus's own text parser, its latency
// series are histograms with le buckets from 100 µs to 60 s, and HTTP
// answers are counted by route and status.
func TestMetrics_PrometheusHistogramsAndHTTPByRoute(t *testing.T) {
	is := is.New(t)
	e := newParamsEnv(t, nil)
	st, body := e.call(t, "POST", "/api/v1/tenants/acme/workflows", `{"definition":{"name":"wf","tasks":[{"id":"a","type":"noop"}]}}`)
	is.Equal(st, http.StatusCreated)
	_ = body
	e.call(t, "GET", "/api/v1/tenants/acme/workflows/nope", "")
	e.call(t, "GET", "/no/such/route", "")
	st, text := e.call(t, "GET", "/metrics", "")
	is.Equal(st, http.StatusOK)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(text)))
	is.NoErr(err) // Prometheus parses it
	for _, name := range []string{"orchestrator_commit_duration_seconds", "orchestrator_task_duration_seconds",
		"orchestrator_run_duration_seconds", "orchestrator_http_request_duration_seconds", "orchestrator_commit_batch_events"} {
		f := fams[name]
		if f == nil {
			t.Fatalf("no %s in /metrics", name)
		}
		is.Equal(f.GetType(), dto.MetricType_HISTOGRAM) // a histogram, under its old name
		h := f.GetMetric()[0].GetHistogram()
		is.True(len(h.GetBucket()) > 5) // with buckets
		if strings.HasSuffix(name, "_seconds") {
			is.Equal(h.GetBucket()[0].GetUpperBound(), 0.0001)                  // from 100 µs
			is.Equal(h.GetBucket()[len(h.GetBucket())-2].GetUpperBound(), 60.0) // to 60 s, then +Inf
		}
	}
	counts := map[string]float64{}
	for _, m := range fams["orchestrator_http_requests_total"].GetMetric() {
		var route, status string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "route":
				route = l.GetValue()
			case "status":
				status = l.GetValue()
			}
		}
		counts[route+" "+status] = m.GetCounter().GetValue()
	}
	is.Equal(counts["POST /api/v1/tenants/:tenantId/workflows 201"], 1.0)            // by route template, not path
	is.Equal(counts["GET /api/v1/tenants/:tenantId/workflows/:workflowId 404"], 1.0) // with its status
	is.Equal(counts["unmatched 404"], 1.0)                                           // and no label from what a client sent
}
