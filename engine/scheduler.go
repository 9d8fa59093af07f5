package engine

import (
	"container/heap"
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"
)

// Bounds of the scheduler's work.
const (
	// schedulesPerWake bounds the schedules one wake of the loop decides;
	// the rest wait for the next wake, at once.
	schedulesPerWake = 64
	// stepsPerSchedule bounds the decisions (a slot fired, skipped,
	// missed...) one schedule takes per wake.
	stepsPerSchedule = 32
	// maxMissedScan bounds the slots one slots_missed event counts; more
	// are counted by the next.
	maxMissedScan = 100_000
	// scheduleRetry is how long a schedule whose decision failed for the
	// storage's sake waits before it is tried again.
	scheduleRetry = time.Second
	// scheduleLocks is the number of striped locks that serialize the
	// decisions about one schedule in this process.
	scheduleLocks = 64
)

// scheduler decides the slots of every active schedule: a heap of wake
// times, one timer for the earliest, and bounded work per wake. It never
// holds Engine.mu while it computes slots.
type scheduler struct {
	e      *Engine
	store  ScheduleStore // nil: schedules are not available
	manual bool          // Config.NoScheduleLoop: tests call RunSchedules

	locks [scheduleLocks]sync.Mutex // by schedule: one decision at a time

	mu      sync.Mutex // protects the fields below
	heap    wakeHeap
	due     map[string]time.Time // the wake time each schedule's latest entry holds
	waiting map[string]bool      // schedules whose buffered slot waits for a run to end
	ctx     context.Context      // cancelled when the engine stops
	cancel  context.CancelFunc
	wake    chan struct{}
}

func newScheduler(e *Engine, cfg *Config) *scheduler {
	st := cfg.ScheduleStore
	if st == nil {
		st, _ = cfg.Store.(ScheduleStore)
	}
	sc := &scheduler{e: e, store: st, manual: cfg.NoScheduleLoop,
		due: map[string]time.Time{}, waiting: map[string]bool{}, wake: make(chan struct{}, 1)}
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	return sc
}

// schedKey identifies a schedule across tenants.
type schedKey struct{ tenant, id string }

func (k schedKey) String() string { return k.tenant + "/" + k.id }

// lock serializes the decisions about one schedule in this process; the
// store's compare-and-set on Seq guards against anyone else.
func (sc *scheduler) lock(k schedKey) func() {
	h := fnv.New32a()
	h.Write([]byte(k.String()))
	m := &sc.locks[h.Sum32()%scheduleLocks]
	m.Lock()
	return m.Unlock
}

