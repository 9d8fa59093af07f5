package tasks

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sony/gobreaker/v2"
)

// BreakerConfig configures circuit breakers: per tenant and target host for
// the http task, per tenant and task type for WithBreaker, so that a target
// that keeps failing is left alone for a while instead of being hammered by
// every task that names it, and one tenant's failures never hold back
// another's calls.
type BreakerConfig struct {
	// Failures is how many retryable failures in a row (connection errors,
	// timeouts, 5xx, 429) open the breaker; default DefaultBreakerFailures.
	Failures uint32
	// OpenFor is how long an open breaker holds requests back before letting
	// one through to probe the host; default DefaultBreakerOpenFor.
	OpenFor time.Duration
	// TargetMetrics adds a gauge per breaker,
	// orchestrator_circuit_breaker_state{kind,tenant,name}, whose labels name
	// the tenant and its target (host:port or task type). Off by default:
	// the labels would show every tenant's targets to whoever reads
	// /metrics. Either way the gauge orchestrator_circuit_breakers_open
	// counts the breakers not closed, without tenant or host.
	TargetMetrics bool
}

// Breaker defaults.
const (
	// DefaultBreakerFailures is how many retryable failures in a row open a
	// host's breaker when BreakerConfig does not say.
	DefaultBreakerFailures = 5
	// DefaultBreakerOpenFor is how long an open breaker holds requests back
	// when BreakerConfig does not say.
	DefaultBreakerOpenFor = 30 * time.Second
)

// Outcomes a request reports to its breaker.
var (
	// errHostFailed counts against the host: it may be down or overloaded.
	errHostFailed = errors.New("host failed")
	// errNotCounted is neither success nor failure: the request was refused
	// before reaching the host, or cancelled.
	errNotCounted = errors.New("not counted")
)

// breakerKey names one breaker: a tenant's host:port or task type.
type breakerKey struct {
	tenant, name string
}

// breaker is the circuit breaker of one tenant's target.
type breaker struct {
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	openedAt atomic.Int64 // unix nanoseconds of the last change to open
}

// breakers holds one breaker per key, created on first use, at most
// maxBreakers at once.
type breakers struct {
	kind string // "http_host" or "task_type": the metric label
	cfg  BreakerConfig
	set  *metrics.Set // may be nil

	mu    sync.Mutex // protects byKey
	byKey map[breakerKey]*breaker
}

// newBreakers returns an empty set of breakers. With a metrics set it
// registers the gauge orchestrator_circuit_breakers_open{kind} plus labels
// (a task type's name, say), so each set of breakers needs its own labels.
func newBreakers(kind string, labels string, cfg BreakerConfig, set *metrics.Set) *breakers {
	bs := &breakers{kind: kind, cfg: cfg, set: set, byKey: make(map[breakerKey]*breaker)}
	if set != nil {
		name := fmt.Sprintf(`orchestrator_circuit_breakers_open{kind="%s"%s}`, kind, labels)
		set.GetOrCreateGauge(name, func() float64 { return float64(bs.notClosed()) })
	}
	return bs
}

// notClosed counts the breakers open or half-open.
func (bs *breakers) notClosed() int {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	n := 0
	for _, b := range bs.byKey {
		if b.cb.State() != gobreaker.StateClosed {
			n++
		}
	}
	return n
}

// get returns the breaker of key, creating it (and its gauge) if needed.
// When maxBreakers are open at once, a new key gets a breaker that is not
// kept: its target goes unguarded rather than memory growing without end.
func (bs *breakers) get(key breakerKey) *breaker {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b := bs.byKey[key]; b != nil {
		return b
	}
	if len(bs.byKey) >= maxBreakers {
		bs.forgetClosed()
	}
	b := &breaker{}
	failures := bs.cfg.Failures
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        key.name,
		MaxRequests: 1,
		Timeout:     bs.cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openedAt.Store(time.Now().UnixNano())
			}
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errNotCounted) },
	})
	if len(bs.byKey) >= maxBreakers {
		return b
	}
	bs.byKey[key] = b
	if bs.set != nil && bs.cfg.TargetMetrics {
		// Closed 0, half-open 1, open 2: gobreaker's State values.
		bs.set.GetOrCreateGauge(bs.gaugeName(key), func() float64 { return float64(b.cb.State()) })
	}
	return b
}

// maxBreakers bounds the breakers kept at once, over all tenants: tasks
// naming ever new hosts must not grow memory and /metrics without end.
const maxBreakers = 4096

// forgetClosed drops every closed breaker (a closed breaker holds nothing a
// fresh one would not) and its gauge. Called with bs.mu held.
func (bs *breakers) forgetClosed() {
	for key, b := range bs.byKey {
		if b.cb.State() == gobreaker.StateClosed {
			delete(bs.byKey, key)
			if bs.set != nil && bs.cfg.TargetMetrics {
				bs.set.UnregisterMetric(bs.gaugeName(key))
			}
		}
	}
}

// state returns the state of key's breaker; a target never called is closed.
func (bs *breakers) state(key breakerKey) gobreaker.State {
	bs.mu.Lock()
	b := bs.byKey[key]
	bs.mu.Unlock()
	if b == nil {
		return gobreaker.StateClosed
	}
	return b.cb.State()
}

// remaining is how long b stays open, or OpenFor when that is unknown or
// over (half-open with its probe under way).
func (b *breaker) remaining(openFor time.Duration) time.Duration {
	if at := b.openedAt.Load(); at != 0 {
		if d := time.Until(time.Unix(0, at).Add(openFor)); d > 0 {
			return d
		}
	}
	return openFor
}

// labelEscaper escapes a Prometheus label value.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// gaugeName is the name of key's state gauge, with TargetMetrics.
func (bs *breakers) gaugeName(key breakerKey) string {
	return fmt.Sprintf(`orchestrator_circuit_breaker_state{kind="%s",tenant="%s",name="%s"}`,
		bs.kind, labelEscaper.Replace(key.tenant), labelEscaper.Replace(key.name))
}
