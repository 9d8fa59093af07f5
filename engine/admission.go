package engine

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Admission decides whether a new run starts at once or waits, pending, for
// a slot: of its tenant's MaxActiveRuns (TenantQuotas) or of its
// definition's concurrency key. A run that waits is recorded (run.created)
// and durable; it starts (run.started, actor engine, the reason naming the
// slot) when a slot frees, first created first started. Nothing of it is
// stored but the run: Start rebuilds the counts and the lines from the
// runs the store holds (pending ones in created order).
//
// A slot is taken by a run running or paused; a run retried or resumed
// takes one too, even past the cap (a control call is not held back), and
// the cap holds again from there. All of it is protected by Engine.mu.

// Reasons a pending run waits, as QueuedReason and run.started name them.
const (
	WaitTenantActiveRuns = "tenant_active_runs"
	WaitConcurrencyKey   = "concurrency_key" // in a run.started reason, followed by ":" and the key's value
)

// QueueReason is why a pending run waits: a slot of its tenant's
// max_active_runs (Code WaitTenantActiveRuns) or of its concurrency key
// (Code WaitConcurrencyKey, and the key's value).
type QueueReason struct {
	Code string
	Key  string // with WaitConcurrencyKey: the value of the run's concurrency key
}

// admitTick is how often waiting runs are looked at even if no slot freed,
// so that a quota raised by an admin lets them start.
const admitTick = time.Second

// tenantSlots is one tenant's active and waiting runs.
type tenantSlots struct {
	active  int      // runs running or paused
	pending int      // runs waiting, in this queue or a key's
	queue   runQueue // runs waiting for a slot of the tenant (holding their key's)
	freedBy string   // the last run that gave a slot back, for the reason of the next start
}

// keyID names a concurrency key's slots: per tenant, workflow name and value.
type keyID struct{ tenant, workflow, key string }

// keySlots is one concurrency key's runs.
type keySlots struct {
	holders []*runState // runs active, or waiting for a tenant slot, that hold a slot of the key
	queue   runQueue    // runs waiting for a slot of the key
	freedBy string
}

// runQueue is a line of pending runs, oldest first (created time, then id).
type runQueue []*runState

func (q runQueue) Len() int { return len(q) }
func (q runQueue) Less(i, j int) bool {
	a, b := &q[i].view.Run, &q[j].view.Run
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}
func (q runQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].qidx = i
	q[j].qidx = j
}
func (q *runQueue) Push(x any) {
	rs := x.(*runState)
	rs.qidx = len(*q)
	*q = append(*q, rs)
}
func (q *runQueue) Pop() any {
	old := *q
	n := len(old) - 1
	rs := old[n]
	old[n] = nil
	*q = old[:n]
	rs.qidx = -1
	return rs
}

func (e *Engine) tenantSlots(tenant string) *tenantSlots {
	ts := e.tslots[tenant]
	if ts == nil {
		ts = &tenantSlots{}
		e.tslots[tenant] = ts
	}
	return ts
}

func (e *Engine) tidyTenant(tenant string, ts *tenantSlots) {
	if ts.active == 0 && ts.pending == 0 {
		delete(e.tslots, tenant)
	}
}

func keyOf(rs *runState) keyID {
	return keyID{tenant: rs.tenant, workflow: rs.view.Run.Workflow, key: rs.ckey}
}

func (e *Engine) keySlots(id keyID) *keySlots {
	ks := e.kslots[id]
	if ks == nil {
		ks = &keySlots{}
		e.kslots[id] = ks
	}
	return ks
}

func (e *Engine) tidyKey(id keyID, ks *keySlots) {
	if len(ks.holders) == 0 && ks.queue.Len() == 0 {
		delete(e.kslots, id)
	}
}

// keyMax is how many runs of rs's key may be active at once.
func keyMax(rs *runState) int {
	if c := rs.plan.Concurrency; c != nil && c.Max > 0 {
		return c.Max
	}
	return 1
}

// activeState says whether a run in state st takes a slot.
func activeState(st RunState) bool { return st == RunRunning || st == RunPaused }

// runMoved brings the counts and lines up to date after rs's state changed.
func (e *Engine) runMoved(rs *runState) {
	st := rs.view.Run.State
	active := activeState(st)
	if st != RunPending && rs.waitq != nil {
		e.unwait(rs)
	}
	e.setCounted(rs, active)
	if rs.ckey != "" {
		e.setHolding(rs, active || (rs.waitq != nil && rs.waitFor == WaitTenantActiveRuns))
	}
}

