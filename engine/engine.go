package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine/definition"
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
	// DefaultQuotas are the tenant quotas of every tenant that sets none
	// of its own (field by field); 0 is unlimited. The zero value limits
	// nothing.
	DefaultQuotas TenantQuotas
	// ScheduleStore keeps schedules; default Store when it implements
	// ScheduleStore, else schedules are not available.
	ScheduleStore ScheduleStore
	// NoScheduleLoop starts no scheduler loop: tests decide schedules with
	// RunSchedules.
	NoScheduleLoop bool
	// Overload sets when the engine counts as saturated and refuses new
	// runs with ErrOverloaded; the zero value takes the defaults.
	Overload OverloadConfig
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
	if err := c.DefaultQuotas.Validate("", true); err != nil {
		return fmt.Errorf("engine config: default quotas: %w", err)
	}
	if err := c.Overload.Validate(); err != nil {
		return fmt.Errorf("engine config: %w", err)
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
	defQuotas  TenantQuotas // Config.DefaultQuotas in force
	limits     limiterBook  // start buckets by tenant

	maxRunBytes  int64
	maxAbandoned int
	stuckAfter   time.Duration // <= 0: no stuck detection
	stuckEvery   time.Duration
	busy         atomic.Int32 // in-process workers running an attempt
	resolveHook  func()       // tests: called by a resolver before it renders, without Engine.mu

	handlers map[string]Handler // fixed at Start

	plans *planCache
	sched *scheduler

	aliases  *aliasCache    // alias lookups of "name@alias" starts
	rollback *rollbackWatch // outcomes of aliased runs, for automatic rollback
	ov       *overload      // whether new runs are refused

	mu        sync.Mutex // protects the fields below and every runState
	runs      map[string]*runState
	ready     fairQueue // runs with in-process tasks to dispatch, by tenant
	timers    timerHeap
	order     uint64
	started   bool
	stopping  bool
	reloading map[string]bool
	reserved  map[string]*runState            // runs reloading whose slots stay taken (reserve)
	fails     commitFailures                  // failed commits in a row, for the reload backoff
	subs      subscribers                     // Subscribe callers, Wait among them
	lanes     map[string]*lane                // external ready tasks by tenant and type
	polls     map[string]map[string]time.Time // the last poll of each task type, by tenant
	npolls    int                             // (tenant, type) pairs in polls
	resolveQ  []resolution                    // templates waiting for a resolver
	heldBytes int64                           // runs.data_bytes of the runs in runs
	// Admission (admission.go): active and waiting runs by tenant and by
	// concurrency key, the keys with runs waiting, and how many wait.
	tslots     map[string]*tenantSlots
	kslots     map[keyID]*keySlots
	kwait      map[keyID]*keySlots
	npending   int
	lastParked time.Time // creation time of the last run that waited
	admitRound uint64
	idem       idemFlights // idempotency keys whose start is in flight

	wake        chan struct{} // a task became dispatchable
	timerWake   chan struct{} // the earliest timer changed
	resolveWake chan struct{} // a template waits for a resolver
	admitWake   chan struct{} // a slot freed, or a run waits
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
		cfg.StuckCheckInterval = stuckCheckInterval(cfg.StuckAfter)
	}
	e := &Engine{
		store:      cfg.Store,
		workers:    cfg.Workers,
		log:        cfg.Logger,
		now:        cfg.NowFunc,
		ext:        cfg.ExternalTypes,
		tenantFunc: cfg.TenantFunc,
		defQuotas:  TenantQuotas{}.Over(cfg.DefaultQuotas),
		handlers:   map[string]Handler{definition.TypeNoop: HandlerFunc(noop)},
		plans:      newPlanCache(cfg.MaxPlans, cfg.MaxPlanBytes),
		aliases:    newAliasCache(),
		rollback:   newRollbackWatch(),

		maxRunBytes:  cfg.MaxRunBytes,
		maxAbandoned: cfg.MaxAbandoned,
		runs:         map[string]*runState{},
		reloading:    map[string]bool{},
		reserved:     map[string]*runState{},
		subs:         subscribers{byRun: map[string]map[*Subscription]struct{}{}, byTenant: map[string]map[*Subscription]struct{}{}},
		lanes:        map[string]*lane{},
		polls:        map[string]map[string]time.Time{},
		stuckAfter:   cfg.StuckAfter,
		stuckEvery:   cfg.StuckCheckInterval,
		tslots:       map[string]*tenantSlots{},
		kslots:       map[keyID]*keySlots{},
		kwait:        map[keyID]*keySlots{},
		admitWake:    make(chan struct{}, 1),
		wake:         make(chan struct{}, cfg.Workers),
		timerWake:    make(chan struct{}, 1),
		resolveWake:  make(chan struct{}, 1),
		quit:         make(chan struct{}),
	}
	e.hctx, e.hcancel = context.WithCancel(context.Background())
	e.m = newEngineMetrics(cfg.Metrics, e)
	e.sched = newScheduler(e, &cfg)
	e.ov = newOverload(cfg.Overload, cfg.Metrics)
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
	var pending []*RunView // waiting runs: in line once every active run is counted
	err := e.store.LoadActiveRuns(ctx, func(run *Run, tasks []Task) error {
		v, err := e.restore(ctx, run, tasks)
		if err != nil {
			e.log.Error("recover run", logRun, run.ID, logErr, err)
			return nil // one broken run must not stop the others
		}
		if run.State == RunPending {
			pending = append(pending, v)
			return nil
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
	slices.SortFunc(pending, func(a, b *RunView) int {
		if c := a.Run.CreatedAt.Compare(b.Run.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Run.ID, b.Run.ID)
	})
	e.mu.Lock()
	for _, v := range pending {
		if v.Run.CreatedAt.After(e.lastParked) {
			e.lastParked = v.Run.CreatedAt
		}
		e.activate(v, nil)
	}
	e.mu.Unlock()
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
	e.goTracked(e.admitLoop)
	e.kickAdmit()
	e.goTracked(e.rollbackLoop)
	e.goTracked(e.overloadLoop)
	for i := 0; i < resolverCount; i++ {
		e.goTracked(e.resolverLoop)
	}
	if e.sched.store != nil && !e.sched.manual {
		e.goTracked(e.sched.loop)
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

// clock returns the engine's time at the precision the store keeps.
func (e *Engine) clock() time.Time { return e.now().UTC().Truncate(time.Microsecond) }
