package tasks

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"
)

// openBreaker returns key's breaker after one failure, which opens it when
// Failures is 1.
func openBreaker(t *testing.T, bs *breakers, key breakerKey) {
	t.Helper()
	done, err := bs.get(key).cb.Allow()
	if err != nil {
		t.Fatalf("breaker %v: %v", key, err)
	}
	done(errHostFailed)
}

// metricsText is what /metrics would show of set.
func metricsText(set *metrics.Set) string {
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	return buf.String()
}

func TestBreakers_Bounded(t *testing.T) {
	t.Parallel()

	t.Run("closed breakers make room for new ones, open ones are kept", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		set := metrics.NewSet()
		bs := newBreakers("http_host", "", BreakerConfig{Failures: 1, OpenFor: DefaultBreakerOpenFor, TargetMetrics: true}, set)
		down := breakerKey{tenant: "acme", name: "down.example:443"}
		openBreaker(t, bs, down)
		for i := 0; i < maxBreakers+10; i++ {
			bs.get(breakerKey{tenant: fmt.Sprintf("t%d", i%3), name: fmt.Sprintf("host-%d.example:443", i)})
		}
		is.True(len(bs.byKey) <= maxBreakers)                                                         // bounded
		is.Equal(bs.state(down).String(), "open")                                                     // an open breaker is kept
		is.True(strings.Count(metricsText(set), "orchestrator_circuit_breaker_state") <= maxBreakers) // and so are the gauges
	})

	t.Run("when every kept breaker is open, new ones are not kept", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		bs := newBreakers("http_host", "", BreakerConfig{Failures: 1, OpenFor: DefaultBreakerOpenFor}, nil)
		for i := 0; i < maxBreakers+10; i++ {
			openBreaker(t, bs, breakerKey{tenant: "noisy", name: fmt.Sprintf("host-%d.example:443", i)})
		}
		is.Equal(len(bs.byKey), maxBreakers) // still bounded
	})
}

func TestBreakers_Metrics(t *testing.T) {
	t.Parallel()

	t.Run("by default the gauge counts open breakers without naming tenants or hosts", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		set := metrics.NewSet()
		bs := newBreakers("http_host", "", BreakerConfig{Failures: 1, OpenFor: DefaultBreakerOpenFor}, set)
		openBreaker(t, bs, breakerKey{tenant: "acme", name: "secret-partner.example:443"})
		bs.get(breakerKey{tenant: "globex", name: "other.example:443"}) // closed
		text := metricsText(set)
		is.True(strings.Contains(text, `orchestrator_circuit_breakers_open{kind="http_host"} 1`)) // one open
		is.True(!strings.Contains(text, "secret-partner"))                                        // no host
		is.True(!strings.Contains(text, "acme"))                                                  // no tenant
		is.True(!strings.Contains(text, "orchestrator_circuit_breaker_state"))                    // no gauge per breaker
	})

	t.Run("with TargetMetrics each breaker has a gauge naming its tenant and target", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		set := metrics.NewSet()
		bs := newBreakers("http_host", "", BreakerConfig{Failures: 1, OpenFor: DefaultBreakerOpenFor, TargetMetrics: true}, set)
		openBreaker(t, bs, breakerKey{tenant: "acme", name: "partner.example:443"})
		is.True(strings.Contains(metricsText(set), `orchestrator_circuit_breaker_state{kind="http_host",tenant="acme",name="partner.example:443"} 2`)) // open
	})
}
