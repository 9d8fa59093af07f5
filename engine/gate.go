package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// TenantGate is implemented by the handlers of task types that only the
// tenants an admin allowed may use (exec: the tenant setting allow_exec).
// With Config.TenantFunc set, RegisterDefinition refuses a definition with
// such a task for any other tenant, and an attempt of one fails permanently
// (its definition was stored before the setting was withdrawn).
type TenantGate interface {
	// AllowedFor returns "" when the tenant, with its settings, may use
	// the handler's type, else why not, naming the setting.
	AllowedFor(tenantID string, s TenantSettings) string
}

// CodeTypeNotAllowed is the error of an attempt whose task type its
// tenant may not use (TenantGate).
const CodeTypeNotAllowed = "type_not_allowed"

// gates returns the problems of the tasks of def that tenantID may not use,
// reading the tenant only when a task's type is gated.
func (e *Engine) gates(ctx context.Context, tenantID string, def *definition.Definition) ([]definition.Problem, error) {
	if e.tenantFunc == nil {
		return nil, nil
	}
	var t *Tenant
	var problems []definition.Problem
	for _, td := range def.Tasks {
		g, ok := e.handlers[td.Type].(TenantGate)
		if !ok {
			continue
		}
		if t == nil {
			var err error
			if t, err = e.tenantFunc(ctx, tenantID); err != nil {
				return nil, fmt.Errorf("tenant %s: %w", tenantID, err)
			}
		}
		if msg := g.AllowedFor(tenantID, t.Settings); msg != "" {
			problems = append(problems, definition.Problem{Task: td.ID, Field: "type", Message: msg})
		}
	}
	return problems, nil
}

// gateAttempt returns the outcome of an attempt its tenant may not make, or
// nil when it may run.
func (e *Engine) gateAttempt(ctx context.Context, h Handler, tenantID string) *outcome {
	g, ok := h.(TenantGate)
	if !ok || e.tenantFunc == nil {
		return nil
	}
	t, err := e.tenantFunc(ctx, tenantID)
	switch {
	case errors.Is(err, ErrNotFound):
		o := failed(CodeTypeNotAllowed, fmt.Sprintf("tenant %s is not registered", tenantID), ReasonPermanent)
		o.permanent = true
		return &o
	case err != nil:
		o := failed("tenant_unreadable", "reading the tenant's settings: "+err.Error(), ReasonError)
		return &o
	}
	if msg := g.AllowedFor(tenantID, t.Settings); msg != "" {
		o := failed(CodeTypeNotAllowed, msg, ReasonPermanent)
		o.permanent = true
		return &o
	}
	return nil
}
