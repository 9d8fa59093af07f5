package tasks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine"
)

// CodeThrottled is the error code of an attempt deferred by an adaptive
// limit: no slot became free in time, or the target asked for a pause.
const CodeThrottled = "throttled"

// maxLimiters bounds the limiters kept at once: tasks naming ever new hosts
// must not grow memory and /metrics without end.
const maxLimiters = 4096

// AdaptiveLimits holds the adaptive concurrency limiters of one kind of key
// (target hosts, or tenants' task types), created on first use. It is safe
// for concurrent use.
type AdaptiveLimits struct {
	cfg    AdaptiveConfig // with defaults
	prefix string         // of every key: "http:", "task_type:"
	set    *metrics.Set   // may be nil

	mu    sync.Mutex // protects byKey
	byKey map[string]*limiter
}

// NewAdaptiveLimits returns the limiters whose keys start with prefix, or
// nil (which limits nothing) when cfg is not Enabled. With a metrics set,
// each key has the gauges orchestrator_adaptive_limit{key},
// orchestrator_adaptive_inflight{key}, orchestrator_adaptive_waiting{key}
// and the counter orchestrator_adaptive_drops_total{key} (calls that
// reported overload), key being prefix + the key.
func NewAdaptiveLimits(prefix string, cfg AdaptiveConfig, set *metrics.Set) (*AdaptiveLimits, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &AdaptiveLimits{cfg: cfg.withDefaults(), prefix: prefix, set: set, byKey: map[string]*limiter{}}, nil
}

// get returns the limiter of key, creating it and its metrics if needed.
// When maxLimiters are kept and none is idle, a new key gets a limiter that
// is not kept.
func (a *AdaptiveLimits) get(key string) *limiter {
	key = a.prefix + key
	a.mu.Lock()
	defer a.mu.Unlock()
	if l := a.byKey[key]; l != nil {
		return l
	}
	if len(a.byKey) >= maxLimiters {
		a.forgetIdleLocked()
	}
	l := newLimiter(a.cfg, time.Now)
	if len(a.byKey) >= maxLimiters {
		return l
	}
	a.byKey[key] = l
	if a.set != nil {
		for _, m := range adaptiveMetrics {
			a.set.GetOrCreateGauge(metricName(m.name, key), func() float64 { return m.read(l) })
		}
	}
	return l
}

// adaptiveMetrics are the series of each limiter. The drops counter is a
// gauge over the limiter's own count, which VictoriaMetrics/metrics
// exposes as it does a counter; the _total suffix says what it is.
var adaptiveMetrics = []struct {
	name string
	read func(*limiter) float64
}{
	{"orchestrator_adaptive_limit", func(l *limiter) float64 { v, _, _, _ := l.state(); return float64(v) }},
	{"orchestrator_adaptive_inflight", func(l *limiter) float64 { _, v, _, _ := l.state(); return float64(v) }},
	{"orchestrator_adaptive_waiting", func(l *limiter) float64 { _, _, v, _ := l.state(); return float64(v) }},
	{"orchestrator_adaptive_drops_total", func(l *limiter) float64 { _, _, _, v := l.state(); return float64(v) }},
}

func metricName(name, key string) string {
	return fmt.Sprintf(`%s{key="%s"}`, name, labelEscaper.Replace(key))
}

// forgetIdleLocked drops every idle limiter and its metrics: what it
// learned is lost, which a target nobody calls can afford. Called with
// a.mu held.
func (a *AdaptiveLimits) forgetIdleLocked() {
	for key, l := range a.byKey {
		if !l.idle() {
			continue
		}
		delete(a.byKey, key)
		if a.set != nil {
			for _, m := range adaptiveMetrics {
				a.set.UnregisterMetric(metricName(m.name, key))
			}
		}
	}
}

// Limit returns the current limit of key (without the prefix), the calls
// it lets through at once, and false when the key has no limiter.
func (a *AdaptiveLimits) Limit(key string) (int, bool) {
	if a == nil {
		return 0, false
	}
	a.mu.Lock()
	l := a.byKey[a.prefix+key]
	a.mu.Unlock()
	if l == nil {
		return 0, false
	}
	limit, _, _, _ := l.state()
	return limit, true
}

// acquire takes a slot of key for an attempt whose context is ctx. When
// none is free within MaxWait, or a Retry-After pause outlasts what the
// attempt may wait, the attempt is deferred: engine.Deferred with reason
// engine.ReasonThrottled, which frees the worker and is not charged to the
// retry budget. A nil AdaptiveLimits returns a nil permit, which limits
// nothing.
func (a *AdaptiveLimits) acquire(ctx context.Context, key string) (*permit, error) {
	if a == nil {
		return nil, nil
	}
	p, err := a.get(key).acquire(ctx, a.cfg.MaxWait)
	var we *waitError
	if errors.As(err, &we) {
		return nil, engine.Deferred(engine.ReasonThrottled, we.retryIn,
			&engine.TaskError{Code: CodeThrottled, Message: fmt.Sprintf("adaptive concurrency limit of %s: %s", key, we.Error())})
	}
	return p, err
}
