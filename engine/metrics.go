package engine

import (
	"errors"

	"github.com/VictoriaMetrics/metrics"
)

// LatencyBuckets are the upper bounds, in seconds, of the latency
// histograms in /metrics (tasks, runs, commits, HTTP answers): Prometheus
// histograms with le buckets from 100 µs to 60 s, so that
// histogram_quantile() works on them in stock Prometheus and Grafana.
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// engineMetrics are the engine's Prometheus series. Counters are updated as
// events are decided; gauges read the engine under its lock when scraped.
type engineMetrics struct {
	set         *metrics.Set
	taskLatency *metrics.PrometheusHistogram
	runLatency  *metrics.PrometheusHistogram
	running     int // tasks in state running, protected by Engine.mu
	queued      int // ready tasks waiting for a worker (in-process or external), protected by Engine.mu
	stalled     int // runs marked stalled at the last stuck check, protected by Engine.mu
}

func newEngineMetrics(set *metrics.Set, e *Engine) *engineMetrics {
	m := &engineMetrics{set: set,
		taskLatency: set.GetOrCreatePrometheusHistogramExt(`orchestrator_task_duration_seconds`, LatencyBuckets),
		runLatency:  set.GetOrCreatePrometheusHistogramExt(`orchestrator_run_duration_seconds`, LatencyBuckets),
	}
	locked := func(f func() float64) func() float64 {
		return func() float64 {
			e.mu.Lock()
			defer e.mu.Unlock()
			return f()
		}
	}
	set.GetOrCreateGauge(`orchestrator_tasks_ready`, locked(func() float64 { return float64(m.queued) }))
	set.GetOrCreateGauge(`orchestrator_tasks_running`, locked(func() float64 { return float64(m.running) }))
	set.GetOrCreateGauge(`orchestrator_runs_active`, locked(func() float64 { return float64(len(e.runs)) }))
	set.GetOrCreateGauge(`orchestrator_runs_stalled`, locked(func() float64 { return float64(m.stalled) }))
	set.GetOrCreateCounter(`orchestrator_runs_stalled_total`) // run.stalled events recorded: 0 from the start
	set.GetOrCreateGauge(`orchestrator_runs_waiting`, locked(func() float64 { return float64(e.npending) }))
	set.GetOrCreateGauge(`orchestrator_runs_active_bytes`, locked(func() float64 { return float64(e.heldBytes) }))
	return m
}

// startRefused counts a start a quota or a concurrency key refused.
func (m *engineMetrics) startRefused(err error) {
	var qe *QuotaError
	switch {
	case errors.As(err, &qe):
		m.set.GetOrCreateCounter(`orchestrator_starts_refused_total{reason="` + qe.Quota + `"}`).Inc()
	case errors.Is(err, ErrConcurrencyLimited):
		m.set.GetOrCreateCounter(`orchestrator_starts_refused_total{reason="concurrency_key"}`).Inc()
	}
}

// taskMoved counts a task's change of state.
func (m *engineMetrics) taskMoved(ev *Event, from, to TaskState) {
	if from == TaskRunning {
		m.running--
	}
	if to == TaskRunning {
		m.running++
	}
	switch {
	case ev.Type == EventTaskAttemptFailed:
		m.set.GetOrCreateCounter(`orchestrator_tasks_total{outcome="retried"}`).Inc()
	case to.Terminal():
		m.set.GetOrCreateCounter(`orchestrator_tasks_total{outcome="` + string(to) + `"}`).Inc()
	}
}

// runEnded counts a run reaching a terminal state.
func (m *engineMetrics) runEnded(r *Run) {
	m.set.GetOrCreateCounter(`orchestrator_runs_total{outcome="` + string(r.State) + `"}`).Inc()
	if !r.EndedAt.IsZero() {
		m.runLatency.Update(r.EndedAt.Sub(r.CreatedAt).Seconds())
	}
}