// runMovedIn is runMoved for the state change that batch b records. A run
// that ends keeps its slots until b is durable: given back at once, they
// could let a run start whose commit succeeds while b's fails, and the
// ended run, reloaded active, would make one more than the cap. A run
// superseded hands its slot over at once: its end commits with the run
// that takes the slot, both or neither (commitTogether). While a later
// commit of the run is in flight (a retry, maybe another end), b durable
// says nothing of the run's state in the store: the slots go with the
// last commit, by its own hook, its failure (fail) or the run's release.
func (e *Engine) runMovedIn(b *batch) {
	rs := b.rs
	if b.handover || !rs.view.Run.State.Terminal() || !(rs.counted || rs.holding) {
		e.runMoved(rs)
		return
	}
	e.unwait(rs)
	b.then(func() {
		if rs.commits == 0 {
			e.runMoved(rs)
		}
	})
}

// dropSlots takes a run leaving memory out of every count and line.
func (e *Engine) dropSlots(rs *runState) {
	e.unwait(rs)
	e.setCounted(rs, false)
	e.setHolding(rs, false)
}

// setCounted counts rs among its tenant's active runs, or not.
func (e *Engine) setCounted(rs *runState, on bool) {
	if rs.counted == on {
		return
	}
	rs.counted = on
	ts := e.tenantSlots(rs.tenant)
	if on {
		ts.active++
		return
	}
	ts.active--
	if ts.pending > 0 {
		ts.freedBy = rs.id
		e.kickAdmit()
	}
	e.tidyTenant(rs.tenant, ts)
}

// setHolding makes rs one of its key's holders, or not.
func (e *Engine) setHolding(rs *runState, on bool) {
	if rs.holding == on || rs.ckey == "" {
		return
	}
	rs.holding = on
	id := keyOf(rs)
	ks := e.keySlots(id)
	if on {
		ks.holders = append(ks.holders, rs)
		return
	}
	for i, h := range ks.holders {
		if h == rs {
			ks.holders = append(ks.holders[:i], ks.holders[i+1:]...)
			break
		}
	}
	if ks.queue.Len() > 0 {
		ks.freedBy = rs.id
		e.kickAdmit()
	}
	e.tidyKey(id, ks)
}

// park puts a pending run in line: behind its key when the key's slots are
// taken or others wait for it, else for a slot of its tenant (holding one
// of its key's meanwhile).
func (e *Engine) park(rs *runState) {
	if rs.waitq != nil {
		return
	}
	ts := e.tenantSlots(rs.tenant)
	ts.pending++
	e.npending++
	if rs.ckey != "" {
		id := keyOf(rs)
		ks := e.keySlots(id)
		if len(ks.holders) >= keyMax(rs) || ks.queue.Len() > 0 {
			rs.waitq, rs.waitFor = &ks.queue, WaitConcurrencyKey
			heap.Push(&ks.queue, rs)
			e.kwait[id] = ks
			return
		}
	}
	e.waitTenant(rs, ts)
	e.kickAdmit()
}

// waitTenant puts rs in its tenant's line, holding a slot of its key.
func (e *Engine) waitTenant(rs *runState, ts *tenantSlots) {
	rs.waitq, rs.waitFor = &ts.queue, WaitTenantActiveRuns
	heap.Push(&ts.queue, rs)
	e.setHolding(rs, true)
}

// unwait takes rs out of the line it waits in.
func (e *Engine) unwait(rs *runState) {
	if rs.waitq == nil {
		return
	}
	heap.Remove(rs.waitq, rs.qidx)
	rs.waitq = nil
	ts := e.tenantSlots(rs.tenant)
	ts.pending--
	e.npending--
	if rs.waitFor == WaitConcurrencyKey {
		id := keyOf(rs)
		ks := e.keySlots(id)
		if ks.queue.Len() == 0 {
			delete(e.kwait, id)
		}
		e.tidyKey(id, ks)
	}
	rs.waitFor = ""
	e.tidyTenant(rs.tenant, ts)
}

func (e *Engine) kickAdmit() {
	select {
	case e.admitWake <- struct{}{}:
	default:
	}
}

// admission is what admit decided about a new run.
type admission struct {
	start  bool      // start it now; else it waits
	victim *runState // with cancel_in_progress: the run to cancel first
}

