package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// breakRun handles a failed commit: the run in memory is ahead of the store,
// so it is dropped and loaded again from what is durable, after a backoff
// that grows while its commits keep failing.
func (e *Engine) breakRun(rs *runState, err error) {
	if rs.broken {
		return
	}
	rs.broken = true
	n := e.fails.note(rs.id, err, time.Now())
	delay := reloadDelay(n)
	switch {
	case errors.Is(err, ErrStorageUnavailable):
		// The store logs once when its storage fails and once when it is
		// back; a line per failed commit would flood the log.
		e.log.Debug("commit failed: storage unavailable; reloading run", logRun, rs.id, "failures", n, "delay", delay, logErr, err)
	case errors.Is(err, ErrConflict) && n == 1:
		// A lost race: another start took the same idempotency key, or the
		// change was computed from a stale run. One that repeats is a bug.
		e.log.Debug("commit conflicted; reloading run", logRun, rs.id, logErr, err)
	default:
		e.log.Error("commit failed; reloading run", logRun, rs.id, "failures", n, "delay", delay, logErr, err)
	}
	for _, c := range rs.cancels {
		c.cancel()
	}
	if !e.stopping {
		e.reserve(rs)
	}
	e.forget(rs)
	if e.stopping || e.reloading[rs.id] {
		return
	}
	e.reloading[rs.id] = true
	storage := errors.Is(err, ErrStorageUnavailable)
	e.goTracked(func() { e.reload(rs.tenant, rs.id, delay, storage) })
}

// CodeStorageUnavailable is the error of an attempt whose outcome could not
// be recorded because the storage failed (a full disk). The attempt is
// retried once the run is reloaded, without charging the retry budget and
// without counting as abandoned: the process did not die.
const CodeStorageUnavailable = "storage_unavailable"

// lostToStorage is the outcome recorded for an attempt a reload finds
// running after the run's commit failed for the storage's sake.
func lostToStorage() outcome {
	return failed(CodeStorageUnavailable, "the outcome of the attempt could not be recorded: storage unavailable", ReasonInterrupted)
}

// The reload backoff: a run whose commits keep failing is loaded again after
// a wait that doubles with each failure in a row, from reloadMinDelay up to
// reloadMaxDelay, jittered so that many runs do not retry in step. A failure
// more than reloadResetAfter after the previous one counts as the first.
const (
	reloadMinDelay   = 10 * time.Millisecond
	reloadMaxDelay   = 5 * time.Second
	reloadResetAfter = 2 * reloadMaxDelay
)

// commitFailures counts failed commits for the reload backoff. A success
// does not reset a run's count: on a nearly full disk the small commits of
// a reload succeed and the next large one fails, and that cycle must slow
// down too. Protected by Engine.mu.
type commitFailures struct {
	runs map[string]runFailures
	// storage counts commits failed for the storage's sake in a row, across
	// runs; any commit that succeeds resets it. While it grows, every run
	// waits as long as the one that failed most.
	storage int
}

type runFailures struct {
	n    int       // failures in a row
	last time.Time // of the latest
}

// note records a failed commit of run id and returns the failure count its
// reload waits for.
func (f *commitFailures) note(id string, err error, now time.Time) int {
	if f.runs == nil {
		f.runs = map[string]runFailures{}
	}
	r := f.runs[id]
	if now.Sub(r.last) > reloadResetAfter {
		r.n = 0
	}
	r.n++
	r.last = now
	f.runs[id] = r
	if errors.Is(err, ErrStorageUnavailable) {
		f.storage++
		return max(r.n, f.storage)
	}
	return r.n
}

// reloadDelay is the wait before the reload that follows n failed commits in
// a row: reloadMinDelay << (n-1), at most reloadMaxDelay, less up to half of
// it at random.
func reloadDelay(n int) time.Duration {
	d := reloadMaxDelay
	if n < 20 {
		d = min(reloadMinDelay<<max(n-1, 0), reloadMaxDelay)
	}
	return d - rand.N(d/2)
}

// pause waits d, or less if the engine stops; it reports whether to go on.
func (e *Engine) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.quit:
		return false
	case <-t.C:
		return true
	}
}

// reload loads a run of tenant from the store after delay and activates it,
// retrying while the store fails, until the engine stops. With storage, the
// run was dropped because a commit failed for the storage's sake.
func (e *Engine) reload(tenant, id string, delay time.Duration, storage bool) {
	// Once reloadOnce has activated the run it is no longer reloading, and
	// a failed commit may already have started the next reload: only the
	// other ways out clear the mark.
	stop := func() {
		e.mu.Lock()
		e.endReload(tenant, id)
		e.mu.Unlock()
	}
	if !e.pause(delay) {
		stop()
		return
	}
	wait := reloadMinDelay
	for failures := 0; ; failures++ {
		err := e.reloadOnce(tenant, id, storage)
		if err == nil {
			return
		}
		if errors.Is(err, ErrNotFound) {
			// Nothing of it was ever durable (a start whose commit failed).
			e.mu.Lock()
			e.endReload(tenant, id)
			delete(e.fails.runs, id)
			e.mu.Unlock()
			return
		}
		if failures == 0 {
			e.log.Error("reload run failed; retrying with backoff", logRun, id, logErr, err)
		} else {
			e.log.Debug("reload run failed again", logRun, id, "failures", failures+1, logErr, err)
		}
		if !e.pause(wait) {
			stop()
			return
		}
		wait = min(2*wait, reloadMaxDelay)
	}
}

// endReload marks a run as no longer reloading, however the reload ends,
// gives back the slots reserve kept for it, and tells its Wait callers to
// look again. Called with Engine.mu held.
func (e *Engine) endReload(tenant, id string) {
	delete(e.reloading, id)
	e.unreserve(id)
	e.wakeWaiters(tenant, id)
}

func (e *Engine) reloadOnce(tenant, id string, storage bool) error {
	ctx := context.Background()
	run, tasks, err := e.store.LoadRun(ctx, tenant, id)
	if err != nil {
		return err
	}
	v, err := e.restore(ctx, run, tasks)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// Done reloading before activating: if activation's own commit fails,
	// breakRun must be free to start the next reload; the run activated
	// below takes its own slots. Wait, told here, looks once the run is
	// active: it needs Engine.mu.
	e.endReload(tenant, id)
	if run.State.Terminal() {
		delete(e.fails.runs, id)
	}
	if e.runs[id] != nil || e.stopping || run.State.Terminal() {
		return nil
	}
	var lost *outcome
	if storage {
		o := lostToStorage()
		lost = &o
	}
	e.activateLost(v, lost, nil)
	return nil
}

// reserve keeps the slots a run dropped after a failed commit holds (among
// its tenant's active runs, of its concurrency key) until its reload ends:
// else another start would take them meanwhile, and the reloaded run would
// make one more than the cap allows. A pending run leaves its line: the
// reload puts it back in its place, by created time.
func (e *Engine) reserve(rs *runState) {
	e.unreserve(rs.id)
	e.unwait(rs)
	rs.reserved = true
	e.reserved[rs.id] = rs
}

// unreserve gives back the slots reserve kept for run id, if any.
func (e *Engine) unreserve(id string) {
	rs := e.reserved[id]
	if rs == nil {
		return
	}
	delete(e.reserved, id)
	rs.reserved = false
	e.dropSlots(rs)
}
