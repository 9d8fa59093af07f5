package engine

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// runState is an active run in memory: its projection plus what scheduling
// needs. Every field is protected by Engine.mu.
type runState struct {
	tenant  string
	id      string
	view    *RunView
	plan    *definition.Plan
	order   uint64                // activation order: older runs dispatch first at equal priority
	waiting []int32               // per task: dependencies not yet completed
	queue   taskQueue             // dispatchable tasks
	queued  []bool                // per task: in queue or waiting for an external worker
	nqueued int                   // tasks with queued set
	heapIdx int                   // index in its tenant's heap in Engine.ready, -1 when absent
	cancels map[int]attemptCancel // running in-process attempts by position
	timers  map[*timer]struct{}   // armed timers that refer to this run
	watch   map[int]*timer        // the attempt timer of each watched task
	lanes   map[string]*laneRun   // ready tasks waiting for external workers, by type
	// careful marks the tasks whose next attempt's task.started must be
	// durable before the handler runs: those the previous process may have
	// been running when it died. An attempt that kills the process then
	// leaves a record, and MaxAbandoned can bound how often it does.
	careful map[int]bool
	// resolving marks the templates queued for a resolver: task positions,
	// and -1 for the run's output.
	resolving map[int]bool
	// stalledSeq is the run's last seq when it was found stalled (its
	// run.stalled event): while it is still the last, the run is marked.
	stalledSeq int64
	commits    int   // commits queued and not yet acknowledged
	held       int64 // its DataBytes as counted in Engine.heldBytes
	broken     bool  // a commit failed: memory no longer matches the store
	reserved   bool  // broken, its slots kept until its reload ends (reserve)
	// Admission (admission.go): the rendered concurrency key ("" none),
	// whether the run is counted among its tenant's active runs and holds
	// a slot of its key, and the line it waits in while pending.
	ckey       string
	counted    bool
	holding    bool
	waitq      *runQueue
	qidx       int
	waitFor    string // WaitTenantActiveRuns or WaitConcurrencyKey
	freedBy    string // the slot its key freed, for the reason of its start
	freedRound uint64
}

func (e *Engine) newRunState(tenant, id string, v *RunView) *runState {
	e.order++
	n := len(v.plan.Tasks)
	rs := &runState{tenant: tenant, id: id, view: v, plan: v.plan, order: e.order,
		waiting: make([]int32, n), queued: make([]bool, n), heapIdx: -1, cancels: map[int]attemptCancel{}, timers: map[*timer]struct{}{}, watch: map[int]*timer{},
		lanes: map[string]*laneRun{}, ckey: v.Run.ConcurrencyKey, qidx: -1}
	rs.queue.rs = rs
	for i := range v.plan.Tasks {
		rs.waiting[i] = int32(len(v.plan.Tasks[i].Deps))
	}
	return rs
}

// attemptCancel cancels the context of one in-process attempt.
type attemptCancel struct {
	attempt int
	cancel  func()
}

// recount sets waiting from the tasks' states.
func (rs *runState) recount() {
	for i := range rs.plan.Tasks {
		n := int32(0)
		for _, d := range rs.plan.Tasks[i].Deps {
			if rs.view.Tasks[d].State != TaskCompleted {
				n++
			}
		}
		rs.waiting[i] = n
	}
}

// dispatchable reports whether the run belongs in Engine.ready.
func (rs *runState) dispatchable() bool { return rs.queue.Len() > 0 && rs.dispatchableState() }

// dispatchableState reports whether the run may start a task now: it is
// running and below its max_parallel.
func (rs *runState) dispatchableState() bool {
	if rs.broken || rs.view.Run.State != RunRunning {
		return false
	}
	return rs.plan.MaxParallel == 0 || rs.view.Count(TaskRunning) < rs.plan.MaxParallel
}

// taskQueue orders a run's dispatchable tasks: priority (high first), then
// topological position, which already orders equal levels by id.
type taskQueue struct {
	rs  *runState
	pos []int
}