// admit decides about a new run of the tenant under quotas q: start, wait,
// or an error (*QuotaError, *ConcurrencyLimitedError) refusing it.
func (e *Engine) admit(rs *runState, q TenantQuotas) (admission, error) {
	var a admission
	active, queued, pending := 0, 0, 0
	if ts := e.tslots[rs.tenant]; ts != nil {
		active, queued, pending = ts.active, ts.queue.Len(), ts.pending
	}
	keyFree := true
	if rs.ckey != "" {
		if ks := e.kslots[keyOf(rs)]; ks != nil && (len(ks.holders) >= keyMax(rs) || ks.queue.Len() > 0) {
			switch rs.plan.Concurrency.Strategy {
			case definition.StrategyCancelNewest:
				return a, &ConcurrencyLimitedError{Workflow: rs.view.Run.Workflow, Key: rs.ckey, Max: keyMax(rs)}
			case definition.StrategyCancelInProgress:
				a.victim = oldestHolder(ks)
				keyFree = a.victim != nil && len(ks.holders)-1 < keyMax(rs)
				switch {
				case a.victim == nil && reloadingOnly(ks):
					// None can be cancelled before it is back.
					return a, fmt.Errorf("the runs holding concurrency key %q of %s are being reloaded; try again: %w",
						rs.ckey, rs.view.Run.Workflow, ErrConflict)
				case a.victim == nil && ks.queue.Len() > 0:
					// The holders are ending, and a run already waits for
					// one of their slots: the new run supersedes it and
					// takes its place in line.
					a.victim = ks.queue[0]
					pending--
					keyFree = len(ks.holders) < keyMax(rs) && ks.queue.Len() == 1
				case a.victim == nil:
					// The holders are ending, their slots free once their
					// ends are durable: the run waits for one.
				case a.victim.counted:
					active--
				default:
					queued--
					pending--
				}
			default:
				keyFree = false
			}
		}
	}
	tenantFull := q.MaxActiveRuns > 0 && active+queued >= q.MaxActiveRuns
	if keyFree && !tenantFull {
		a.start = true
		return a, nil
	}
	if tenantFull && q.OnActiveLimit != OnActiveQueue {
		return admission{}, &QuotaError{Quota: QuotaMaxActiveRuns, Limit: float64(q.MaxActiveRuns), RetryAfter: time.Second,
			Message: fmt.Sprintf("tenant %s has %d active runs, its max_active_runs, and on_active_limit is reject", rs.tenant, active+queued)}
	}
	if q.MaxPendingRuns > 0 && pending >= q.MaxPendingRuns {
		return admission{}, &QuotaError{Quota: QuotaMaxPendingRuns, Limit: float64(q.MaxPendingRuns), RetryAfter: time.Second,
			Message: fmt.Sprintf("tenant %s has %d runs waiting for a slot, its max_pending_runs", rs.tenant, pending)}
	}
	return a, nil
}

// oldestHolder is the run cancel_in_progress cancels: the oldest active
// holder of the key, else the oldest one waiting for a tenant slot; never
// one being reloaded or already ending (nil if all are).
func oldestHolder(ks *keySlots) *runState {
	var best *runState
	for _, h := range ks.holders {
		switch {
		case h.reserved, h.view.Run.State.Terminal():
		case best == nil, h.counted && !best.counted:
			best = h
		case h.counted == best.counted && runQueue{h, best}.Less(0, 1):
			best = h
		}
	}
	return best
}

// reloadingOnly says whether the key has holders and all of them are being
// reloaded after a failed commit.
func reloadingOnly(ks *keySlots) bool {
	for _, h := range ks.holders {
		if !h.reserved {
			return false
		}
	}
	return len(ks.holders) > 0
}

// supersede cancels victim for the new run id (cancel_in_progress) and
// returns the batch recording it, for the new run's commit to write first
// in its transaction: the cancellation is durable only with the run it
// names.
func (e *Engine) supersede(victim *runState, id string) *batch {
	b := e.newBatch(victim, ActorEngine)
	b.handover = true
	e.endRun(b, EventRunCancelled, WaitConcurrencyKey+": superseded by "+id)
	e.fixRun(victim)
	return b
}

// parkedAt returns the creation time of a run that waits: after every
// other waiting run's, so that the created order is the line's order, after
// a restart too.
func (e *Engine) parkedAt(now time.Time) time.Time {
	if !now.After(e.lastParked) {
		now = e.lastParked.Add(time.Microsecond)
	}
	e.lastParked = now
	return now
}

// admitLoop starts waiting runs as slots free (and every admitTick, for
// quotas raised meanwhile) until Stop.
func (e *Engine) admitLoop() {
	t := time.NewTicker(admitTick)
	defer t.Stop()
	for {
		select {
		case <-e.quit:
			return
		case <-e.admitWake:
		case <-t.C:
		}
		e.admitOnce(e.hctx)
	}
}

