package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// A run dropped from memory after a failed commit keeps its slots until it
// is loaded again: a start meanwhile is refused as if it were there, so the
// reloaded run does not make one more than the key allows.
func TestAdmission_ReloadingRunKeepsItsSlots(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{}, keyedDef("cancel_newest"), heldDef)
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)

	reloadSlowly(t, db, e, a.ID)

	_, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
	var ce *engine.ConcurrencyLimitedError
	is.True(errors.As(err, &ce)) // refused for the key a still holds, not let through to the full database
	is.Equal(ce.Key, "c1")

	_, err = db.LimitPages(ctx, 1<<30)
	is.NoErr(err) // room again
	waitFor(t, "a to be back", func() bool {
		_, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
		return errors.As(err, &ce) && ce.Key == "c1" // still refused once a is back
	})
	is.Equal(mustLoad(t, db, a.ID).State, engine.RunRunning)
	b := mustStart(t, e, "keyed", `{"customer":"c2"}`) // another key is free
	is.Equal(b.State, engine.RunRunning)
}

// fill makes the database grow no more and starts runs of wf until one
// finds no room.
func fill(t *testing.T, db *store.DB, e *engine.Engine, wf string) {
	t.Helper()
	if _, err := db.LimitPages(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := startIn(t, e, wf, ""); errors.Is(err, engine.ErrStorageUnavailable) {
			return
		}
		if i == 10_000 {
			t.Fatal("the database does not fill")
		}
	}
}

// reloadSlowly fills the database and breaks run id with a pause that
// finds no room, after eight failed commits in a row: they lengthen every
// reload's wait to 0.6-1.3 s, so the run stays out of memory that long, a
// window for the test, not a race.
func reloadSlowly(t *testing.T, db *store.DB, e *engine.Engine, id string) {
	t.Helper()
	fill(t, db, e, "held")
	for range 8 {
		if _, err := startIn(t, e, "held", string(bigOutput)); !errors.Is(err, engine.ErrStorageUnavailable) {
			t.Fatalf("a large start in a full database: %v, want storage unavailable", err)
		}
	}
	// A pause recorded with a large event finds no room either.
	_, err := e.Pause(context.Background(), "default", id, engine.Caller{Actor: "cli:" + strings.Repeat("x", 32<<10)})
	if !errors.Is(err, engine.ErrStorageUnavailable) {
		t.Fatalf("pause in a full database: %v, want storage unavailable", err) // the run is reloaded
	}
}

// With cancel_in_progress the cancellation is durable only with the run
// that supersedes it: a new run that cannot be recorded cancels nothing.
func TestAdmission_CancelInProgressCommitsWithTheNewRun(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{}, keyedDef("cancel_in_progress"), heldDef)
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	fill(t, db, e, "held")
	// Room for a small commit, such as a's cancellation, not for a run
	// whose input takes eight pages.
	full, err := db.LimitPages(ctx, 1)
	is.NoErr(err)
	_, err = db.LimitPages(ctx, full+4)
	is.NoErr(err)
	_, err = startIn(t, e, "keyed", `{"customer":"c1","pad":`+string(bigOutput)+`}`)
	is.True(errors.Is(err, engine.ErrStorageUnavailable)) // no room for the new run
	_, err = db.LimitPages(ctx, 1<<30)
	is.NoErr(err) // room again

	is.Equal(runEvent(t, db, a.ID, engine.EventRunCancelled), (*engine.Event)(nil)) // a was not cancelled for it
	is.Equal(mustLoad(t, db, a.ID).State, engine.RunRunning)
	var b *engine.Run
	waitFor(t, "a to be back and superseded", func() bool {
		b, err = startIn(t, e, "keyed", `{"customer":"c1"}`)
		is.True(err == nil || errors.Is(err, engine.ErrConflict)) // started, or "try again" while a is reloaded
		return err == nil
	})
	is.Equal(mustLoad(t, db, a.ID).State, engine.RunCancelled)
	is.Equal(reasonOf(t, runEvent(t, db, a.ID, engine.EventRunCancelled)), "concurrency_key: superseded by "+b.ID)
	is.NoErr(engine.VerifyRun(ctx, db, "default", a.ID))
}

// cancel_in_progress cannot cancel a run that is being reloaded: the start
// is refused with a conflict to try again, and the run goes on.
func TestAdmission_CancelInProgressWaitsForAReload(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{}, keyedDef("cancel_in_progress"), heldDef)
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	reloadSlowly(t, db, e, a.ID)

	_, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
	is.True(errors.Is(err, engine.ErrConflict)) // try again once a is back
	_, err = db.LimitPages(ctx, 1<<30)
	is.NoErr(err)
	var b *engine.Run
	waitFor(t, "a to be back", func() bool {
		b, err = startIn(t, e, "keyed", `{"customer":"c1"}`)
		is.True(err == nil || errors.Is(err, engine.ErrConflict))
		return err == nil
	})
	is.Equal(reasonOf(t, runEvent(t, db, a.ID, engine.EventRunCancelled)), "concurrency_key: superseded by "+b.ID)
}

