package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// WithAdaptiveLimit wraps an in-process handler in adaptive concurrency
// limits, one per tenant and task type (key "task_type:TENANT/TYPE"): an
// attempt takes a slot of its tenant's limit before the handler runs, and
// waits in line for one (first come first served, at most
// AdaptiveConfig.MaxWait and while its context lasts, holding its worker
// meanwhile) when the limit is reached; an attempt that could not get one
// in time is deferred (reason throttled, not charged to the retry budget).
// The handler's answers move the limit: the latency of a success counts; an
// attempt that timed out, or an error made with engine.RetryAfter, reports
// overload, and the RetryAfter wait pauses the tenant's type; other errors
// say nothing. With nil limits it returns h.
func WithAdaptiveLimit(typ string, h engine.Handler, limits *AdaptiveLimits) engine.Handler {
	if limits == nil {
		return h
	}
	tl := &typeLimit{typ: typ, inner: h, limits: limits}
	if g, ok := h.(engine.TenantGate); ok {
		return &gatedLimit{typeLimit: tl, gate: g}
	}
	return tl
}

type typeLimit struct {
	typ    string
	inner  engine.Handler
	limits *AdaptiveLimits
}

// gatedLimit is the limit of a handler only some tenants may use: it keeps
// the handler's engine.TenantGate.
type gatedLimit struct {
	*typeLimit
	gate engine.TenantGate
}

// AllowedFor passes through to the wrapped handler.
func (g *gatedLimit) AllowedFor(tenantID string, s engine.TenantSettings) string {
	return g.gate.AllowedFor(tenantID, s)
}

// Run implements engine.Handler.
func (t *typeLimit) Run(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
	p, err := t.limits.acquire(ctx, a.TenantID+"/"+t.typ)
	if err != nil {
		return nil, err
	}
	// A panic releases the slot too (the engine recovers it), saying nothing.
	s, retryAfter := signalIgnore, time.Duration(0)
	defer func() { p.release(s, retryAfter) }()
	out, err := t.inner.Run(ctx, a)
	d, asked := engine.RetryAfterOf(err)
	switch {
	case err == nil:
		s = signalSample
	case errors.Is(ctx.Err(), context.DeadlineExceeded), asked:
		s, retryAfter = signalOverload, d
	}
	return out, err
}

// ValidateConfig passes through to the wrapped handler.
func (t *typeLimit) ValidateConfig(config json.RawMessage) []definition.Problem {
	if v, ok := t.inner.(engine.ConfigValidator); ok {
		return v.ValidateConfig(config)
	}
	return nil
}
