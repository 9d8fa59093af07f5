package engine

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// WriterLoad is how busy a store's writer is.
type WriterLoad struct {
	QueuedEvents  int           // events (at least one per write) waiting for the writer
	CommitLatency time.Duration // what recent writes waited from Commit until durable, smoothed
}

// LoadReporter is what a Store implements to let the engine see its writer
// saturate. The engine reads it, when the store implements it, to decide
// whether it is overloaded; a store without it is never the reason.
type LoadReporter interface {
	WriterLoad() WriterLoad
}

// Defaults of OverloadConfig.
const (
	DefaultMaxWriterQueue   = 100_000
	DefaultMaxCommitLatency = time.Second
	DefaultMaxReadyTasks    = 200_000
	DefaultMaxActiveRuns    = 20_000
	DefaultMaxActiveBytes   = 1 << 30
	DefaultOverloadHold     = 2 * time.Second
	DefaultOverloadInterval = 50 * time.Millisecond
)

// OverloadLowWater is the fraction of its limit every signal must fall
// below, and stay below for OverloadConfig.Hold, before an overloaded engine
// accepts starts again: a signal hovering at its limit must not make the
// answer flap.
const OverloadLowWater = 0.8

// OverloadConfig sets when the engine counts as saturated and refuses new
// runs (ErrOverloaded) while everything else keeps working. A limit of 0
// takes its default; a negative limit turns that signal off.
type OverloadConfig struct {
	MaxWriterQueue   int           // events queued for the store's writer
	MaxCommitLatency time.Duration // the writer's smoothed latency, from Commit until durable
	MaxReadyTasks    int           // tasks ready and waiting for a worker, in-process or external
	MaxActiveRuns    int           // runs held in memory (every non-terminal run)
	MaxActiveBytes   int64         // payload bytes (runs.data_bytes) of the runs held in memory
	// Hold is how long every signal must stay under OverloadLowWater of its
	// limit before starts are accepted again; also the Retry-After of a
	// refused start.
	Hold time.Duration
	// Interval is how often the signals are sampled.
	Interval time.Duration
}

func (c *OverloadConfig) withDefaults() {
	c.MaxWriterQueue = cmp.Or(c.MaxWriterQueue, DefaultMaxWriterQueue)
	c.MaxCommitLatency = cmp.Or(c.MaxCommitLatency, DefaultMaxCommitLatency)
	c.MaxReadyTasks = cmp.Or(c.MaxReadyTasks, DefaultMaxReadyTasks)
	c.MaxActiveRuns = cmp.Or(c.MaxActiveRuns, DefaultMaxActiveRuns)
	c.MaxActiveBytes = cmp.Or(c.MaxActiveBytes, DefaultMaxActiveBytes)
	c.Hold = cmp.Or(max(c.Hold, 0), DefaultOverloadHold)
	c.Interval = cmp.Or(max(c.Interval, 0), DefaultOverloadInterval)
}

// Validate reports an interval or hold out of range.
func (c *OverloadConfig) Validate() error {
	if c.Hold < 0 || c.Hold > 10*time.Minute {
		return fmt.Errorf("overload hold %s out of range 0..10m", c.Hold)
	}
	if c.Interval < 0 || c.Interval > time.Minute {
		return fmt.Errorf("overload interval %s out of range 0..1m", c.Interval)
	}
	return nil
}

// Overload signals, the Signal of an OverloadReason.
const (
	SignalWriterQueue   = "writer_queue"
	SignalCommitLatency = "commit_latency"
	SignalReadyTasks    = "ready_tasks"
	SignalActiveRuns    = "active_runs"
	SignalActiveBytes   = "active_bytes"
)