// gatedKeyEngine starts an engine on a reloadGate over a fresh store, with
// keyed registered for strategy. The gate's held loads and stalled commits
// are let go at cleanup, before the engine stops.
func gatedKeyEngine(t *testing.T, strategy string) (*reloadGate, *engine.Engine) {
	t.Helper()
	return gatedQuotaEngine(t, engine.TenantQuotas{}, strategy)
}

// gatedQuotaEngine is gatedKeyEngine for an engine whose tenants have
// quotas q.
func gatedQuotaEngine(t *testing.T, q engine.TenantQuotas, strategy string) (*reloadGate, *engine.Engine) {
	t.Helper()
	db := openTestStore(t)
	g := &reloadGate{DB: db, held: make(chan struct{}, 1), release: make(chan struct{}), waitLoads: make(chan struct{}, 1),
		stalled: make(chan struct{}, 1), unstall: make(chan struct{})}
	e := startEngineWith(t, g, engine.Config{ExternalTypes: true, DefaultQuotas: q}, nil)
	t.Cleanup(g.open)
	t.Cleanup(func() {
		select {
		case <-g.unstall:
		default:
			close(g.unstall)
		}
	})
	register(t, e, keyedDef(strategy))
	return g, e
}

// A start whose commit fails recorded nothing: while the engine looks for
// the run in the store, the key is free for the next start.
func TestAdmission_FailedStartHoldsNoSlot(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	g, e := gatedKeyEngine(t, "cancel_newest")
	g.hold.Store(true)
	g.failNext.Store(true)
	_, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
	is.True(err != nil)                               // the run is not recorded
	recv(t, g.held, "the engine to look for the run") // and its reload is held

	b, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
	is.NoErr(err)                        // no run holds c1
	is.Equal(b.State, engine.RunRunning) // and the new one starts
}

// A start the engine refused part of cancels nothing: the run it was to
// supersede keeps its slot of the key while it is loaded again, so a start
// meanwhile is told to try again rather than let through beside it.
func TestAdmission_RefusedSupersedeKeepsTheVictimsSlot(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	g, e := gatedKeyEngine(t, "cancel_in_progress")
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	g.hold.Store(true)
	err := e.CommitRefusedSupersede("default", a.ID)
	is.True(errors.Is(err, engine.ErrInvalidTransition)) // nothing is committed
	recv(t, g.held, "a reload to be held")
	recv(t, g.held, "the other reload to be held") // a's, and the refused run's

	is.Equal(e.KeyHolders("default", "keyed", "c1"), []string{a.ID}) // a holds the key while it is reloaded
	_, err = startIn(t, e, "keyed", `{"customer":"c1"}`)
	is.True(errors.Is(err, engine.ErrConflict)) // try again once a is back
	g.open()
	var b *engine.Run
	waitFor(t, "a to be back and superseded", func() bool {
		b, err = startIn(t, e, "keyed", `{"customer":"c1"}`)
		is.True(err == nil || errors.Is(err, engine.ErrConflict)) // started, or "try again" while a is reloaded
		return err == nil
	})
	is.Equal(b.State, engine.RunRunning) // b runs
	db := g.DB
	waitFor(t, "a to be cancelled", func() bool { return mustLoad(t, db, a.ID).State == engine.RunCancelled })
	is.Equal(reasonOf(t, runEvent(t, db, a.ID, engine.EventRunCancelled)), "concurrency_key: superseded by "+b.ID)
}

// A retry whose commit fails leaves the run ended in the store: while the
// engine loads it again, it holds no slot of its key.
func TestAdmission_FailedRetryHoldsNoSlot(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	g, e := gatedKeyEngine(t, "cancel_newest")
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
	is.NoErr(err) // a ends
	g.hold.Store(true)
	g.failNext.Store(true)
	// The retry's own load of a is not held: the gate holds the engine's.
	_, err = e.Retry(context.WithValue(ctx, waitKey{}, true), "default", a.ID, engine.Caller{})
	is.True(err != nil)                                          // the retry is not recorded
	recv(t, g.held, "the engine to load a again")                // and a's reload is held
	is.Equal(mustLoad(t, g.DB, a.ID).State, engine.RunCancelled) // a is still cancelled

	b, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
	is.NoErr(err)                        // no run holds c1
	is.Equal(b.State, engine.RunRunning) // and the new one starts
}

