// Package triggers runs the consumers of stream triggers (NATS JetStream,
// Kafka): a Manager starts one per enabled trigger, restarts it when the
// trigger changes, stops it when the trigger is disabled or deleted, and
// reconnects with backoff when it fails. A consumer (natstrigger,
// kafkatrigger) hands each message to its Sink, which starts the run through
// engine.Triggers and returns once it is durable; only then does the
// consumer acknowledge the message.
package triggers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine"
)

// Consumer consumes one stream trigger's messages until ctx is done (it
// returns nil or ctx's error) or its connection fails (it returns why; the
// manager starts it again after a backoff). It hands every message to
// s.Fire and acknowledges it only once Fire returned without an error that
// asks for a redelivery.
type Consumer interface {
	Consume(ctx context.Context, t *engine.Trigger, s *Sink) error
}

// ConsumerFunc is a Consumer of a function.
type ConsumerFunc func(ctx context.Context, t *engine.Trigger, s *Sink) error

// Consume implements Consumer.
func (f ConsumerFunc) Consume(ctx context.Context, t *engine.Trigger, s *Sink) error {
	return f(ctx, t, s)
}

// Defaults of a Manager.
const (
	DefaultPollInterval = 5 * time.Second
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
)

// Log keys.
const (
	logTenant  = "tenant_id"
	logTrigger = "trigger"
	logKind    = "kind"
	logErr     = "err"
)

// Manager runs the consumers of every enabled stream trigger of the store.
// It reads the triggers at Start, when nudged (Nudge, which
// engine.Triggers.ChangedFunc calls after each change) and every
// PollInterval. Start and Stop are idempotent; Stop is safe before Start.
type Manager struct {
	Triggers  *engine.Triggers
	Consumers map[engine.TriggerKind]Consumer
	Logger    *slog.Logger
	// Metrics, when set, gets gauges per running trigger:
	// orchestrator_trigger_connected, _lag, _messages, _runs_started and
	// _errors, labelled by tenant, trigger and kind.
	Metrics      *metrics.Set
	PollInterval time.Duration // default DefaultPollInterval; < 0: only Start and Nudge read
	MinBackoff   time.Duration // default DefaultMinBackoff
	MaxBackoff   time.Duration // default DefaultMaxBackoff

	mu      sync.Mutex // protects the fields below
	running map[string]*running
	started bool
	stopped bool
	cancel  context.CancelFunc
	nudge   chan struct{}
	wg      sync.WaitGroup
}

// running is one consumer's goroutine.
type running struct {
	trigger engine.Trigger
	sink    *Sink
	cancel  context.CancelFunc
	done    chan struct{}
}

func key(tenantID, name string) string { return tenantID + "/" + name }

// Start reads the triggers, starts their consumers and the loop that keeps
// them in step. It returns the error of the first read.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return nil
	}
	m.started = true
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	if m.PollInterval == 0 {
		m.PollInterval = DefaultPollInterval
	}
	if m.MinBackoff <= 0 {
		m.MinBackoff = DefaultMinBackoff
	}
	if m.MaxBackoff <= 0 {
		m.MaxBackoff = DefaultMaxBackoff
	}
	m.running = map[string]*running{}
	m.nudge = make(chan struct{}, 1)
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Unlock()
	if err := m.RunOnce(ctx); err != nil {
		return err
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.loop(ctx)
	}()
	return nil
}