func (q *taskQueue) Len() int { return len(q.pos) }
func (q *taskQueue) Less(i, j int) bool {
	a, b := &q.rs.plan.Tasks[q.pos[i]], &q.rs.plan.Tasks[q.pos[j]]
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Pos < b.Pos
}
func (q *taskQueue) Swap(i, j int) { q.pos[i], q.pos[j] = q.pos[j], q.pos[i] }
func (q *taskQueue) Push(x any)    { q.pos = append(q.pos, x.(int)) }
func (q *taskQueue) Pop() any {
	n := len(q.pos) - 1
	x := q.pos[n]
	q.pos = q.pos[:n]
	return x
}

// runHeap orders one tenant's dispatchable runs by their best task:
// priority, then the older run, then topological position.
type runHeap []*runState

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	ta, tb := &a.plan.Tasks[a.queue.pos[0]], &b.plan.Tasks[b.queue.pos[0]]
	if ta.Priority != tb.Priority {
		return ta.Priority > tb.Priority
	}
	if a.order != b.order {
		return a.order < b.order
	}
	return ta.Pos < tb.Pos
}
func (h runHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *runHeap) Push(x any) {
	rs := x.(*runState)
	rs.heapIdx = len(*h)
	*h = append(*h, rs)
}
func (h *runHeap) Pop() any {
	old := *h
	n := len(old) - 1
	rs := old[n]
	old[n] = nil
	*h = old[:n]
	rs.heapIdx = -1
	return rs
}

// fixRun puts rs in, moves it within, or takes it out of Engine.ready.
func (e *Engine) fixRun(rs *runState) {
	switch want := rs.dispatchable(); {
	case want && rs.heapIdx < 0:
		e.ready.push(rs)
		e.signal()
	case want:
		e.ready.fix(rs)
	case rs.heapIdx >= 0:
		e.ready.remove(rs)
	}
	if len(rs.lanes) > 0 {
		e.fixLanes(rs)
	}
}

// signal wakes one idle worker.
func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// enqueue makes a ready task dispatchable, or arms its timer when it must wait.
func (e *Engine) enqueue(rs *runState, pos int) {
	t := &rs.view.Tasks[pos]
	if rs.broken || t.State != TaskReady || rs.queued[pos] {
		return
	}
	if !t.NotBefore.IsZero() && t.NotBefore.After(e.now()) {
		e.arm(&timer{at: t.NotBefore, kind: timerReady, rs: rs, pos: pos, attempt: t.Attempt})
		return
	}
	if e.isExternal(rs.plan.Tasks[pos].Type) {
		e.enqueueExternal(rs, pos)
		return
	}
	e.markQueued(rs, pos, true)
	heap.Push(&rs.queue, pos)
	e.fixRun(rs)
	e.signal() // one more task for a worker
}

// markQueued records whether a task waits for dispatch.
func (e *Engine) markQueued(rs *runState, pos int, q bool) {
	if rs.queued[pos] == q {
		return
	}
	rs.queued[pos] = q
	d := -1
	if q {
		d = 1
	}
	rs.nqueued += d
	e.m.queued += d
}

// forget removes a run from memory and from the dispatch queues.
func (e *Engine) forget(rs *runState) {
	if rs.heapIdx >= 0 {
		e.ready.remove(rs)
	}
	e.dropLanes(rs)
	if !rs.reserved {
		e.dropSlots(rs)
	}
	if e.runs[rs.id] == rs {
		delete(e.runs, rs.id)
		e.poke(rs)
	}
	e.dropBytes(rs)
	e.m.queued -= rs.nqueued
	e.m.running -= rs.view.Count(TaskRunning)
	rs.nqueued = 0
	for t := range rs.timers {
		heap.Remove(&e.timers, t.idx)
	}
	clear(rs.timers)
	clear(rs.watch)
}

