package tasks

import (
	"context"
	"encoding/json"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine"
)

// WithBreaker wraps an in-process handler in a circuit breaker for its task
// type: after Failures retryable failures in a row the breaker opens and
// attempts are not made but deferred (recorded as task.attempt_failed with
// reason circuit_open, not charged to the retry budget) until OpenFor has
// passed and a probe succeeds. Permanent failures and cancellations do not
// count: they say nothing about the health of what the handler calls. The
// state is the gauge orchestrator_circuit_breaker_state{kind="task_type"}.
func WithBreaker(typ string, h engine.Handler, cfg BreakerConfig, set *metrics.Set) engine.Handler {
	cfg.Failures = orDefault(cfg.Failures, DefaultBreakerFailures)
	cfg.OpenFor = orDefault(cfg.OpenFor, DefaultBreakerOpenFor)
	return &typeBreaker{typ: typ, inner: h, cfg: cfg, bs: newBreakers("task_type", cfg, set)}
}

type typeBreaker struct {
	typ   string
	inner engine.Handler
	cfg   BreakerConfig
	bs    *breakers
}

// Run implements engine.Handler.
func (t *typeBreaker) Run(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
	b := t.bs.get(t.typ)
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
func (t *typeBreaker) ValidateConfig(config json.RawMessage) []engine.Problem {
	if v, ok := t.inner.(engine.ConfigValidator); ok {
		return v.ValidateConfig(config)
	}
	return nil
}

// State returns the breaker's state: "closed", "half-open" or "open".
func (t *typeBreaker) State() string { return t.bs.state(t.typ).String() }
