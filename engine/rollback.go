package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Automatic rollback: the engine counts how the runs started through an
// alias end, per version, and moves a split alias back to its older
// version when the newer fails more often by the alias's margin. The
// counts live in memory; after a restart, the first finished run of an
// alias loads them again from the store (the last runs of each version).

// maxPendingOutcomes bounds the finished runs waiting to be counted; past
// it, outcomes are dropped (and logged) rather than holding the engine up.
const maxPendingOutcomes = 10_000

// aliasRollbackTimeout bounds the store reads and the write of one rollback.
const aliasRollbackTimeout = 10 * time.Second

// finishedRun is a run started through an alias that reached a terminal state.
type finishedRun struct {
	tenant, name, alias string
	version             int
	runID               string
	failed              bool
	created             time.Time
}

// rollbackWatch queues finished aliased runs for the rollback loop and
// holds its counts.
type rollbackWatch struct {
	mu      sync.Mutex // protects pending and dropped
	pending []finishedRun
	dropped int
	wake    chan struct{}

	windows map[aliasKey]*aliasWindows // only the rollback loop touches it
}

// aliasWindows are the last finished runs of each version of a split
// alias, counted since the alias's revision.
type aliasWindows struct {
	revision int64
	runs     map[int][]RunOutcome // by version, oldest first
}

func newRollbackWatch() *rollbackWatch {
	return &rollbackWatch{wake: make(chan struct{}, 1), windows: map[aliasKey]*aliasWindows{}}
}

// aliasRunEnded queues a finished run started through an alias. It runs
// under Engine.mu once the run's end is durable, and costs nothing for runs
// started without one.
func (e *Engine) aliasRunEnded(r *Run) {
	if r.Alias == "" || r.State == RunCancelled {
		return
	}
	w := e.rollback
	w.mu.Lock()
	if len(w.pending) >= maxPendingOutcomes {
		w.dropped++
	} else {
		w.pending = append(w.pending, finishedRun{tenant: r.TenantID, name: r.Workflow, alias: r.Alias, version: r.Version,
			runID: r.ID, failed: r.State == RunFailed || r.State == RunTimedOut, created: r.CreatedAt})
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// rollbackLoop counts finished aliased runs until Stop.
func (e *Engine) rollbackLoop() {
	for {
		select {
		case <-e.quit:
			return
		case <-e.rollback.wake:
			e.countOutcomes()
		}
	}
}

// countOutcomes counts every queued finished run and rolls back the aliases
// whose figures say so.
func (e *Engine) countOutcomes() {
	w := e.rollback
	w.mu.Lock()
	batch, dropped := w.pending, w.dropped
	w.pending, w.dropped = nil, 0
	w.mu.Unlock()
	if dropped > 0 {
		e.log.Warn("alias rollback: finished runs not counted, too many waiting", "dropped", dropped)
	}
	for _, f := range batch {
		select {
		case <-e.quit:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), aliasRollbackTimeout)
		if err := e.countOutcome(ctx, f); err != nil {
			e.log.Error("alias rollback", logTenant, f.tenant, "workflow", f.name, "alias", f.alias, logRun, f.runID, logErr, err)
		}
		cancel()
	}
}

// countOutcome counts one finished run in its alias's windows and rolls the
// alias back when the figures pass its margin.
func (e *Engine) countOutcome(ctx context.Context, f finishedRun) error {
	k := aliasKey{f.tenant, f.name, f.alias}
	w := e.rollback
	a, err := e.lookupAlias(ctx, f.tenant, f.name, f.alias)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrAliasesUnsupported) {
		delete(w.windows, k)
		return nil
	}
	if err != nil {
		return err
	}
	if a.Rollback == nil || len(a.Versions) != 2 {
		delete(w.windows, k)
		return nil
	}
	if !slices.ContainsFunc(a.Versions, func(t AliasTarget) bool { return t.Version == f.version }) || f.created.Before(a.UpdatedAt) {
		return nil // a run the alias's current setting did not start
	}
	win := w.windows[k]
	if win == nil || win.revision != a.Revision {
		if win, err = e.loadWindows(ctx, a); err != nil {
			return err
		}
		w.windows[k] = win
	}
	runs := win.runs[f.version]
	if !slices.ContainsFunc(runs, func(o RunOutcome) bool { return o.RunID == f.runID }) {
		runs = append(runs, RunOutcome{RunID: f.runID, Failed: f.failed})
		if n := len(runs) - a.Rollback.Window; n > 0 {
			runs = slices.Delete(runs, 0, n)
		}
		win.runs[f.version] = runs
	}
	older, newer := a.Versions[0].Version, a.Versions[1].Version
	if older > newer {
		older, newer = newer, older
	}
	no, oo := outcomes(newer, win.runs[newer]), outcomes(older, win.runs[older])
	if no.Runs < a.Rollback.MinRuns || no.FailureRate-oo.FailureRate <= a.Rollback.Margin {
		return nil
	}
	return e.rollBack(ctx, a, no, oo)
}