// batch collects the events of one decision about one run, applying each to
// the projection as it is added, and commits them as one Change.
type batch struct {
	e         *Engine
	rs        *runState
	actor     string
	onBehalf  string          // recorded beside the actor on every event
	policy    *PolicyDecision // recorded in the data of the first event, then nil
	insert    bool
	prevSeq   int64
	prevState RunState
	events    []Event
	changed   []int // task positions changed, in order of first change
	mark      map[int]bool
	after     []func() // run under Engine.mu once durable
	now       time.Time
	failed    bool // an event was refused: memory no longer matches what would be written
	handover  bool // the run's slots pass at once to a run committed with it (supersede)
	// With insert: the client's idempotency key and request hash, and the
	// inline definition version to store with the run.
	idemKey, idemHash string
	definition        *StoredDefinition
	schedule          *ScheduleChange // with insert: the schedule's change, in the same commit
}

func (e *Engine) newBatch(rs *runState, actor string) *batch {
	return &batch{e: e, rs: rs, actor: actor, prevSeq: rs.view.Run.LastSeq, prevState: rs.view.Run.State, now: e.clock()}
}

// newBatchBy is newBatch for a decision a caller asked for: its events
// record the caller, and the first of them the policy decision.
func (e *Engine) newBatchBy(rs *runState, c Caller) *batch {
	b := e.newBatch(rs, c.actor())
	b.onBehalf, b.policy = c.OnBehalf, c.Policy
	return b
}

// add appends one event for the run (pos < 0) or a task and applies it. The
// engine only adds events its state allows, so an error here is a bug; the
// run is then reloaded from the store.
func (b *batch) add(typ EventType, pos, attempt int, d *EventData) bool {
	v := b.rs.view
	ev := Event{TenantID: b.rs.tenant, RunID: b.rs.id, Seq: v.Run.LastSeq + 1, Type: typ,
		Attempt: attempt, Actor: b.actor, OnBehalf: b.onBehalf, At: b.now}
	if pos >= 0 {
		ev.TaskID = b.rs.plan.Tasks[pos].ID
	}
	if b.policy != nil {
		if d == nil {
			d = &EventData{}
		}
		d.Policy, b.policy = b.policy, nil
	}
	if d != nil {
		data, err := json.Marshal(d)
		if err != nil {
			b.e.log.Error("encode event", logRun, b.rs.id, logErr, err)
			b.failed = true
			return false
		}
		if string(data) != "{}" {
			ev.Data = data
		}
	}
	ev.Hash = ev.ComputeHash(v.Run.LastHash)
	if d == nil {
		d = &EventData{}
	}
	var from TaskState
	if pos >= 0 {
		from = v.Tasks[pos].State
	}
	fromRun := v.Run.State
	if err := v.apply(&ev, d); err != nil {
		b.e.log.Error("refused event", logRun, b.rs.id, logTask, ev.TaskID, "type", typ, logErr, err)
		b.failed = true
		return false
	}
	if pos >= 0 {
		b.e.m.taskMoved(&ev, from, v.Tasks[pos].State)
	} else if v.Run.State != fromRun {
		b.e.runMovedIn(b)
	}
	b.events = append(b.events, ev)
	if pos >= 0 {
		if b.mark == nil {
			b.mark = map[int]bool{}
		}
		if !b.mark[pos] {
			b.mark[pos] = true
			b.changed = append(b.changed, pos)
		}
	}
	return true
}

// then runs f under Engine.mu once the batch is durable.
func (b *batch) then(f func()) { b.after = append(b.after, f) }

// commit hands the batch to the store. done, if not nil, is called with the
// outcome after the engine has processed it; it may be called before commit
// returns, with Engine.mu held, so it must not block nor take Engine.mu.
func (b *batch) commit(done func(error)) { commitTogether(done, b) }