// poke asks the loop to decide a schedule at t (zero: now).
func (sc *scheduler) poke(k schedKey, t time.Time) {
	if sc.manual {
		return // no loop: RunSchedules decides
	}
	sc.mu.Lock()
	s := k.String()
	if cur, ok := sc.due[s]; !ok || !cur.Equal(t) {
		sc.due[s] = t
		heap.Push(&sc.heap, wakeEntry{at: t, key: k})
	}
	sc.mu.Unlock()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// loop is the scheduler's goroutine: it sleeps until the earliest wake
// time or a poke, and decides what is due.
func (sc *scheduler) loop() {
	defer sc.cancel()
	err := sc.store.EachSchedule(sc.ctx, true, func(tenantID, id string) error {
		sc.poke(schedKey{tenantID, id}, time.Time{})
		return nil
	})
	if err != nil {
		sc.e.log.Error("load schedules", logErr, err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		next := sc.runOnce(sc.ctx)
		var fire <-chan time.Time
		if !next.IsZero() {
			timer.Reset(max(next.Sub(sc.e.now()), 0))
			fire = timer.C
		}
		select {
		case <-sc.e.quit:
			timer.Stop()
			return
		case <-sc.wake:
		case <-fire:
		}
		timer.Stop()
	}
}

// runOnce decides up to schedulesPerWake schedules that are due and
// returns the next wake time (zero: none).
func (sc *scheduler) runOnce(ctx context.Context) time.Time {
	now := sc.e.clock()
	var todo []schedKey
	sc.mu.Lock()
	for len(sc.heap) > 0 && len(todo) < schedulesPerWake && !sc.heap[0].at.After(now) {
		w := heap.Pop(&sc.heap).(wakeEntry)
		if at, ok := sc.due[w.key.String()]; !ok || !at.Equal(w.at) {
			continue // replaced by a later poke
		}
		delete(sc.due, w.key.String())
		todo = append(todo, w.key)
	}
	sc.mu.Unlock()
	for _, k := range todo {
		if ctx.Err() != nil {
			break
		}
		next, err := sc.process(ctx, k)
		switch {
		case err != nil:
			sc.e.log.Warn("schedule decision failed; trying again", logTenant, k.tenant, "schedule_id", k.id, logErr, err)
			sc.poke(k, sc.e.clock().Add(scheduleRetry))
		case !next.IsZero():
			sc.poke(k, next)
		}
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for len(sc.heap) > 0 {
		w := sc.heap[0]
		if at, ok := sc.due[w.key.String()]; ok && at.Equal(w.at) {
			return w.at
		}
		heap.Pop(&sc.heap)
	}
	return time.Time{}
}

// RunSchedules decides every active schedule once, as the scheduler loop
// would when they are due: for an engine started with NoScheduleLoop,
// whose tests move the clock (NowFunc) and call it.
func (e *Engine) RunSchedules(ctx context.Context) error {
	if e.sched.store == nil {
		return ErrSchedulesUnavailable
	}
	var keys []schedKey
	if err := e.sched.store.EachSchedule(ctx, true, func(tenantID, id string) error {
		keys = append(keys, schedKey{tenantID, id})
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := e.sched.process(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// ErrSchedulesUnavailable: the engine's store keeps no schedules.
var ErrSchedulesUnavailable = errors.New("this server keeps no schedules")

// process takes the decisions due for one schedule, at most
// stepsPerSchedule, and returns when it must be decided again (zero: when
// something changes it).
func (sc *scheduler) process(ctx context.Context, k schedKey) (time.Time, error) {
	unlock := sc.lock(k)
	defer unlock()
	for range stepsPerSchedule {
		s, err := sc.store.GetSchedule(ctx, k.tenant, k.id)
		if errors.Is(err, ErrNotFound) {
			return time.Time{}, nil
		} else if err != nil {
			return time.Time{}, err
		}
		if s.State != ScheduleActive {
			return time.Time{}, nil
		}
		sp, err := compileSpec(s.Spec)
		if err != nil {
			sc.e.log.Error("stored schedule does not compile", logTenant, k.tenant, "schedule_id", k.id, logErr, err)
			return time.Time{}, nil
		}
		acted, next, err := sc.step(ctx, s, sp)
		if errors.Is(err, ErrConflict) {
			continue // the schedule changed meanwhile: decide again from what is stored
		}
		if err != nil || !acted {
			return next, err
		}
	}
	return sc.e.clock(), nil // more to do: the next wake continues
}

// step takes the next decision of a schedule, if one is due: a buffered
// slot whose previous run ended, slots too old to fire (missed), or the
// next slot under the overlap policy. It reports whether it wrote
// something, else when the next decision is due.
func (sc *scheduler) step(ctx context.Context, s *Schedule, sp *slotSpec) (bool, time.Time, error) {
	now := sc.e.clock()
	active := false
	if len(s.Buffered) > 0 || (sp.spec.Overlap != OverlapAllowAll && s.LastRunID != "") {
		var err error
		if active, err = sc.runActive(ctx, s.TenantID, s.LastRunID); err != nil {
			return false, time.Time{}, err
		}
	}
	if len(s.Buffered) > 0 {
		if !active {
			return true, time.Time{}, sc.fire(ctx, s, sp, s.Buffered[0], fireBuffered)
		}
		sc.watch(s)
	}
	slot := sp.next(s.Cursor)
	if slot.IsZero() {
		return false, time.Time{}, nil
	}
	if at := sp.fireAt(s.ID, slot); at.After(now) {
		return false, at, nil
	} else if now.Sub(at) > sp.spec.CatchupWindow {
		return true, time.Time{}, sc.missed(ctx, s, sp, slot, now)
	}
	if active {
		switch sp.spec.Overlap {
		case OverlapSkip:
			return true, time.Time{}, sc.hold(ctx, s, slot, ScheduleSlotSkipped)
		case OverlapBufferOne, OverlapBufferAll:
			if (sp.spec.Overlap == OverlapBufferOne && len(s.Buffered) > 0) || len(s.Buffered) >= MaxBufferedSlots {
				return true, time.Time{}, sc.hold(ctx, s, slot, ScheduleSlotSkipped)
			}
			return true, time.Time{}, sc.hold(ctx, s, slot, ScheduleSlotBuffered)
		case OverlapCancelOther:
			if _, err := sc.e.Cancel(ctx, s.TenantID, s.LastRunID, Caller{}); err != nil &&
				!errors.Is(err, ErrInvalidTransition) && !errors.Is(err, ErrNotFound) {
				return false, time.Time{}, err
			}
		}
	}
	return true, time.Time{}, sc.fire(ctx, s, sp, slot, fireNext)
}

// runActive reports whether a run is in a state other than terminal.
func (sc *scheduler) runActive(ctx context.Context, tenantID, runID string) (bool, error) {
	if runID == "" {
		return false, nil
	}
	e := sc.e
	e.mu.Lock()
	if rs := e.runs[runID]; rs != nil && rs.tenant == tenantID {
		st := rs.view.Run.State
		e.mu.Unlock()
		return !st.Terminal(), nil
	}
	e.mu.Unlock()
	run, err := e.store.GetRunRow(ctx, tenantID, runID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return !run.State.Terminal(), nil
}

// watch wakes a schedule once the run its buffered slot waits for ends.
func (sc *scheduler) watch(s *Schedule) {
	if sc.manual {
		return
	}
	k := schedKey{s.TenantID, s.ID}
	sc.mu.Lock()
	if sc.waiting[k.String()] {
		sc.mu.Unlock()
		return
	}
	sc.waiting[k.String()] = true
	sc.mu.Unlock()
	runID := s.LastRunID
	sc.e.goTracked(func() {
		_, err := sc.e.Wait(sc.ctx, k.tenant, runID)
		sc.mu.Lock()
		delete(sc.waiting, k.String())
		sc.mu.Unlock()
		if sc.ctx.Err() == nil {
			if err != nil && !errors.Is(err, ErrNotFound) {
				sc.e.log.Warn("wait for a schedule's run", logRun, runID, logErr, err)
			}
			sc.poke(k, time.Time{})
		}
	})
}

// missed records the slots from first on that are older than the catch-up
// window, up to maxMissedScan of them, as one slots_missed event.
func (sc *scheduler) missed(ctx context.Context, s *Schedule, sp *slotSpec, first, now time.Time) error {
	last, n := first, int64(1)
	for n < maxMissedScan {
		c := sp.next(last)
		if c.IsZero() || now.Sub(sp.fireAt(s.ID, c)) <= sp.spec.CatchupWindow {
			break
		}
		last, n = c, n+1
	}
	return sc.record(ctx, s, now, ScheduleSlotsMissed, &ScheduleEventData{First: first, Last: last, Count: n}, n)
}

// hold records a slot that does not fire now: skipped, or buffered until
// the previous run ends.
func (sc *scheduler) hold(ctx context.Context, s *Schedule, slot time.Time, typ ScheduleEventType) error {
	return sc.record(ctx, s, sc.e.clock(), typ, &ScheduleEventData{Slot: slot, RunID: s.LastRunID}, 1)
}

// wakeEntry is a schedule to decide at a time.
type wakeEntry struct {
	at  time.Time
	key schedKey
}

// wakeHeap orders wake entries by time, earliest first.
type wakeHeap []wakeEntry

func (h wakeHeap) Len() int           { return len(h) }
func (h wakeHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h wakeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *wakeHeap) Push(x any)        { *h = append(*h, x.(wakeEntry)) }
func (h *wakeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
