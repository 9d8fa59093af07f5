package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// plan returns the compiled plan of a definition version (0 = latest) and the
// exact version.
func (e *Engine) plan(ctx context.Context, tenantID, name string, version int) (*definition.Plan, int, error) {
	if version > 0 {
		if p := e.plans.get(tenantID, name, version); p != nil {
			return p, version, nil
		}
	}
	sd, err := e.store.GetDefinition(ctx, tenantID, name, version)
	if err != nil {
		return nil, 0, err
	}
	if p := e.plans.get(tenantID, sd.Name, sd.Version); p != nil {
		return p, sd.Version, nil
	}
	p, err := CompileStored(sd.Definition)
	if err != nil {
		return nil, 0, fmt.Errorf("definition %s v%d: %w", sd.Name, sd.Version, err)
	}
	e.plans.put(tenantID, sd.Name, sd.Version, p, len(sd.Definition))
	return p, sd.Version, nil
}

// CompileStored compiles a definition as the store (or an archive) holds it,
// for running or replaying the runs pinned to it: the engine, verify and the
// archive check all compile stored definitions here. A stored definition
// passed validation when it was registered; the handlers registered now may
// differ, which execution reports per task instead, so it is compiled
// without the engine's ValidateOptions. An invalid one returns a
// *definition.ValidationError.
func CompileStored(data []byte) (*definition.Plan, error) {
	def, problems := definition.ParseDefinition(data)
	var p *definition.Plan
	if len(problems) == 0 {
		p, problems = definition.Compile(def, definition.ValidateOptions{})
	}
	if len(problems) > 0 {
		return nil, &definition.ValidationError{Problems: problems}
	}
	return p, nil
}

// RegisterDefinition validates a definition and stores it as the next version
// of its name; an unchanged definition returns the latest version with created
// false. Invalid definitions return a *ValidationError, as do task types the
// tenant may not use (TenantGate); an unregistered tenant, when types are
// gated, an error wrapping ErrTenantNotFound.
func (e *Engine) RegisterDefinition(ctx context.Context, tenantID string, data []byte) (*StoredDefinition, bool, error) {
	return e.RegisterDefinitionBy(ctx, tenantID, data, Caller{})
}

// RegisterDefinitionBy is RegisterDefinition recording who asks: a new
// version keeps its caller, whom they acted for and the policy's decision.
func (e *Engine) RegisterDefinitionBy(ctx context.Context, tenantID string, data []byte, by Caller) (*StoredDefinition, bool, error) {
	sd, _, err := e.compileDefinition(ctx, tenantID, data)
	if err != nil {
		return nil, false, err
	}
	sd.CreatedBy, sd.OnBehalf, sd.Policy = by.Actor, by.OnBehalf, by.Policy
	return e.store.PutDefinition(ctx, sd)
}

// compileDefinition validates a definition, the task types the tenant may
// use included (TenantGate), and returns it as it would be stored
// (canonical JSON and its hash; no version yet) with its plan.
func (e *Engine) compileDefinition(ctx context.Context, tenantID string, data []byte) (*StoredDefinition, *definition.Plan, error) {
	def, plan, problems := definition.CompileJSON(data, e.ValidateOptions())
	if len(problems) > 0 {
		return nil, nil, &definition.ValidationError{Problems: problems}
	}
	if problems, err := e.gates(ctx, tenantID, def); err != nil {
		return nil, nil, err
	} else if len(problems) > 0 {
		return nil, nil, &definition.ValidationError{Problems: problems}
	}
	canonical, err := json.Marshal(def)
	if err != nil {
		return nil, nil, fmt.Errorf("encode definition: %w", err)
	}
	sum := sha256.Sum256(canonical)
	return &StoredDefinition{
		TenantID:   tenantID,
		Name:       def.Name,
		Definition: canonical,
		Hash:       hex.EncodeToString(sum[:]),
		CreatedAt:  e.clock(),
	}, plan, nil
}

// inlineVersion decides the version a run of an inline definition pins: the
// latest stored one when it is the same definition, else the next, which
// the run's own commit stores (returned as toStore).
func (e *Engine) inlineVersion(ctx context.Context, sd *StoredDefinition) (version int, toStore *StoredDefinition, err error) {
	latest, err := e.store.GetDefinition(ctx, sd.TenantID, sd.Name, 0)
	switch {
	case errors.Is(err, ErrNotFound):
		latest = &StoredDefinition{}
	case err != nil:
		return 0, nil, err
	case latest.Hash == sd.Hash:
		return latest.Version, nil, nil
	}
	next := *sd
	next.Version = latest.Version + 1
	return next.Version, &next, nil
}