// OverloadReason is one signal over its mark: Value now, Limit the limit
// (for commit_latency both in seconds).
type OverloadReason struct {
	Signal string  `json:"signal"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
}

// OverloadStatus is whether the engine refuses new runs, since when, and why.
type OverloadStatus struct {
	Overloaded bool
	Since      time.Time
	// Reasons are the signals over their low-water mark at the last sample
	// (the last such set while the engine waits out Hold).
	Reasons    []OverloadReason
	RetryAfter time.Duration
}

// ErrOverloaded: the engine is saturated and refuses new runs for now.
var ErrOverloaded = errors.New("overloaded")

// OverloadError is a start refused because the engine is overloaded. It
// wraps ErrOverloaded.
type OverloadError struct {
	Reasons    []OverloadReason
	RetryAfter time.Duration
}

func (e *OverloadError) Error() string {
	names := make([]string, len(e.Reasons))
	for i, r := range e.Reasons {
		names[i] = r.Signal
	}
	return "the engine is overloaded (" + strings.Join(names, ", ") + "); new runs are refused for now"
}

func (e *OverloadError) Unwrap() error { return ErrOverloaded }

// overload decides, from samples of the signals, whether new runs are
// refused. Safe for concurrent use.
type overload struct {
	cfg     OverloadConfig
	on      atomic.Bool // read by every start
	refused *metrics.Counter

	mu      sync.Mutex // protects the fields below
	since   time.Time  // when it became overloaded
	calm    time.Time  // while on: since when every signal is under its low-water mark; zero while one is over
	reasons []OverloadReason
}

func newOverload(cfg OverloadConfig, set *metrics.Set) *overload {
	cfg.withDefaults()
	o := &overload{cfg: cfg, refused: set.GetOrCreateCounter(`orchestrator_starts_refused_total{reason="overloaded"}`)}
	set.GetOrCreateGauge(`orchestrator_overloaded`, func() float64 {
		if o.on.Load() {
			return 1
		}
		return 0
	})
	return o
}

// sample is the signals' values at one instant.
type sample struct {
	writer     WriterLoad
	ready      int
	runs       int
	bytes      int64
	haveWriter bool
}

// over returns the signals over frac of their limit.
func (o *overload) over(s sample, frac float64) []OverloadReason {
	var out []OverloadReason
	check := func(signal string, v, limit float64) {
		if limit >= 0 && v > limit*frac {
			out = append(out, OverloadReason{Signal: signal, Value: v, Limit: limit})
		}
	}
	c := &o.cfg
	if s.haveWriter {
		check(SignalWriterQueue, float64(s.writer.QueuedEvents), float64(c.MaxWriterQueue))
		check(SignalCommitLatency, s.writer.CommitLatency.Seconds(), c.MaxCommitLatency.Seconds())
	}
	check(SignalReadyTasks, float64(s.ready), float64(c.MaxReadyTasks))
	check(SignalActiveRuns, float64(s.runs), float64(c.MaxActiveRuns))
	check(SignalActiveBytes, float64(s.bytes), float64(c.MaxActiveBytes))
	return out
}

// observe moves the state on from one sample taken at now: on when a signal
// passes its limit, off once every signal has stayed under its low-water
// mark for Hold. It reports whether the state changed.
func (o *overload) observe(s sample, now time.Time) (changed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.on.Load() {
		r := o.over(s, 1)
		if len(r) == 0 {
			return false
		}
		o.since, o.calm, o.reasons = now, time.Time{}, r
		o.on.Store(true)
		return true
	}
	if r := o.over(s, OverloadLowWater); len(r) > 0 {
		o.calm, o.reasons = time.Time{}, r
		return false
	}
	if o.calm.IsZero() {
		o.calm = now
	}
	if now.Sub(o.calm) < o.cfg.Hold {
		return false
	}
	o.on.Store(false)
	o.since, o.calm, o.reasons = time.Time{}, time.Time{}, nil
	return true
}

func (o *overload) status() OverloadStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	return OverloadStatus{Overloaded: o.on.Load(), Since: o.since, Reasons: append([]OverloadReason(nil), o.reasons...),
		RetryAfter: o.cfg.Hold}
}

// admitStart refuses a new run while the engine is overloaded.
func (e *Engine) admitStart() error {
	if !e.ov.on.Load() {
		return nil
	}
	st := e.ov.status()
	if !st.Overloaded {
		return nil // it just ended
	}
	e.ov.refused.Inc()
	return &OverloadError{Reasons: st.Reasons, RetryAfter: st.RetryAfter}
}

// Overload reports whether the engine refuses new runs for now, and why.
func (e *Engine) Overload() OverloadStatus { return e.ov.status() }

// CheckOverload samples the signals once and updates the overload state;
// the engine does it every OverloadConfig.Interval (overloadLoop), tests
// call it to step.
func (e *Engine) CheckOverload() {
	var s sample
	if lr, ok := e.store.(LoadReporter); ok {
		s.writer, s.haveWriter = lr.WriterLoad(), true
	}
	e.mu.Lock()
	s.ready, s.runs, s.bytes = e.m.queued, len(e.runs), e.heldBytes
	e.mu.Unlock()
	if e.ov.observe(s, time.Now()) {
		st := e.ov.status()
		if st.Overloaded {
			e.log.Warn("engine overloaded: refusing new runs", "reasons", st.Reasons)
		} else {
			e.log.Info("engine no longer overloaded: accepting new runs")
		}
	}
}

// overloadLoop samples the overload signals until Stop.
func (e *Engine) overloadLoop() {
	t := time.NewTicker(e.ov.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			e.CheckOverload()
		case <-e.quit:
			return
		}
	}
}

// holdBytes brings the engine's count of the payload bytes held by active
// runs up to date with rs. Called with e.mu held.
func (e *Engine) holdBytes(rs *runState) {
	d := rs.view.Run.DataBytes - rs.held
	rs.held += d
	e.heldBytes += d
}

// dropBytes takes a forgotten run's bytes out of the count.
func (e *Engine) dropBytes(rs *runState) {
	e.heldBytes -= rs.held
	rs.held = 0
}
