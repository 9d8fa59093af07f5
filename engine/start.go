package engine

// Starting a run: the request, idempotent replays, admission and the
// run's first commit.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// StartRequest asks for a new run of a stored definition.
type StartRequest struct {
	TenantID string
	Workflow string
	Version  int // 0 = latest
	Input    json.RawMessage
	// By is who asks: its events record it (the zero Caller: the engine).
	By Caller
	// Definition, when set instead of Workflow, is an inline definition: it
	// is validated, and stored as the next version of its name (unless it
	// equals the latest) in the same commit as the run and its idempotency
	// key, so that a refused or lost start leaves no definition behind.
	Definition json.RawMessage
	// IdempotencyKey, when set, makes a repeated request return the run the
	// first one started; RequestHash identifies what was asked, so that the
	// same key with a different request is refused.
	IdempotencyKey string
	RequestHash    string
	// Origin is what started the run when it is not a direct call (a
	// schedule's slot, a webhook delivery, a stream message); Alias the
	// alias Version was chosen by. run.created records both.
	Origin *Origin
	Alias  string
	// scheduleFunc, for a schedule's run, makes the schedule's change the
	// run's commit writes too (the slot recorded as fired).
	scheduleFunc func(runID string) (*ScheduleChange, error)
	// idemRelease ends the claim on IdempotencyKey once the start is
	// durable or refused.
	idemRelease func()
}

// ErrIdempotencyMismatch: an idempotency key was used before for a different request.
var ErrIdempotencyMismatch = errors.New("idempotency key reused for a different request")

// StartRun records a new run and returns it once it is durable. Its tasks are
// dispatched from then on. It returns ErrNotFound for an unknown
func (e *Engine) StartRun(ctx context.Context, req StartRequest) (*Run, error) {
	run, _, err := e.StartRunIdempotent(ctx, req)
	return run, err
}

// StartRunIdempotent is StartRun that also reports whether the run was
// started by an earlier request with the same idempotency key. While the
// engine is overloaded it refuses new runs with an *OverloadError (a
// request whose idempotency key started a run still gets that run).
func (e *Engine) StartRunIdempotent(ctx context.Context, req StartRequest) (run *Run, replayed bool, err error) {
	if req.IdempotencyKey != "" {
		if run, err := e.replay(ctx, req); !errors.Is(err, ErrNotFound) {
			return run, err == nil, err
		}
	}
	if err := e.admitStart(); err != nil {
		return nil, false, err
	}
	for try := 0; ; try++ {
		if req.IdempotencyKey != "" {
			// One start per key at a time: a copy waits for the first to
			// be durable or refused, then replays its run.
			release, waited, err := e.idem.claim(ctx, req.TenantID, req.IdempotencyKey)
			if err != nil {
				return nil, false, err
			}
			if waited {
				if run, err := e.replay(ctx, req); !errors.Is(err, ErrNotFound) {
					release()
					return run, err == nil, err
				}
			}
			req.idemRelease = release
		}
		run, err = e.newRun(ctx, req)
		if err == nil || !errors.Is(err, ErrConflict) {
			return run, false, err
		}
		if req.IdempotencyKey != "" {
			// Another request with the same key may have won the race.
			if run, err := e.replay(ctx, req); !errors.Is(err, ErrNotFound) {
				return run, err == nil, err
			}
		}
		if len(req.Definition) == 0 || try == maxInlineTries-1 {
			return nil, false, err
		}
		// Another start or registration took the version this inline
		// definition was to get: decide again.
	}
}

// maxInlineTries bounds how often a start with an inline definition decides
// its version again after losing it to a concurrent registration.
const maxInlineTries = 5

// replay returns the run an idempotency key started, ErrNotFound if none did.
func (e *Engine) replay(ctx context.Context, req StartRequest) (*Run, error) {
	runID, hash, err := e.store.FindIdempotencyKey(ctx, req.TenantID, req.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	if hash != req.RequestHash {
		return nil, fmt.Errorf("idempotency key %q: %w", req.IdempotencyKey, ErrIdempotencyMismatch)
	}
	run, _, err := e.store.LoadRun(ctx, req.TenantID, runID)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("idempotency key %q names run %s, which is gone: %w", req.IdempotencyKey, runID, ErrConflict)
	}
	return run, err
}