// A run that ends keeps its slots until its end is durable: a cancellation
// whose commit fails leaves the run active in the store, and a run let
// into its slot meanwhile would make one more than the cap once it is
// reloaded. Both caps: the key's max and the tenant's max_active_runs.
func TestAdmission_EndingRunKeepsItsSlotsUntilDurable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		q      engine.TenantQuotas
		second string // the waiting run's key
	}{
		{"concurrency key", engine.TenantQuotas{}, "c1"},
		{"tenant active runs", engine.TenantQuotas{MaxActiveRuns: 1, OnActiveLimit: engine.OnActiveQueue}, "c2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			ctx := context.Background()
			g, e := gatedQuotaEngine(t, c.q, "queue")
			a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
			b := mustStart(t, e, "keyed", `{"customer":"`+c.second+`"}`)
			is.Equal(b.State, engine.RunPending) // b waits for a's slot

			g.hold.Store(true)
			g.failNext.Store(true)
			g.stallNext.Store(true)
			cancelled := make(chan error, 1)
			go func() {
				_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
				cancelled <- err
			}()
			recv(t, g.stalled, "a's cancellation to reach the store")
			e.AdmitOnce() // a is cancelled in memory, not yet in the store
			_, _, waiting := e.QueuedReason("default", b.ID)
			is.True(waiting) // b still waits: a's slot is not free before its end is durable

			close(g.unstall) // a's cancellation fails
			is.True(recv(t, cancelled, "the cancellation to fail") != nil)
			recv(t, g.held, "a's reload")
			g.open()
			waitFor(t, "a to be back", func() bool { return e.Active() == 2 })
			is.Equal(mustLoad(t, g.DB, a.ID).State, engine.RunRunning)
			e.AdmitOnce()
			_, _, waiting = e.QueuedReason("default", b.ID)
			is.True(waiting) // b waits for a, running again
			is.Equal(mustLoad(t, g.DB, b.ID).State, engine.RunPending)

			_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
			is.NoErr(err) // durable this time
			waitFor(t, "b to start in a's slot", func() bool { return mustLoad(t, g.DB, b.ID).State == engine.RunRunning })
			is.True(strings.HasSuffix(reasonOf(t, runEvent(t, g.DB, b.ID, engine.EventRunStarted)), "slot freed by "+a.ID))
		})
	}
}

// cancel_in_progress cannot supersede a run already ending: the new run
// waits until the end is durable, then starts in the slot it freed.
func TestAdmission_CancelInProgressWaitsForAnEnd(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	g, e := gatedKeyEngine(t, "cancel_in_progress")
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	g.stallNext.Store(true)
	cancelled := make(chan error, 1)
	go func() {
		_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
		cancelled <- err
	}()
	recv(t, g.stalled, "a's cancellation to reach the store")

	b, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
	is.NoErr(err)
	is.Equal(b.State, engine.RunPending)                             // b waits for a's end
	is.Equal(e.KeyHolders("default", "keyed", "c1"), []string{a.ID}) // which holds the key until durable

	close(g.unstall)
	is.NoErr(recv(t, cancelled, "the cancellation"))
	waitFor(t, "b to start in a's slot", func() bool { return mustLoad(t, g.DB, b.ID).State == engine.RunRunning })
	is.True(!strings.HasPrefix(reasonOf(t, runEvent(t, g.DB, a.ID, engine.EventRunCancelled)), "concurrency_key")) // by the user, not superseded
	is.Equal(mustLoad(t, g.DB, a.ID).State, engine.RunCancelled)
}

// A cancel_in_progress run that waits for an end that then fails to
// commit does not wait for the run to end by itself: the admission loop
// supersedes it, as the start would have, and the waiting run starts.
func TestAdmission_CancelInProgressSupersedesARunBackFromAFailedEnd(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	g, e := gatedKeyEngine(t, "cancel_in_progress")
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	g.failNext.Store(true)
	g.stallNext.Store(true)
	cancelled := make(chan error, 1)
	go func() {
		_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
		cancelled <- err
	}()
	recv(t, g.stalled, "a's cancellation to reach the store")
	b, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
	is.NoErr(err)
	is.Equal(b.State, engine.RunPending) // b waits for a's end

	close(g.unstall) // which fails: a is active again once reloaded
	is.True(recv(t, cancelled, "the cancellation to fail") != nil)
	waitFor(t, "a to be back", func() bool { return e.Active() == 2 })
	e.AdmitOnce() // supersedes a for b
	waitFor(t, "b to start", func() bool { return mustLoad(t, g.DB, b.ID).State == engine.RunRunning })
	is.Equal(mustLoad(t, g.DB, a.ID).State, engine.RunCancelled)
	is.Equal(reasonOf(t, runEvent(t, g.DB, a.ID, engine.EventRunCancelled)), "concurrency_key: superseded by "+b.ID)
	is.Equal(e.KeyHolders("default", "keyed", "c1"), []string{b.ID})
	is.NoErr(engine.VerifyRun(ctx, g.DB, "default", a.ID))
}
