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

// BreakerConfig configures the circuit breaker the http task keeps per target
// host, so that a host that keeps failing is left alone for a while instead of
// being hammered by every task that names it.
type BreakerConfig struct {
	// Failures is how many retryable failures in a row (connection errors,
	// timeouts, 5xx, 429) open the breaker; default DefaultBreakerFailures.
	Failures uint32
	// OpenFor is how long an open breaker holds requests back before letting
	// one through to probe the host; default DefaultBreakerOpenFor.
	OpenFor time.Duration
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

// breaker is the circuit breaker of one host:port.
type breaker struct {
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	openedAt atomic.Int64 // unix nanoseconds of the last change to open
}

// breakers holds one breaker per host:port, created on first use.
type breakers struct {
	kind string // "http_host" or "task_type": the metric label
	cfg  BreakerConfig
	set  *metrics.Set // may be nil

	mu     sync.Mutex // protects byHost
	byHost map[string]*breaker
}

func newBreakers(kind string, cfg BreakerConfig, set *metrics.Set) *breakers {
	return &breakers{kind: kind, cfg: cfg, set: set, byHost: make(map[string]*breaker)}
}

// get returns the breaker of key, creating it (and its gauge) if needed.
func (bs *breakers) get(key string) *breaker {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b := bs.byHost[key]; b != nil {
		return b
	}
	if len(bs.byHost) >= maxBreakers {
		bs.forgetClosed()
	}
	b := &breaker{}
	failures := bs.cfg.Failures
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        key,
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
	bs.byHost[key] = b
	if bs.set != nil {
		// Closed 0, half-open 1, open 2: gobreaker's State values.
		bs.set.GetOrCreateGauge(breakerGaugeName(bs.kind, key), func() float64 { return float64(b.cb.State()) })
	}
	return b
}

// maxBreakers bounds the breakers kept at once: tasks naming ever new hosts
// must not grow memory and /metrics without end.
const maxBreakers = 4096

// forgetClosed drops every closed breaker (a closed breaker holds nothing a
// fresh one would not) and its gauge. Called with bs.mu held.
func (bs *breakers) forgetClosed() {
	for key, b := range bs.byHost {
		if b.cb.State() == gobreaker.StateClosed {
			delete(bs.byHost, key)
			if bs.set != nil {
				bs.set.UnregisterMetric(breakerGaugeName(bs.kind, key))
			}
		}
	}
}

// state returns the state of key's breaker; a host never contacted is closed.
func (bs *breakers) state(key string) gobreaker.State {
	bs.mu.Lock()
	b := bs.byHost[key]
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

func breakerGaugeName(kind, key string) string {
	return fmt.Sprintf(`orchestrator_circuit_breaker_state{kind="%s",name="%s"}`, kind, labelEscaper.Replace(key))
}