// Nudge makes the manager read the triggers again soon. Safe before Start.
func (m *Manager) Nudge() {
	m.mu.Lock()
	ch := m.nudge
	m.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (m *Manager) loop(ctx context.Context) {
	var tick <-chan time.Time
	if m.PollInterval > 0 {
		t := time.NewTicker(m.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-m.nudge:
		}
		if err := m.RunOnce(ctx); err != nil && ctx.Err() == nil {
			m.Logger.Warn("read triggers", logErr, err)
		}
	}
}

// RunOnce brings the consumers in step with the stored triggers: it starts
// those of enabled stream triggers not running, restarts those whose
// trigger changed, and stops the others.
func (m *Manager) RunOnce(ctx context.Context) error {
	list, err := m.Triggers.Store.ListTriggers(ctx, engine.AllTenants)
	if err != nil {
		return fmt.Errorf("list triggers: %w", err)
	}
	want := map[string]engine.Trigger{}
	for _, t := range list {
		if t.Kind.Stream() && t.State == engine.TriggerEnabled && m.Consumers[t.Kind] != nil {
			want[key(t.TenantID, t.Name)] = t
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return nil
	}
	for k, r := range m.running {
		if t, ok := want[k]; !ok || t.ID != r.trigger.ID || t.Version != r.trigger.Version {
			m.stopLocked(k, r)
		}
	}
	for k, t := range want {
		if _, ok := m.running[k]; !ok {
			m.startLocked(ctx, k, t)
		}
	}
	return nil
}

func (m *Manager) startLocked(ctx context.Context, k string, t engine.Trigger) {
	cctx, cancel := context.WithCancel(ctx)
	r := &running{trigger: t, cancel: cancel, done: make(chan struct{})}
	r.sink = NewSink(m.Triggers, &r.trigger, m.Logger)
	m.running[k] = r
	m.registerMetrics(r)
	m.Logger.Info("trigger consumer starting", logTenant, t.TenantID, logTrigger, t.Name, logKind, string(t.Kind))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(r.done)
		m.consume(cctx, r)
	}()
}

// stopLocked cancels a consumer and waits for it, so that two consumers of
// one trigger never run at once.
func (m *Manager) stopLocked(k string, r *running) {
	r.cancel()
	<-r.done
	m.unregisterMetrics(r)
	delete(m.running, k)
}

// consume runs a consumer until ctx is done, again after each failure with
// a backoff that doubles up to MaxBackoff and starts over once a consumer
// ran for a minute.
func (m *Manager) consume(ctx context.Context, r *running) {
	c := m.Consumers[r.trigger.Kind]
	backoff := m.MinBackoff
	for {
		began := time.Now()
		err := c.Consume(ctx, &r.trigger, r.sink)
		r.sink.SetConnected(false)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("consumer returned")
		}
		r.sink.Error(err)
		m.Logger.Warn("trigger consumer failed", logTenant, r.trigger.TenantID, logTrigger, r.trigger.Name, logErr, err,
			"retry_in", backoff.String())
		if time.Since(began) > time.Minute {
			backoff = m.MinBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, m.MaxBackoff)
	}
}

// Status returns what a running consumer reports, or nil when none runs
// for the trigger.
func (m *Manager) Status(tenantID, name string) *engine.TriggerStatus {
	m.mu.Lock()
	r := m.running[key(tenantID, name)]
	m.mu.Unlock()
	if r == nil {
		return nil
	}
	st := r.sink.Status()
	return &st
}

// Stop stops every consumer and waits for them. It is idempotent.
func (m *Manager) Stop() {
	m.mu.Lock()
	if !m.started || m.stopped {
		m.stopped = true
		m.mu.Unlock()
		return
	}
	m.stopped = true
	m.cancel()
	for k, r := range m.running {
		m.stopLocked(k, r)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func metricNames(t *engine.Trigger) map[string]func(s engine.TriggerStatus) float64 {
	labels := fmt.Sprintf(`{tenant=%q,trigger=%q,kind=%q}`, t.TenantID, t.Name, t.Kind)
	return map[string]func(s engine.TriggerStatus) float64{
		"orchestrator_trigger_connected" + labels: func(s engine.TriggerStatus) float64 {
			if s.Connected {
				return 1
			}
			return 0
		},
		"orchestrator_trigger_lag" + labels:          func(s engine.TriggerStatus) float64 { return float64(s.Lag) },
		"orchestrator_trigger_messages" + labels:     func(s engine.TriggerStatus) float64 { return float64(s.Messages) },
		"orchestrator_trigger_runs_started" + labels: func(s engine.TriggerStatus) float64 { return float64(s.RunsStarted) },
		"orchestrator_trigger_errors" + labels:       func(s engine.TriggerStatus) float64 { return float64(s.Errors) },
	}
}

func (m *Manager) registerMetrics(r *running) {
	if m.Metrics == nil {
		return
	}
	for name, f := range metricNames(&r.trigger) {
		m.Metrics.UnregisterMetric(name) // a restart registers again
		m.Metrics.NewGauge(name, func() float64 { return f(r.sink.Status()) })
	}
}

func (m *Manager) unregisterMetrics(r *running) {
	if m.Metrics == nil {
		return
	}
	for name := range metricNames(&r.trigger) {
		m.Metrics.UnregisterMetric(name)
	}
}
