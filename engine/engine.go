package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// DefaultWorkers is the size of the worker pool running in-process handlers.
const DefaultWorkers = 4

// Log keys.
const (
	logRun    = "run_id"
	logTask   = "task_id"
	logTenant = "tenant_id"
	logErr    = "err"
)

// MaxOutputBytes caps the output of one task attempt, the resolved input of
// a task and the output of a run.
const MaxOutputBytes = 1 << 20

// DefaultMaxRunBytes is the default of Config.MaxRunBytes.
const DefaultMaxRunBytes = 64 << 20

// DefaultMaxAbandoned is the default of Config.MaxAbandoned.
const DefaultMaxAbandoned = 3

// Config configures an Engine. The zero value of every field but Store has a
// working default.
type Config struct {
	Store   Store
	Workers int // in-process attempts at once; default DefaultWorkers
	Logger  *slog.Logger
	Metrics *metrics.Set     // where engine metrics are registered; default a private set
	NowFunc func() time.Time // default time.Now
	// ExternalTypes accepts definitions whose task types have no handler here;
	// their tasks wait, ready, for an external worker.
	ExternalTypes bool
	// MaxRunBytes bounds the payload bytes (inputs, outputs, errors) one run
	// may record in its events; a run that would pass it fails with
	// run_too_large. Default DefaultMaxRunBytes.
	MaxRunBytes int64
	// MaxAbandoned is how many attempts in a row a task may lose to the
	// process dying before it fails with reason abandoned, so that a task
	// that kills the process cannot keep it down across restarts. Default
	// DefaultMaxAbandoned.
	MaxAbandoned int
	// MaxPlans and MaxPlanBytes bound the cache of compiled definitions, by
	// count and by the size of their definitions. Defaults DefaultMaxPlans and
	// DefaultMaxPlanBytes.
	MaxPlans     int
	MaxPlanBytes int64
	// TenantFunc reads a registered tenant (Keys.Tenant, which caches): the
	// settings that decide the task types a TenantGate guards. nil: there is
	// no tenant registry and every tenant may use every registered type.
	TenantFunc func(ctx context.Context, id string) (*Tenant, error)
	// StuckAfter is how long an active run may go without an event, while
	// nothing it waits for will move it (no attempt running, no timer, no
	// worker polling its tasks' types), before the engine records
	// run.stalled for it, once. 0: DefaultStuckAfter; negative: never.
	StuckAfter time.Duration
	// StuckCheckInterval is how often runs are checked for being stuck;
	// 0: StuckAfter/4, at most a minute and at least a second.
	StuckCheckInterval time.Duration
}

// DefaultStuckAfter is the default of Config.StuckAfter.
const DefaultStuckAfter = time.Hour

// Validate reports a configuration the engine cannot run with.
func (c *Config) Validate() error {
	if c.Store == nil {
		return errors.New("engine config: store is required")
	}
	if c.Workers < 0 || c.Workers > 10_000 {
		return fmt.Errorf("engine config: workers %d out of range 1..10000", c.Workers)
	}
	if c.MaxRunBytes < 0 || c.MaxAbandoned < 0 || c.MaxPlans < 0 || c.MaxPlanBytes < 0 {
		return errors.New("engine config: limits must not be negative")
	}
	return nil
}

// Engine executes runs: it decides every state change, records it through the
// Store, and dispatches tasks to in-process handlers. It is safe for
// concurrent use. Start recovers what the store holds; Stop winds down.
type Engine struct {
	store   Store
	workers int
	log     *slog.Logger
	now     func() time.Time
	ext     bool
	m       *engineMetrics

	tenantFunc func(ctx context.Context, id string) (*Tenant, error)

	maxRunBytes  int64
	maxAbandoned int
	stuckAfter   time.Duration // <= 0: no stuck detection
	stuckEvery   time.Duration
	busy         atomic.Int32 // in-process workers running an attempt
	resolveHook  func()       // tests: called by a resolver before it renders, without Engine.mu

	handlers map[string]Handler // fixed at Start

	plans *planCache

	mu        sync.Mutex // protects the fields below and every runState
	runs      map[string]*runState
	ready     runHeap
	timers    timerHeap
	order     uint64
	started   bool
	stopping  bool
	reloading map[string]bool
	fails     commitFailures                  // failed commits in a row, for the reload backoff
	subs      subscribers                     // Subscribe callers, Wait among them
	lanes     map[string]*lane                // external ready tasks by tenant and type
	polls     map[string]map[string]time.Time // the last poll of each task type, by tenant
	npolls    int                             // (tenant, type) pairs in polls
	resolveQ  []resolution                    // templates waiting for a resolver

	wake        chan struct{} // a task became dispatchable
	timerWake   chan struct{} // the earliest timer changed
	resolveWake chan struct{} // a template waits for a resolver
	quit        chan struct{} // closed by Stop: no new work starts
	hctx        context.Context
	hcancel     context.CancelFunc // interrupts running handlers
	wg          sync.WaitGroup     // workers, timer loop, reloads
	commitWG    sync.WaitGroup     // commits not yet acknowledged
	stopOnce    sync.Once
}