// admitOnce starts every waiting run a slot is free for.
func (e *Engine) admitOnce(ctx context.Context) {
	e.mu.Lock()
	if e.npending == 0 {
		e.mu.Unlock()
		return
	}
	var tenants []string
	for id, ts := range e.tslots {
		if ts.pending > 0 {
			tenants = append(tenants, id)
		}
	}
	e.mu.Unlock()
	quotas := make(map[string]TenantQuotas, len(tenants))
	for _, id := range tenants {
		q, err := e.quotasFor(ctx, id)
		if err != nil {
			e.log.Warn("read quotas of a tenant with waiting runs", logTenant, id, logErr, err)
			continue
		}
		quotas[id] = q
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return
	}
	e.admitRound++
	// Runs whose key has a free slot go on to their tenant's line, where
	// they start at once if the tenant has room.
	for id, ks := range e.kwait {
		if _, ok := quotas[id.tenant]; !ok {
			continue
		}
		for ks.queue.Len() > 0 && len(ks.holders) < keyMax(ks.queue[0]) {
			rs := ks.queue[0]
			heap.Pop(&ks.queue)
			rs.freedBy, rs.freedRound = WaitConcurrencyKey+":"+rs.ckey+": slot freed", e.admitRound
			if ks.freedBy != "" {
				rs.freedBy += " by " + ks.freedBy
				ks.freedBy = ""
			}
			e.waitTenant(rs, e.tenantSlots(rs.tenant))
		}
		if ks.queue.Len() == 0 {
			delete(e.kwait, id)
		} else {
			ks.freedBy = "" // the slot it names let none start: a later start is another's doing
			e.supersedeFor(ks)
		}
	}
	for id, q := range quotas {
		ts := e.tslots[id]
		if ts == nil {
			continue
		}
		for ts.queue.Len() > 0 && (q.MaxActiveRuns <= 0 || ts.active < q.MaxActiveRuns) {
			rs := ts.queue[0]
			reason := rs.freedBy
			if rs.freedRound != e.admitRound {
				// It waited for its tenant last: name that slot.
				reason = WaitTenantActiveRuns + ": slot freed"
				if ts.freedBy != "" {
					reason += " by " + ts.freedBy
				}
				ts.freedBy = ""
			}
			e.unwait(rs)
			rs.freedBy = ""
			e.startParked(rs, reason)
			if e.tslots[id] != ts {
				break // the tenant's slots were tidied away: nothing waits
			}
		}
		if e.tslots[id] == ts && ts.queue.Len() > 0 {
			// At its cap (lowered meanwhile): the slot freedBy names let
			// none start, so the start a raise allows must not name it.
			ts.freedBy = ""
		}
	}
}

// supersedeFor cancels, for the run first in line of a cancel_in_progress
// key, the holder its start would have cancelled: one that is active again
// because its end, which the run waited for, failed to commit. The
// cancellation commits on its own; the slot frees for the line once it is
// durable, and a failure only leaves the next round to try again.
func (e *Engine) supersedeFor(ks *keySlots) {
	head := ks.queue[0]
	if c := head.plan.Concurrency; c == nil || c.Strategy != definition.StrategyCancelInProgress {
		return
	}
	v := oldestHolder(ks)
	if v == nil {
		return // the holders are ending or being reloaded
	}
	b := e.newBatch(v, ActorEngine)
	e.endRun(b, EventRunCancelled, WaitConcurrencyKey+": superseded by "+head.id)
	b.commit(nil)
	e.fixRun(v)
}

// startParked starts a run that waited.
func (e *Engine) startParked(rs *runState, reason string) {
	if rs.broken || e.runs[rs.id] != rs || rs.view.Run.State != RunPending {
		e.setHolding(rs, false)
		return
	}
	b := e.newBatch(rs, ActorEngine)
	e.startRunWhy(b, EventRunStarted, reason)
	b.commit(nil)
	e.fixRun(rs)
}

// QueuedReason says why a pending run waits and its place in line (1 is
// next). ok is false when the run does not wait (not pending, unknown, or
// another tenant's).
func (e *Engine) QueuedReason(tenantID, runID string) (reason QueueReason, position int, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rs := e.runs[runID]
	if rs == nil || rs.tenant != tenantID || rs.waitq == nil {
		return QueueReason{}, 0, false
	}
	position = 1
	q := *rs.waitq
	for i := range q {
		if i != rs.qidx && q.Less(i, rs.qidx) {
			position++
		}
	}
	reason = QueueReason{Code: rs.waitFor}
	if rs.waitFor == WaitConcurrencyKey {
		reason.Key = rs.ckey
	}
	return reason, position, true
}
