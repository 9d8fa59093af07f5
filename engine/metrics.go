package engine

import (
	"github.com/VictoriaMetrics/metrics"
)

// engineMetrics are the engine's Prometheus series. Counters are updated as
// events are decided; gauges read the engine under its lock when scraped.
type engineMetrics struct {
	set         *metrics.Set
	taskLatency *metrics.Histogram
	runLatency  *metrics.Histogram
	running     int // tasks in state running, protected by Engine.mu
	queued      int // ready tasks waiting for a worker (in-process or external), protected by Engine.mu
	stalled     int // runs marked stalled at the last stuck check, protected by Engine.mu
}

func newEngineMetrics(set *metrics.Set, e *Engine) *engineMetrics {
	m := &engineMetrics{set: set,
		taskLatency: set.GetOrCreateHistogram(`orchestrator_task_duration_seconds`),
		runLatency:  set.GetOrCreateHistogram(`orchestrator_run_duration_seconds`),
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
	return m
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