// New returns an engine; call Register for custom task types, then Start.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.MaxRunBytes == 0 {
		cfg.MaxRunBytes = DefaultMaxRunBytes
	}
	if cfg.MaxAbandoned == 0 {
		cfg.MaxAbandoned = DefaultMaxAbandoned
	}
	if cfg.StuckAfter == 0 {
		cfg.StuckAfter = DefaultStuckAfter
	}
	if cfg.StuckCheckInterval <= 0 {
		cfg.StuckCheckInterval = min(max(cfg.StuckAfter/4, time.Second), time.Minute)
	}
	e := &Engine{
		store:      cfg.Store,
		workers:    cfg.Workers,
		log:        cfg.Logger,
		now:        cfg.NowFunc,
		ext:        cfg.ExternalTypes,
		tenantFunc: cfg.TenantFunc,
		handlers:   map[string]Handler{definition.TypeNoop: HandlerFunc(noop)},
		plans:      newPlanCache(cfg.MaxPlans, cfg.MaxPlanBytes),

		maxRunBytes:  cfg.MaxRunBytes,
		maxAbandoned: cfg.MaxAbandoned,
		runs:         map[string]*runState{},
		reloading:    map[string]bool{},
		subs:         subscribers{byRun: map[string]map[*Subscription]struct{}{}, byTenant: map[string]map[*Subscription]struct{}{}},
		lanes:        map[string]*lane{},
		polls:        map[string]map[string]time.Time{},
		stuckAfter:   cfg.StuckAfter,
		stuckEvery:   cfg.StuckCheckInterval,
		wake:         make(chan struct{}, cfg.Workers),
		timerWake:    make(chan struct{}, 1),
		resolveWake:  make(chan struct{}, 1),
		quit:         make(chan struct{}),
	}
	e.hctx, e.hcancel = context.WithCancel(context.Background())
	e.m = newEngineMetrics(cfg.Metrics, e)
	return e, nil
}

// Register installs the handler for a task type. It must be called before Start.
func (e *Engine) Register(typ string, h Handler) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return errors.New("register: engine already started")
	}
	if typ == definition.TypeSleep {
		return errors.New("register: sleep is a built-in durable timer")
	}
	if !definition.ValidName(typ) {
		return fmt.Errorf("register: task type %q must match [A-Za-z0-9_.-]{1,64}", typ)
	}
	e.handlers[typ] = h
	return nil
}

// ValidateOptions returns the options definitions are validated with: the task
// types this engine can run.
func (e *Engine) ValidateOptions() definition.ValidateOptions {
	opts := definition.ValidateOptions{ConfigFunc: func(typ string, config json.RawMessage) []definition.Problem {
		if v, ok := e.handlers[typ].(ConfigValidator); ok {
			return v.ValidateConfig(config)
		}
		return nil
	}}
	if !e.ext {
		opts.KnownTypeFunc = func(typ string) bool {
			_, ok := e.handlers[typ]
			return ok
		}
	}
	return opts
}

