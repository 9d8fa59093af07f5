package engine

import (
	"context"
	"sync/atomic"
	"time"
)

// RunChange tells a subscriber that a commit about a run is durable.
type RunChange struct {
	TenantID string
	RunID    string
	LastSeq  int64    // the run's last seq after the commit
	State    RunState // the run's state after the commit
	// PrevState is the state before the commit: equal to State unless the
	// commit moved the run. Created marks the commit that recorded the run.
	PrevState RunState
	Created   bool
	// DurableAt is when the engine learnt that the commit is durable: what
	// a subscriber measures durability latency against, whatever its own
	// delay in reading the change.
	DurableAt time.Time
}

// Moved reports whether the change created the run or changed its state.
func (c RunChange) Moved() bool { return c.Created || c.PrevState != c.State }

// DefaultSubscriptionBuffer is the buffer of a subscription asked for
// without one.
const DefaultSubscriptionBuffer = 64

// Subscription receives a RunChange after each durable commit about one run
// or about every run of a tenant. It is bounded: a subscriber that does not
// keep up never blocks the engine; changes it had no room for are dropped
// and Lagged says so, and the subscriber reads what it missed from the
// store (every change is in the log). Close it when done. Its methods are
// safe for concurrent use.
type Subscription struct {
	e      *Engine
	tenant string
	run    string // "" = every run of the tenant
	// gone: told only when the run leaves memory or its reload ends
	// (Wait), not of each commit.
	gone   bool
	c      chan RunChange
	lagged atomic.Bool
	closed bool // protected by Engine.mu
}

// C delivers the changes, in commit order for one run.
func (s *Subscription) C() <-chan RunChange { return s.c }

// Lagged reports whether changes were dropped since the last call, and
// clears it.
func (s *Subscription) Lagged() bool { return s.lagged.Swap(false) }

// Done is closed when the engine stops: no change will come any more.
func (s *Subscription) Done() <-chan struct{} { return s.e.quit }

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	key, m := e.subs.index(s)
	set := m[key]
	delete(set, s)
	if len(set) == 0 {
		delete(m, key)
	}
	e.subs.n--
}

// Subscribe returns a subscription to the durable changes of one run of a
// tenant (runID set) or of every run of the tenant (runID ""), with room
// for buffer changes (0: DefaultSubscriptionBuffer). A change of a run of
// another tenant never reaches it. The subscription sees only commits made
// after Subscribe returns: read the store after subscribing to know the
// state before.
func (e *Engine) Subscribe(tenantID, runID string, buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultSubscriptionBuffer
	}
	return e.subscribe(&Subscription{e: e, tenant: tenantID, run: runID, c: make(chan RunChange, buffer)})
}

// subscribeGone is a subscription to one run told only when the run leaves
// memory (it ended and is durable, or it is being loaded again) and when
// its reload ends. Wait needs no more, and is not woken by every commit of
// the run.
func (e *Engine) subscribeGone(tenantID, runID string) *Subscription {
	return e.subscribe(&Subscription{e: e, tenant: tenantID, run: runID, gone: true, c: make(chan RunChange, 1)})
}

func (e *Engine) subscribe(s *Subscription) *Subscription {
	e.mu.Lock()
	defer e.mu.Unlock()
	key, m := e.subs.index(s)
	set := m[key]
	if set == nil {
		set = map[*Subscription]struct{}{}
		m[key] = set
	}
	set[s] = struct{}{}
	e.subs.n++
	return s
}

// subscribers are the open subscriptions, protected by Engine.mu.
type subscribers struct {
	n        int // open subscriptions: 0 keeps the commit path to one compare
	byRun    map[string]map[*Subscription]struct{}
	byTenant map[string]map[*Subscription]struct{}
}

// index is the map s is kept in, and its key there: its run, or its
// tenant when it follows every run of the tenant.
func (subs *subscribers) index(s *Subscription) (string, map[string]map[*Subscription]struct{}) {
	if s.run == "" {
		return s.tenant, subs.byTenant
	}
	return s.run, subs.byRun
}

// publish tells the subscribers of a run and of its tenant about a durable
// commit. Called with Engine.mu held; it never blocks.
func (e *Engine) publish(c RunChange) {
	for s := range e.subs.byRun[c.RunID] {
		if s.tenant == c.TenantID && !s.gone {
			s.send(c)
		}
	}
	for s := range e.subs.byTenant[c.TenantID] {
		s.send(c)
	}
}

// poke tells the subscribers of one run that it left memory (it ended, or
// it is being loaded again), so that Wait looks at the store.
func (e *Engine) poke(rs *runState) {
	if e.subs.n == 0 {
		return
	}
	e.tellRun(RunChange{TenantID: rs.tenant, RunID: rs.id, LastSeq: rs.view.Run.LastSeq, State: rs.view.Run.State,
		PrevState: rs.view.Run.State}, false)
}

// tellRun sends c to the subscribers of c's run, or only to its Wait
// callers with waitersOnly.
func (e *Engine) tellRun(c RunChange, waitersOnly bool) {
	for s := range e.subs.byRun[c.RunID] {
		if s.tenant == c.TenantID && (s.gone || !waitersOnly) {
			s.send(c)
		}
	}
}

// wakeWaiters tells the Wait callers of a run that its reload ended (the
// run is back in memory, or the reload gave up), so that they look again.
// Called with Engine.mu held.
func (e *Engine) wakeWaiters(tenantID, runID string) {
	if e.subs.n == 0 {
		return
	}
	e.tellRun(RunChange{TenantID: tenantID, RunID: runID}, true)
}

func (s *Subscription) send(c RunChange) {
	select {
	case s.c <- c:
	default:
		s.lagged.Store(true)
	}
}

// Wait blocks until the run is in a terminal state and that state is durable,
// and returns it. A run that is paused keeps Wait waiting. Errors:
// ErrNotFound, ctx.Err(). It waits on a subscription to the run, woken
// when the run leaves memory and when its reload ends.
func (e *Engine) Wait(ctx context.Context, tenantID, runID string) (*Run, error) {
	sub := e.subscribeGone(tenantID, runID)
	defer sub.Close()
	for {
		e.mu.Lock()
		rs := e.runs[runID]
		inMemory := rs != nil && rs.tenant == tenantID
		e.mu.Unlock()
		if !inMemory {
			run, _, err := e.store.LoadRun(ctx, tenantID, runID)
			if err != nil {
				return nil, err
			}
			if run.State.Terminal() {
				return run, nil
			}
			// Active but not in memory: being reloaded (or recovered by
			// Start). The subscription is told when the reload ends, and
			// when the run, back in memory, leaves it again.
		}
		select {
		case <-sub.C():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