// commitTogether commits the batches of several runs in one transaction:
// all are durable, or none is and each run is reloaded. done is as for
// batch.commit.
func commitTogether(done func(error), bs ...*batch) {
	if done == nil {
		done = func(error) {}
	}
	e := bs[0].e
	for _, b := range bs {
		if b.failed {
			// Part of the decision was refused: writing the rest would
			// record a half. Reload the runs from what is durable instead,
			// each keeping the slots the store says it holds.
			err := fmt.Errorf("run %s: a decision was refused: %w", b.rs.id, ErrInvalidTransition)
			for _, b := range bs {
				b.fail(err, b.rs.commits > 0)
			}
			done(err)
			return
		}
	}
	var ps []pending
	var changes []Change
	for _, b := range bs {
		if len(b.events) > 0 {
			ps = append(ps, b.pending())
			changes = append(changes, ps[len(ps)-1].ch)
		}
	}
	if len(ps) == 0 {
		done(nil)
		return
	}
	e.commitWG.Add(1)
	e.store.Commit(changes, func(err error) {
		e.mu.Lock()
		for i := range ps {
			ps[i].settle(err)
		}
		e.mu.Unlock()
		done(err)
		e.commitWG.Done()
	})
}

// pending is a batch handed to the store, until its outcome is known.
type pending struct {
	b      *batch
	ch     Change
	change RunChange // published once durable
}

// pending makes the batch's change and counts it in flight.
func (b *batch) pending() pending {
	rs, e := b.rs, b.e
	ch := Change{Run: rs.view.Run, Insert: b.insert, PrevSeq: b.prevSeq, PrevState: b.prevState, Events: b.events,
		IdempotencyKey: b.idemKey, RequestHash: b.idemHash, Definition: b.definition, Schedule: b.schedule}
	if b.insert {
		ch.Tasks = append([]Task(nil), rs.view.Tasks...)
	} else {
		ch.Tasks = make([]Task, len(b.changed))
		for i, pos := range b.changed {
			ch.Tasks[i] = rs.view.Tasks[pos]
		}
	}
	if e.runs[rs.id] == rs {
		e.holdBytes(rs)
	}
	rs.commits++
	return pending{b: b, ch: ch, change: RunChange{TenantID: rs.tenant, RunID: rs.id, LastSeq: ch.Run.LastSeq,
		State: ch.Run.State, PrevState: b.prevState, Created: b.insert}}
}

// settle processes the outcome of the commit. Engine.mu must be held.
func (p *pending) settle(err error) {
	rs, e := p.b.rs, p.b.e
	rs.commits--
	if err != nil {
		p.b.fail(err, false) // the run's earlier commits are settled
		return
	}
	e.fails.storage = 0
	if e.subs.n > 0 {
		p.change.DurableAt = time.Now()
		e.publish(p.change)
	}
	if !rs.broken {
		for _, f := range p.b.after {
			f()
		}
		e.release(rs)
	}
}

// fail reloads the batch's run after its commit failed or was refused,
// its slots first set to what the store holds until the reload ends: its
// own for a run active there, whatever the batch did in memory (a run
// superseded handed its slot over); none for one that ended there (a
// retry that was not recorded) or that the batch was to record (a start
// meanwhile must not be refused for it). With earlier, commits of the run
// made before the batch may still be in flight, so the store may yet hold
// an ended run active: its slots stay as they are.
func (b *batch) fail(err error, earlier bool) {
	rs, e := b.rs, b.e
	if !rs.broken {
		switch {
		case !b.insert && activeState(b.prevState):
			e.setCounted(rs, true)
			e.setHolding(rs, true) // a no-op without a key
		case b.insert, b.prevState.Terminal() && !earlier:
			e.dropSlots(rs)
		}
	}
	e.breakRun(rs, err)
}

// release forgets a finished run once nothing about it is in flight.
func (e *Engine) release(rs *runState) {
	if rs.view.Run.State.Terminal() && rs.commits == 0 && e.runs[rs.id] == rs {
		e.aliasRunEnded(&rs.view.Run)
		e.forget(rs)
		delete(e.fails.runs, rs.id)
	}
}
