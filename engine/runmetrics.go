package engine

import (
	"context"
	"encoding/json"
	"math"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// RunMetrics are timings of one run, computed from its events.
type RunMetrics struct {
	RunID       string        `json:"run_id"`
	State       RunState      `json:"state"`
	DurationMS  float64       `json:"duration_ms"`   // created to ended (or to now)
	Attempts    int           `json:"attempts"`      // all tasks' attempts
	QueueWaitMS float64       `json:"queue_wait_ms"` // all tasks' time ready but not started
	Tasks       []TaskMetrics `json:"tasks"`
	// CriticalPath is the chain of tasks that decided when the run ended:
	// from the task that ended last, back through the dependency that ended
	// last, to a root. CriticalPathMS sums their durations.
	CriticalPath   []string `json:"critical_path"`
	CriticalPathMS float64  `json:"critical_path_ms"`
}

// TaskMetrics are timings of one task.
type TaskMetrics struct {
	TaskID      string    `json:"task_id"`
	State       TaskState `json:"state"`
	Attempts    int       `json:"attempts"`
	DurationMS  float64   `json:"duration_ms"`   // time attempts ran, summed
	QueueWaitMS float64   `json:"queue_wait_ms"` // time ready (past any backoff) before each attempt started, summed
	ReadyAt     time.Time `json:"ready_at,omitzero"`
	StartedAt   time.Time `json:"started_at,omitzero"` // the first attempt
	EndedAt     time.Time `json:"ended_at,omitzero"`
}

// ComputeRunMetrics folds a run's events into its metrics; now bounds what
// is still running.
func ComputeRunMetrics(plan *definition.Plan, events []Event, now time.Time) *RunMetrics {
	m := &RunMetrics{Tasks: make([]TaskMetrics, len(plan.Tasks)), CriticalPath: []string{}}
	type live struct {
		readyAt, start time.Time
		running        bool
	}
	lv := make([]live, len(plan.Tasks))
	for i, pt := range plan.Tasks {
		m.Tasks[i] = TaskMetrics{TaskID: pt.ID, State: TaskPending}
	}
	var created, ended time.Time
	for i := range events {
		ev := &events[i]
		if ev.TaskID == "" {
			switch ev.Type {
			case EventRunCreated:
				m.RunID, created = ev.RunID, ev.At
			case EventRunRetried:
				ended = time.Time{}
			}
			if to, ok := runEvents[ev.Type]; ok {
				m.State = to.to
				if to.to.Terminal() {
					ended = ev.At
				}
			} else if ev.Type == EventRunCreated {
				m.State = RunPending
			}
			continue
		}
		pos, ok := plan.Index[ev.TaskID]
		if !ok {
			continue
		}
		t, l := &m.Tasks[pos], &lv[pos]
		var d EventData
		if len(ev.Data) > 0 {
			json.Unmarshal(ev.Data, &d)
		}
		if rule, ok := taskEvents[ev.Type]; ok {
			t.State = rule.to
		}
		switch ev.Type {
		case EventTaskReady, EventTaskAttemptFailed:
			l.readyAt = ev.At
			if d.NotBefore.After(ev.At) {
				l.readyAt = d.NotBefore // waiting out a backoff is not queueing
			}
			if t.ReadyAt.IsZero() {
				t.ReadyAt = ev.At
			}
		case EventTaskStarted:
			t.Attempts++
			m.Attempts++
			if !l.readyAt.IsZero() && ev.At.After(l.readyAt) {
				w := ms(ev.At.Sub(l.readyAt))
				t.QueueWaitMS += w
				m.QueueWaitMS += w
			}
			if t.StartedAt.IsZero() {
				t.StartedAt = ev.At
			}
			l.start, l.running = ev.At, true
		case EventTaskReset:
			t.EndedAt = time.Time{}
		}
		if l.running && ev.Type != EventTaskStarted && ev.Type != EventTaskLeaseExtended {
			t.DurationMS += ms(ev.At.Sub(l.start))
			l.running = false
		}
		if t.State.Terminal() {
			t.EndedAt = ev.At
		}
	}
	for i := range lv {
		if lv[i].running {
			m.Tasks[i].DurationMS += ms(now.Sub(lv[i].start))
		}
	}
	if ended.IsZero() {
		ended = now
	}
	if !created.IsZero() {
		m.DurationMS = ms(ended.Sub(created))
	}
	m.CriticalPath, m.CriticalPathMS = criticalPath(plan, m.Tasks)
	m.CriticalPathMS = math.Round(m.CriticalPathMS*1000) / 1000
	m.QueueWaitMS = math.Round(m.QueueWaitMS*1000) / 1000
	for i := range m.Tasks {
		m.Tasks[i].DurationMS = math.Round(m.Tasks[i].DurationMS*1000) / 1000
		m.Tasks[i].QueueWaitMS = math.Round(m.Tasks[i].QueueWaitMS*1000) / 1000
	}
	return m
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// criticalPath walks back from the task that ended last through the
// dependency that ended last.
func criticalPath(plan *definition.Plan, tasks []TaskMetrics) ([]string, float64) {
	last := -1
	for i := range tasks {
		if !tasks[i].EndedAt.IsZero() && (last < 0 || tasks[i].EndedAt.After(tasks[last].EndedAt)) {
			last = i
		}
	}
	var path []string
	total := 0.0
	for p := last; p >= 0; {
		path = append(path, tasks[p].TaskID)
		total += tasks[p].DurationMS
		next := -1
		for _, d := range plan.Tasks[p].Deps {
			if !tasks[d].EndedAt.IsZero() && (next < 0 || tasks[d].EndedAt.After(tasks[next].EndedAt)) {
				next = d
			}
		}
		p = next
	}
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	if path == nil {
		path = []string{}
	}
	return path, total
}

// Plan returns the compiled plan of a definition version, for callers that
// interpret a run's events (metrics, verification).
func (e *Engine) Plan(ctx context.Context, tenantID, name string, version int) (*definition.Plan, error) {
	p, _, err := e.plan(ctx, tenantID, name, version)
	return p, err
}
