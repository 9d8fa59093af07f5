package tasks

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// WithBreaker wraps an in-process handler in circuit breakers for its task
// type, one per tenant: after Failures retryable failures in a row of one
// tenant's attempts, that tenant's breaker opens and its attempts are not
// made but deferred (recorded as task.attempt_failed with reason
// circuit_open, not charged to the retry budget) until OpenFor has passed and
// a probe succeeds; other tenants' attempts go on. Permanent failures and
// cancellations do not count: they say nothing about the health of what the
// handler calls. The gauge
// orchestrator_circuit_breakers_open{kind="task_type",type} counts the
// tenants whose breaker is not closed; with cfg.TargetMetrics each breaker's
// state is orchestrator_circuit_breaker_state{kind="task_type",tenant,name}.
func WithBreaker(typ string, h engine.Handler, cfg BreakerConfig, set *metrics.Set) engine.Handler {
	cfg.Failures = orDefault(cfg.Failures, DefaultBreakerFailures)
	cfg.OpenFor = orDefault(cfg.OpenFor, DefaultBreakerOpenFor)
	labels := fmt.Sprintf(`,type="%s"`, labelEscaper.Replace(typ))
	tb := &typeBreaker{typ: typ, inner: h, cfg: cfg, bs: newBreakers("task_type", labels, cfg, set)}
	if g, ok := h.(engine.TenantGate); ok {
		return &gatedBreaker{typeBreaker: tb, gate: g}
	}
	return tb
}

// gatedBreaker is the breaker of a handler only some tenants may use: it
// keeps the handler's engine.TenantGate.
type gatedBreaker struct {
	*typeBreaker
	gate engine.TenantGate
}

// AllowedFor passes through to the wrapped handler.
func (g *gatedBreaker) AllowedFor(tenantID string, s engine.TenantSettings) string {
	return g.gate.AllowedFor(tenantID, s)
}

type typeBreaker struct {
	typ   string
	inner engine.Handler
	cfg   BreakerConfig
	bs    *breakers
}

// Run implements engine.Handler.
func (t *typeBreaker) Run(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
	b := t.bs.get(breakerKey{tenant: a.TenantID, name: t.typ})
	done, err := b.cb.Allow()
	if err != nil {
		return nil, engine.Deferred(engine.ReasonCircuitOpen, b.remaining(t.cfg.OpenFor),
			&engine.TaskError{Code: engine.ReasonCircuitOpen, Message: "the circuit breaker of task type " + t.typ + " is open"})
	}
	out, err := t.inner.Run(ctx, a)
	switch _, _, deferred := engine.DeferredOf(err); {
	case err == nil:
		done(nil)
	case ctx.Err() != nil, engine.IsPermanent(err), deferred:
		done(errNotCounted)
	default:
		done(errHostFailed)
	}
	return out, err
}

// ValidateConfig passes through to the wrapped handler.
func (t *typeBreaker) ValidateConfig(config json.RawMessage) []definition.Problem {
	if v, ok := t.inner.(engine.ConfigValidator); ok {
		return v.ValidateConfig(config)
	}
	return nil
}

// State returns the state of tenant's breaker: "closed", "half-open" or
// "open".
func (t *typeBreaker) State(tenant string) string {
	return t.bs.state(breakerKey{tenant: tenant, name: t.typ}).String()
}
