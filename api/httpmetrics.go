package api

import (
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine"
)

// routeUnmatched is the route label of requests no route serves.
const routeUnmatched = "unmatched"

// httpMetrics counts answers by route and status and times them by route,
// in the Set GET /metrics writes. Labels come from the route table and the
// statuses the handlers answer, so their number is bounded by the code,
// never by what a client sends. It is safe for concurrent use.
type httpMetrics struct {
	set       *metrics.Set
	counters  sync.Map // answerKey -> *metrics.Counter
	durations sync.Map // route -> *metrics.PrometheusHistogram
}

// answerKey names the counter of a route's answers with one status.
type answerKey struct {
	route  string
	status int
}

// observe records one answer of route with status, begun at start.
func (m *httpMetrics) observe(route string, status int, start time.Time) {
	if m.set == nil {
		return
	}
	if route == "" {
		route = routeUnmatched
	}
	if status == 0 { // nothing written: net/http answers 200
		status = 200
	}
	key := answerKey{route, status}
	c, ok := m.counters.Load(key)
	if !ok {
		c, _ = m.counters.LoadOrStore(key, m.set.GetOrCreateCounter(
			`orchestrator_http_requests_total{route="`+route+`",status="`+strconv.Itoa(status)+`"}`))
	}
	c.(*metrics.Counter).Inc()
	h, ok := m.durations.Load(route)
	if !ok {
		h, _ = m.durations.LoadOrStore(route, m.set.GetOrCreatePrometheusHistogramExt(
			`orchestrator_http_request_duration_seconds{route="`+route+`"}`, engine.LatencyBuckets))
	}
	h.(*metrics.PrometheusHistogram).UpdateDuration(start)
}