// Start recovers every non-terminal run from the store, records attempts the
// previous process left running as abandoned, re-arms timers, and starts the
// workers. It returns once the recovery is durable.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errors.New("start: engine already started")
	}
	e.started = true
	e.mu.Unlock()

	var wait []chan error
	err := e.store.LoadActiveRuns(ctx, func(run *Run, tasks []Task) error {
		v, err := e.restore(ctx, run, tasks)
		if err != nil {
			e.log.Error("recover run", logRun, run.ID, logErr, err)
			return nil // one broken run must not stop the others
		}
		done := make(chan error, 1)
		e.mu.Lock()
		e.activate(v, func(err error) { done <- err })
		e.mu.Unlock()
		wait = append(wait, done)
		return nil
	})
	if err != nil {
		return fmt.Errorf("recover runs: %w", err)
	}
	for _, ch := range wait {
		select {
		case err := <-ch:
			if err != nil {
				// One run's recovery failing must not stop the others: its
				// failed commit already started a reload of it.
				e.log.Error("recover run", logErr, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	e.mu.Lock()
	n := len(e.runs)
	e.mu.Unlock()
	e.log.Info("engine started", "workers", e.workers, "active_runs", n)
	for i := 0; i < e.workers; i++ {
		e.goTracked(e.workerLoop)
	}
	e.goTracked(e.timerLoop)
	if e.stuckAfter > 0 {
		e.goTracked(e.stuckLoop)
	}
	for i := 0; i < resolverCount; i++ {
		e.goTracked(e.resolverLoop)
	}
	return nil
}

// goTracked runs f on a goroutine that Stop waits for.
func (e *Engine) goTracked(f func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

// Stop stops dispatching, lets running attempts finish until ctx is done, then
// interrupts the rest (recorded, and retried by the next start without
// charging the retry budget), and waits until every decision is durable.
// Stop is idempotent and safe before Start.
func (e *Engine) Stop(ctx context.Context) error {
	e.stopOnce.Do(func() {
		e.mu.Lock()
		e.stopping = true
		e.mu.Unlock()
		close(e.quit)
		done := make(chan struct{})
		go func() {
			e.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			e.log.Warn("shutdown grace period over: interrupting running attempts")
			e.hcancel()
			<-done
		}
		e.hcancel()
		e.commitWG.Wait()
	})
	return nil
}

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
	def, problems := definition.ParseDefinition(sd.Definition)
	var p *definition.Plan
	if len(problems) == 0 {
		// A stored definition passed validation once; handlers registered now
		// may differ, which execution reports per task instead.
		p, problems = definition.Compile(def, definition.ValidateOptions{})
	}
	if len(problems) > 0 {
		return nil, 0, fmt.Errorf("definition %s v%d: %w", sd.Name, sd.Version, &definition.ValidationError{Problems: problems})
	}
	e.plans.put(tenantID, sd.Name, sd.Version, p, len(sd.Definition))
	return p, sd.Version, nil
}

// RegisterDefinition validates a definition and stores it as the next version
// of its name; an unchanged definition returns the latest version with created
// false. Invalid definitions return a *ValidationError, as do task types the
// tenant may not use (TenantGate); an unregistered tenant, when types are
// gated, an error wrapping ErrTenantNotFound.
func (e *Engine) RegisterDefinition(ctx context.Context, tenantID string, data []byte) (*StoredDefinition, bool, error) {
	sd, _, err := e.compileDefinition(ctx, tenantID, data)
	if err != nil {
		return nil, false, err
	}
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

// clock returns the engine's time at the precision the store keeps.
func (e *Engine) clock() time.Time { return e.now().UTC().Truncate(time.Microsecond) }

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
// started by an earlier request with the same idempotency key.
func (e *Engine) StartRunIdempotent(ctx context.Context, req StartRequest) (run *Run, replayed bool, err error) {
	if req.IdempotencyKey != "" {
		if run, err := e.replay(ctx, req); !errors.Is(err, ErrNotFound) {
			return run, err == nil, err
		}
	}
	for try := 0; ; try++ {
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
	if len(req.Input) > 0 && !json.Valid(req.Input) {
		return nil, &definition.ValidationError{Problems: []definition.Problem{{Field: "input", Message: "must be valid JSON"}}}
	}
	if err := strictjson.CheckDepth(req.Input); err != nil {
		return nil, &definition.ValidationError{Problems: []definition.Problem{{Field: "input", Message: err.Error()}}}
	}
	var plan *definition.Plan
	var version int
	var toStore *StoredDefinition
	if len(req.Definition) > 0 {
		sd, p, err := e.compileDefinition(ctx, req.TenantID, req.Definition)
		if err != nil {
			return nil, err
		}
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
	e.mu.Lock()
	if e.stopping {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	now := e.clock()
	id := NewRunID(now)
	rs := e.newRunState(req.TenantID, id, NewRunView(plan))
	b := e.newBatchBy(rs, req.By)
	b.insert = true
	b.idemKey, b.idemHash = req.IdempotencyKey, req.RequestHash
	b.definition = toStore
	if !b.add(EventRunCreated, -1, 0, &EventData{Workflow: plan.Def.Name, Version: version, Input: req.Input}) {
		e.mu.Unlock()
		return nil, fmt.Errorf("start run of %s: the engine refused run.created (see the log): %w", plan.Def.Name, ErrInvalidTransition)
	}
	e.startRun(b, EventRunStarted)
	e.runs[id] = rs
	done := make(chan error, 1)
	b.commit(func(err error) { done <- err })
	e.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
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