func (e *Engine) newRun(ctx context.Context, req StartRequest) (*Run, error) {
	// The claim on the idempotency key ends with the commit, or on return
	// when no commit was made.
	release := req.idemRelease
	if release == nil {
		release = func() {}
	}
	committing := false
	defer func() {
		if !committing {
			release()
		}
	}()
	if len(req.Input) > 0 && !json.Valid(req.Input) {
		return nil, &definition.ValidationError{Problems: []definition.Problem{{Field: "input", Message: "must be valid JSON"}}}
	}
	if err := strictjson.CheckDepth(req.Input); err != nil {
		return nil, &definition.ValidationError{Problems: []definition.Problem{{Field: "input", Message: err.Error()}}}
	}
	if req.Origin != nil {
		if err := req.Origin.Validate(); err != nil {
			return nil, &definition.ValidationError{Problems: []definition.Problem{{Field: "origin", Message: err.Error()}}}
		}
	}
	if req.Alias != "" && !definition.ValidName(req.Alias) {
		return nil, &definition.ValidationError{Problems: []definition.Problem{{Field: "alias", Message: "must match [A-Za-z0-9_.-]{1,64}"}}}
	}
	quotas, err := e.quotasFor(ctx, req.TenantID)
	if err != nil {
		return nil, err
	}
	if quotas.MaxInputBytes > 0 && int64(len(req.Input)) > quotas.MaxInputBytes {
		err := &QuotaError{Quota: QuotaMaxInputBytes, Limit: float64(quotas.MaxInputBytes),
			Message: fmt.Sprintf("input: %d bytes, over the tenant's max_input_bytes of %d", len(req.Input), quotas.MaxInputBytes)}
		e.m.startRefused(err)
		return nil, err
	}
	id := NewRunID(e.clock())
	if len(req.Definition) == 0 && isWorkflowRef(req.Workflow) {
		// "name@alias", "name@N": the alias picks by the run's id unless
		// it has a sticky key.
		if err := e.resolveStart(ctx, &req, id); err != nil {
			return nil, err
		}
	}
	var plan *definition.Plan
	var version int
	var toStore *StoredDefinition
	if len(req.Definition) > 0 {
		sd, p, err := e.compileDefinition(ctx, req.TenantID, req.Definition)
		if err != nil {
			return nil, err
		}
		sd.CreatedBy, sd.OnBehalf, sd.Policy = req.By.Actor, req.By.OnBehalf, req.By.Policy
		if version, toStore, err = e.inlineVersion(ctx, sd); err != nil {
			return nil, err
		}
		plan = p
	} else {
		var err error
		if plan, version, err = e.plan(ctx, req.TenantID, req.Workflow, req.Version); err != nil {
			return nil, err
		}
	}
	if isNullJSON(req.Input) {
		req.Input = nil
	}
	var key string
	if c := plan.Concurrency; c != nil {
		if key, err = definition.RenderKey(c.Key, req.Input); err != nil {
			return nil, &FieldError{Field: "input", Reason: err.Error()}
		}
	}
	// The start rate is charged last, so that a request refused for what
	// it holds costs no token; a start refused below gives it back.
	reservation, err := e.limits.take(req.TenantID, quotas, e.now())
	if err != nil {
		e.m.startRefused(err)
		return nil, err
	}
	e.mu.Lock()
	// refuse unlocks and gives the start back its token.
	refuse := func(err error) (*Run, error) {
		e.mu.Unlock()
		e.limits.giveBack(reservation)
		return nil, err
	}
	if e.stopping {
		return refuse(ErrClosed)
	}
	rs := e.newRunState(req.TenantID, id, NewRunView(plan))
	rs.view.Run.Workflow, rs.ckey = plan.Def.Name, key
	adm, err := e.admit(rs, quotas)
	if err != nil {
		e.m.startRefused(err)
		return refuse(err)
	}
	b := e.newBatchBy(rs, req.By)
	if !adm.start {
		b.now = e.parkedAt(b.now)
	}
	b.insert = true
	b.idemKey, b.idemHash = req.IdempotencyKey, req.RequestHash
	b.definition = toStore
	if req.scheduleFunc != nil {
		sch, err := req.scheduleFunc(id)
		if err != nil {
			return refuse(err)
		}
		b.schedule = sch
	}
	if !b.add(EventRunCreated, -1, 0, &EventData{Workflow: plan.Def.Name, Version: version, Input: req.Input,
		Origin: req.Origin, Alias: req.Alias, ConcurrencyKey: key}) {
		return refuse(fmt.Errorf("start run of %s: the engine refused run.created (see the log): %w", plan.Def.Name, ErrInvalidTransition))
	}
	batches := []*batch{b}
	if adm.victim != nil {
		batches = []*batch{e.supersede(adm.victim, id), b}
	}
	if adm.start {
		e.startRun(b, EventRunStarted)
	} else {
		e.park(rs)
	}
	e.runs[id] = rs
	done := make(chan error, 1)
	committing = true
	commitTogether(func(err error) {
		release()
		done <- err
	}, batches...)
	e.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			e.limits.giveBack(reservation)
			return nil, err
		}
	case <-ctx.Done():
		// The run may still become durable; the caller cannot know its id.
		return nil, ctx.Err()
	}
	if toStore != nil {
		e.plans.put(toStore.TenantID, toStore.Name, toStore.Version, plan, len(toStore.Definition))
	}
	e.mu.Lock()
	run := rs.view.Run
	e.mu.Unlock()
	return &run, nil
}
