package engine

import (
	"container/heap"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Limits of the external worker protocol.
const (
	DefaultLease = 30 * time.Second
	MaxLease     = 24 * time.Hour
	MaxPollWait  = 60 * time.Second
)

// ErrLeaseLost is returned to a worker whose lease token does not name the
// attempt under way: it expired, the run was cancelled, or the token is wrong.
var ErrLeaseLost = errors.New("lease lost")

// LeaseError is a refused worker call: the token does not hold the attempt.
// It wraps ErrLeaseLost and says what the task is now.
type LeaseError struct {
	ID      string
	State   TaskState
	Attempt int // the task's current attempt
	Reason  string
}

func (e *LeaseError) Error() string {
	return fmt.Sprintf("task %s: %s (task is %s, attempt %d)", e.ID, e.Reason, e.State, e.Attempt)
}

func (e *LeaseError) Unwrap() error { return ErrLeaseLost }

// PollRequest asks for one ready task of the given types.
type PollRequest struct {
	TenantID string
	Types    []string
	WorkerID string
	Lease    time.Duration // how long the attempt is held without a heartbeat
	Wait     time.Duration // how long to wait for a task; 0 = answer at once
	// By is who polls (the worker's key): the events of the attempt
	// record it acting on behalf of WorkerID (unless it names someone
	// else). The zero Caller records WorkerID as the actor.
	By Caller
	// Policies are the policy's decisions by task type: the one of the
	// type leased is recorded on its task.started.
	Policies map[string]*PolicyDecision
}

// workerCaller is who the events of a worker's call record: the caller (its
// key) acting on behalf of whom it names, else of the worker id; without a
// caller the worker id as the actor.
func workerCaller(by Caller, workerID string) Caller {
	switch {
	case by.Actor == "":
		by.Actor = workerID
	case by.OnBehalf == "":
		by.OnBehalf = workerID
	}
	return by
}

// Lease is an attempt handed to an external worker. ID names it in
// Heartbeat, Complete and Fail; Token proves the worker holds it.
type Lease struct {
	ID        string          `json:"id"`
	TenantID  string          `json:"tenant_id"`
	RunID     string          `json:"run_id"`
	TaskID    string          `json:"task_id"`
	Type      string          `json:"type"`
	Attempt   int             `json:"attempt"`
	Input     json.RawMessage `json:"input"`
	Config    json.RawMessage `json:"config,omitempty"`
	Token     string          `json:"lease_token"`
	ExpiresAt time.Time       `json:"lease_expires_at"`
}

// LeaseID names an attempt: run, task and attempt number. "~" appears in
// neither run ids nor task ids.
func LeaseID(runID, taskID string, attempt int) string {
	return runID + "~" + taskID + "~" + strconv.Itoa(attempt)
}

// ParseLeaseID splits a LeaseID.
func ParseLeaseID(id string) (runID, taskID string, attempt int, err error) {
	parts := strings.Split(id, "~")
	if len(parts) == 3 {
		attempt, err = strconv.Atoi(parts[2])
		if err == nil && attempt > 0 && parts[0] != "" && parts[1] != "" {
			return parts[0], parts[1], attempt, nil
		}
	}
	return "", "", 0, fmt.Errorf("task id %q: want RUN~TASK~ATTEMPT: %w", id, ErrNotFound)
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// lane is the queue of one tenant's ready tasks of one external type. Runs
// take turns: after a run gives a task it goes behind the other runs of the
// same priority, so one large run cannot starve the rest.
type lane struct {
	key     string
	runs    laneHeap
	served  uint64
	waiters map[chan struct{}]bool // pollers waiting; each channel has room for one wake-up
}

// laneRun is one run's ready tasks in a lane.
type laneRun struct {
	rs     *runState
	q      taskQueue
	idx    int // in lane.runs, -1 when absent
	served uint64
}

type laneHeap []*laneRun

func (h laneHeap) Len() int { return len(h) }
func (h laneHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	pa, pb := a.rs.plan.Tasks[a.q.pos[0]].Priority, b.rs.plan.Tasks[b.q.pos[0]].Priority
	if pa != pb {
		return pa > pb
	}
	if a.served != b.served {
		return a.served < b.served
	}
	return a.rs.order < b.rs.order
}
func (h laneHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *laneHeap) Push(x any) {
	lr := x.(*laneRun)
	lr.idx = len(*h)
	*h = append(*h, lr)
}
func (h *laneHeap) Pop() any {
	old := *h
	n := len(old) - 1
	lr := old[n]
	old[n] = nil
	*h = old[:n]
	lr.idx = -1
	return lr
}

func laneKey(tenantID, typ string) string { return tenantID + "\x00" + typ }

// isExternal reports whether tasks of typ wait for an external worker.
func (e *Engine) isExternal(typ string) bool {
	_, ok := e.handlers[typ]
	return !ok && typ != definition.TypeSleep && e.ext
}

// lane returns the lane of key, creating it.
func (e *Engine) lane(key string) *lane {
	l := e.lanes[key]
	if l == nil {
		l = &lane{key: key, waiters: map[chan struct{}]bool{}}
		e.lanes[key] = l
	}
	return l
}

// tidyLane forgets a lane nothing is queued in or waiting on, so that made-up
// type names cannot grow the map. A run whose tasks wait while it is paused
// recreates its lane when it resumes (fixLanes).
func (e *Engine) tidyLane(l *lane) {
	if l.runs.Len() == 0 && len(l.waiters) == 0 && e.lanes[l.key] == l {
		delete(e.lanes, l.key)
	}
}

// enqueueExternal puts a ready task in its lane and wakes a poller.
func (e *Engine) enqueueExternal(rs *runState, pos int) {
	typ := rs.plan.Tasks[pos].Type
	l := e.lane(laneKey(rs.tenant, typ))
	lr := rs.lanes[typ]
	if lr == nil {
		lr = &laneRun{rs: rs, idx: -1}
		lr.q.rs = rs
		rs.lanes[typ] = lr
	}
	e.markQueued(rs, pos, true)
	heap.Push(&lr.q, pos)
	e.fixLane(l, lr)
}

// fixLane puts a run's lane entry in, moves it within, or takes it out of
// its lane, and wakes a poller when there is work.
func (e *Engine) fixLane(l *lane, lr *laneRun) {
	switch want := lr.q.Len() > 0 && lr.rs.dispatchableState(); {
	case want && lr.idx < 0:
		heap.Push(&l.runs, lr)
	case want:
		heap.Fix(&l.runs, lr.idx)
	case lr.idx >= 0:
		heap.Remove(&l.runs, lr.idx)
	}
	if l.runs.Len() > 0 {
		for ch := range l.waiters {
			delete(l.waiters, ch)
			select { // room for one wake-up: a poller woken twice is woken once
			case ch <- struct{}{}:
			default:
			}
			break
		}
	}
	e.tidyLane(l)
}

// fixLanes fixes every lane entry of a run (after pause, resume, a change in
// its running count).
func (e *Engine) fixLanes(rs *runState) {
	for typ, lr := range rs.lanes {
		if lr.q.Len() > 0 || lr.idx >= 0 {
			e.fixLane(e.lane(laneKey(rs.tenant, typ)), lr)
		}
	}
}

// dropLanes takes a forgotten run out of every lane.
func (e *Engine) dropLanes(rs *runState) {
	for typ, lr := range rs.lanes {
		if l := e.lanes[laneKey(rs.tenant, typ)]; l != nil {
			if lr.idx >= 0 {
				heap.Remove(&l.runs, lr.idx)
			}
			e.tidyLane(l)
		}
	}
}

// Poll leases the best ready task of the given types to an external worker,
// waiting up to req.Wait for one. It returns nil, nil when none came. The
// lease is durable before it is returned.
func (e *Engine) Poll(ctx context.Context, req PollRequest) (*Lease, error) {
	if req.Lease <= 0 {
		req.Lease = DefaultLease
	}
	req.Lease = min(req.Lease, MaxLease)
	req.Wait = min(max(req.Wait, 0), MaxPollWait)
	deadline := time.NewTimer(req.Wait)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		if e.stopping {
			e.mu.Unlock()
			return nil, ErrClosed
		}
		e.notePoll(req.TenantID, req.Types)
		lease, done := e.leaseNext(req)
		var wake chan struct{}
		if lease == nil {
			wake = make(chan struct{}, 1)
			for _, typ := range req.Types {
				e.lane(laneKey(req.TenantID, typ)).waiters[wake] = true
			}
		}
		e.mu.Unlock()
		if lease != nil {
			if err := <-done; err != nil {
				return nil, err
			}
			return lease, nil
		}
		woken := false
		select {
		case <-wake:
			woken = true
		case <-deadline.C:
		case <-ctx.Done():
		case <-e.quit:
		}
		// Whatever ended the wait, the channel leaves every lane it waited in.
		e.mu.Lock()
		for _, typ := range req.Types {
			if l := e.lanes[laneKey(req.TenantID, typ)]; l != nil {
				delete(l.waiters, wake)
				e.tidyLane(l)
			}
		}
		e.mu.Unlock()
		if woken {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, nil
	}
}

// leaseNext starts the best ready task of req's types, if any, and records
// its lease. Called with e.mu held.
func (e *Engine) leaseNext(req PollRequest) (*Lease, chan error) {
	var best *lane
	for _, typ := range req.Types {
		l := e.lanes[laneKey(req.TenantID, typ)]
		if l == nil || l.runs.Len() == 0 {
			continue
		}
		if best == nil || laneBefore(l.runs[0], best.runs[0]) {
			best = l
		}
	}
	if best == nil {
		return nil, nil
	}
	lr := best.runs[0]
	rs := lr.rs
	pos := heap.Pop(&lr.q).(int)
	e.markQueued(rs, pos, false)
	best.served++
	lr.served = best.served
	t, pt := &rs.view.Tasks[pos], &rs.plan.Tasks[pos]
	if t.State != TaskReady {
		e.fixLane(best, lr)
		return e.leaseNext(req)
	}
	var raw [16]byte
	rand.Read(raw[:])
	token := hex.EncodeToString(raw[:])
	by := workerCaller(req.By, req.WorkerID)
	if d := req.Policies[pt.Type]; d != nil {
		by.Policy = d
	}
	b := e.newBatchBy(rs, by)
	attempt := t.Attempt + 1
	if !b.add(EventTaskStarted, pos, attempt, &EventData{WorkerID: req.WorkerID,
		LeaseExpiresAt: b.now.Add(req.Lease), LeaseHash: hashToken(token)}) {
		b.commit(nil) // a refused event breaks the run, which reloads and queues the task again
		return nil, nil
	}
	if terr := unresolved(t); terr != nil {
		b.commit(nil)
		e.finishAttempt(rs, pos, attempt, outcome{err: terr, reason: ReasonPermanent, permanent: true})
		return e.leaseNext(req)
	}
	lease := &Lease{ID: LeaseID(rs.id, pt.ID, attempt), TenantID: rs.tenant, RunID: rs.id, TaskID: pt.ID,
		Type: pt.Type, Attempt: attempt, Input: e.inputOf(rs, pos), Config: pt.Config, Token: token,
		ExpiresAt: t.LeaseExpiresAt}
	if lease.Input == nil {
		lease.Input = json.RawMessage("null")
	}
	done := make(chan error, 1)
	b.commit(func(err error) { done <- err })
	e.armAttempt(rs, pos)
	e.fixRun(rs)
	return lease, done
}

// laneBefore orders the head runs of two lanes like laneHeap does.
func laneBefore(a, b *laneRun) bool { return laneHeap{a, b}.Less(0, 1) }

// attemptOf finds the task a lease id names, loading a finished run from the
// store. Called without e.mu; returns with it held when rs is not nil.
func (e *Engine) attemptOf(ctx context.Context, tenantID, id string) (*runState, int, int, error) {
	runID, taskID, attempt, err := ParseLeaseID(id)
	if err != nil {
		return nil, 0, 0, err
	}
	e.mu.Lock()
	rs := e.runs[runID]
	if rs == nil {
		e.mu.Unlock()
		run, tasks, err := e.store.LoadRun(ctx, tenantID, runID)
		if errors.Is(err, ErrNotFound) {
			return nil, 0, 0, fmt.Errorf("task %s: %w", id, err)
		}
		if err != nil {
			return nil, 0, 0, err
		}
		v, err := e.restore(ctx, run, tasks)
		if err != nil {
			return nil, 0, 0, err
		}
		e.mu.Lock()
		if rs = e.runs[runID]; rs == nil {
			if !run.State.Terminal() {
				e.mu.Unlock()
				return nil, 0, 0, fmt.Errorf("run %s is being reloaded; try again: %w", runID, ErrConflict)
			}
			// Finished: answer from a detached copy, never dispatched.
			rs = &runState{tenant: run.TenantID, id: run.ID, view: v, plan: v.plan, heapIdx: -1, broken: true}
		}
	}
	if e.stopping {
		e.mu.Unlock()
		return nil, 0, 0, ErrClosed
	}
	pos, ok := rs.plan.Index[taskID]
	if rs.tenant != tenantID || !ok {
		e.mu.Unlock()
		return nil, 0, 0, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	return rs, pos, attempt, nil
}

// LeaseTaskType returns the task type of the attempt a lease id names, for
// the checks made before a worker's report is taken (the task types a
// worker's key may lease, a policy). Errors: ErrNotFound, ErrConflict (the
// run is being reloaded), ErrClosed.
func (e *Engine) LeaseTaskType(ctx context.Context, tenantID, id string) (string, error) {
	rs, pos, _, err := e.attemptOf(ctx, tenantID, id)
	if err != nil {
		return "", err
	}
	typ := rs.plan.Tasks[pos].Type
	e.mu.Unlock()
	return typ, nil
}

// holds checks that token holds the attempt under way. Called with e.mu held.
func (e *Engine) holds(rs *runState, pos, attempt int, token, id string) error {
	t := &rs.view.Tasks[pos]
	if t.Attempt != attempt || t.LeaseHash == "" || t.LeaseHash != hashToken(token) {
		return &LeaseError{ID: id, State: t.State, Attempt: t.Attempt, Reason: "the lease token does not hold this attempt"}
	}
	if t.State != TaskRunning || rs.broken {
		return &LeaseError{ID: id, State: t.State, Attempt: t.Attempt, Reason: "the attempt is no longer running"}
	}
	if !t.LeaseExpiresAt.IsZero() && !e.now().Before(t.LeaseExpiresAt) {
		return &LeaseError{ID: id, State: t.State, Attempt: t.Attempt, Reason: "the lease expired"}
	}
	return nil
}

// Heartbeat extends a lease and returns the new expiry; by is who calls (the
// worker's key), recorded acting on behalf of the lease's worker. Errors:
// ErrNotFound, a *LeaseError (409: expired, cancelled, wrong token).
func (e *Engine) Heartbeat(ctx context.Context, tenantID, id, token string, lease time.Duration, by Caller) (time.Time, error) {
	rs, pos, attempt, err := e.attemptOf(ctx, tenantID, id)
	if err != nil {
		return time.Time{}, err
	}
	if err := e.holds(rs, pos, attempt, token, id); err != nil {
		e.mu.Unlock()
		return time.Time{}, err
	}
	if lease <= 0 {
		lease = DefaultLease
	}
	lease = min(lease, MaxLease)
	b := e.newBatchBy(rs, workerCaller(by, rs.view.Tasks[pos].WorkerID))
	b.add(EventTaskLeaseExtended, pos, attempt, &EventData{LeaseExpiresAt: b.now.Add(lease)})
	expires := rs.view.Tasks[pos].LeaseExpiresAt
	done := make(chan error, 1)
	b.commit(func(err error) { done <- err })
	e.armAttempt(rs, pos)
	e.mu.Unlock()
	if err := <-done; err != nil {
		return time.Time{}, err
	}
	return expires, nil
}

// OutputError is an output Complete refused: over MaxOutputBytes
// (Code CodeOutputTooLarge) or not JSON ("invalid_output"). Nothing was
// recorded and the lease still holds the attempt, so that the worker can
// complete it with an output that fits or fail it with its own reason.
type OutputError struct {
	Code    string
	Message string
}

func (e *OutputError) Error() string { return e.Code + ": " + e.Message }

// Complete records an external attempt's success; by is who calls, as for
// Heartbeat. Repeating it with the same token after it was recorded answers
// nil and records nothing. An output that is too large or not JSON is
// refused with an *OutputError.
func (e *Engine) Complete(ctx context.Context, tenantID, id, token string, output json.RawMessage, by Caller) error {
	o := checkOutput(output)
	if o.err != nil {
		return &OutputError{Code: o.err.Code, Message: o.err.Message}
	}
	o.by = by
	return e.report(ctx, tenantID, id, token, o, TaskCompleted)
}

// Fail records an external attempt's failure; by is who calls, as for
// Heartbeat. retryable false fails the task at once; otherwise its retry
// policy decides. Repeating it answers nil.
func (e *Engine) Fail(ctx context.Context, tenantID, id, token string, terr *TaskError, retryable bool, by Caller) error {
	if terr == nil || terr.Code == "" {
		terr = &TaskError{Code: "error", Message: "the worker reported a failure"}
	}
	o := outcome{err: terr, reason: ReasonError, permanent: !retryable, by: by}
	if !retryable {
		o.reason = ReasonPermanent
	}
	return e.report(ctx, tenantID, id, token, o, "")
}

func (e *Engine) report(ctx context.Context, tenantID, id, token string, o outcome, want TaskState) error {
	rs, pos, attempt, err := e.attemptOf(ctx, tenantID, id)
	if err != nil {
		return err
	}
	if err := e.holds(rs, pos, attempt, token, id); err != nil {
		t := &rs.view.Tasks[pos]
		// The same report again, after it was recorded: answer as the first time.
		repeat := t.Attempt == attempt && t.LeaseHash == hashToken(token) && t.WorkerID != "" &&
			((want == TaskCompleted && t.State == TaskCompleted) ||
				(want == "" && t.State != TaskRunning && t.State != TaskCompleted && t.State != TaskCancelled && t.Error != nil &&
					o.err != nil && t.Error.Code == o.err.Code))
		e.mu.Unlock()
		if repeat {
			return nil
		}
		return err
	}
	if o.err != nil && !o.permanent && rs.plan.Tasks[pos].Retry.NonRetryable(o.err.Code) {
		o.permanent, o.reason = true, ReasonPermanent
	}
	o.by = workerCaller(o.by, rs.view.Tasks[pos].WorkerID)
	done := make(chan error, 1)
	e.finishAttemptThen(rs, pos, attempt, o, func(err error) { done <- err })
	e.mu.Unlock()
	return <-done
}