// loadWindows reads the last finished runs of each version of a split
// alias since it was set.
func (e *Engine) loadWindows(ctx context.Context, a *Alias) (*aliasWindows, error) {
	as, err := e.aliasStore()
	if err != nil {
		return nil, err
	}
	win := &aliasWindows{revision: a.Revision, runs: map[int][]RunOutcome{}}
	for _, t := range a.Versions {
		got, err := as.AliasOutcomes(ctx, a.TenantID, a.Name, a.Alias, t.Version, a.UpdatedAt, a.Rollback.Window)
		if err != nil {
			return nil, err
		}
		slices.Reverse(got) // oldest first
		win.runs[t.Version] = got
	}
	return win, nil
}

// outcomes sums a version's window.
func outcomes(version int, runs []RunOutcome) VersionOutcomes {
	o := VersionOutcomes{Version: version, Runs: len(runs)}
	for _, r := range runs {
		if r.Failed {
			o.Failed++
		}
	}
	if o.Runs > 0 {
		o.FailureRate = float64(o.Failed) / float64(o.Runs)
	}
	return o
}

// rollBack moves a split alias to its older version alone, as the engine,
// recording alias.rolled_back with the figures. A concurrent change of the
// alias wins: the rollback is then not made.
func (e *Engine) rollBack(ctx context.Context, a *Alias, newer, older VersionOutcomes) error {
	as, err := e.aliasStore()
	if err != nil {
		return err
	}
	now := e.clock()
	rec := &RollbackRecord{At: now, From: a.Versions, Newer: newer, Older: older, Margin: a.Rollback.Margin, Window: a.Rollback.Window}
	next := *a
	next.Versions = []AliasTarget{{Version: older.Version, Weight: 100}}
	next.Rollback, next.RolledBack = nil, rec
	next.Revision, next.UpdatedAt, next.UpdatedBy = a.Revision+1, now, ActorEngine
	ev, err := aliasEvent(Caller{}, AdminAliasRolledBack, a.TenantID, map[string]any{"name": a.Name, "alias": a.Alias,
		"from": a.Versions, "to": next.Versions, "newer": newer, "older": older, "margin": rec.Margin, "window": rec.Window,
		"revision": next.Revision}, now)
	if err != nil {
		return err
	}
	e.aliases.begin(a.TenantID, a.Name, a.Alias)
	err = as.PutAlias(ctx, &next, a.Revision, ev)
	e.aliases.end(a.TenantID, a.Name, a.Alias)
	delete(e.rollback.windows, aliasKey{a.TenantID, a.Name, a.Alias})
	if errors.Is(err, ErrConflict) {
		return nil // changed meanwhile: the new setting counts afresh
	}
	if err != nil {
		return err
	}
	e.log.Warn("alias rolled back", logTenant, a.TenantID, "workflow", a.Name, "alias", a.Alias,
		"newer_version", newer.Version, "newer_failure_rate", newer.FailureRate, "newer_runs", newer.Runs,
		"older_version", older.Version, "older_failure_rate", older.FailureRate, "older_runs", older.Runs)
	return nil
}
