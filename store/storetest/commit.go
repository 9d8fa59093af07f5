package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// loadAll returns a run of tenant "default", its tasks and its events, and
// fails the test if the run cannot be read.
func loadAll(t testing.TB, s engine.Store, id string) (*engine.Run, []engine.Task, []engine.Event) {
	t.Helper()
	run, tasks, err := s.LoadRun(t.Context(), "default", id)
	if err != nil {
		t.Fatalf("load run %s: %v", id, err)
	}
	events, err := s.RunEvents(t.Context(), "default", id, 0, 0)
	if err != nil {
		t.Fatalf("events of %s: %v", id, err)
	}
	return run, tasks, events
}

// absent checks that nothing of run id of tenant "default" is stored.
func absent(t testing.TB, s engine.Store, id string) {
	t.Helper()
	if _, _, err := s.LoadRun(t.Context(), "default", id); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("run %s: LoadRun error %v, want ErrNotFound", id, err)
	}
	events, err := s.RunEvents(t.Context(), "default", id, 0, 0)
	if err != nil || len(events) != 0 {
		t.Errorf("run %s: %d events (%v), want none", id, len(events), err)
	}
}

func testCommit(t *testing.T, open func(t *testing.T) engine.Store) {
	t.Run("an insert then an update load back as written", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		define(t, s, "default", wfJSON)
		insert, update := fullChanges("default")

		is.NoErr(commit(t, s, insert)) // insert run r1
		run, tasks, events := loadAll(t, s, "r1")
		is.Equal(sameRows(run, tasks, &insert.Run, insert.Tasks), "") // rows as inserted
		is.Equal(sameEvents(events, insert.Events), "")               // events as inserted

		is.NoErr(commit(t, s, update)) // update run r1
		run, tasks, events = loadAll(t, s, "r1")
		is.Equal(sameRows(run, tasks, &update.Run, []engine.Task{update.Tasks[0], insert.Tasks[1]}), "") // a updated, b untouched
		is.Equal(run.CreatedAt.Nanosecond()%1000, 0)                                                     // times at microseconds
		is.Equal(sameEvents(events, append(slices.Clone(insert.Events), update.Events...)), "")          // every field of every event
		is.NoErr(engine.VerifyChain(events))                                                             // hashes survive the round trip
		for i := 1; i < len(events); i++ {
			is.True(events[i].ID > events[i-1].ID) // log positions ascend with seq
		}
		row, err := s.GetRunRow(t.Context(), "default", "r1")
		is.NoErr(err)                                        // the row alone
		is.True(engine.EqualRun(row, run))                   // is the row LoadRun gives
		is.Equal(row.UpdatedAt, micro(update.Run.UpdatedAt)) // in UTC, at microseconds
	})

	t.Run("a stale PrevSeq fails with ErrConflict and writes nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		define(t, s, "default", wfJSON)
		insert, update := fullChanges("default")
		is.NoErr(commit(t, s, insert)) // insert run r1
		run, tasks, events := loadAll(t, s, "r1")

		stale := update
		stale.PrevSeq = 1
		is.True(errors.Is(commit(t, s, stale), engine.ErrConflict)) // compare-and-set lost
		after, afterTasks, afterEvents := loadAll(t, s, "r1")
		is.Equal(sameRows(after, afterTasks, run, tasks), "") // rows unchanged
		is.Equal(sameEvents(afterEvents, events), "")         // no event of the failed change
		is.NoErr(commit(t, s, update))                        // the right PrevSeq still commits
	})

	t.Run("the log is append-only: a stored seq cannot be written again", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		define(t, s, "default", wfJSON)
		insert, update := fullChanges("default")
		is.NoErr(commit(t, s, insert)) // insert run r1
		run, tasks, events := loadAll(t, s, "r1")

		dup := update
		dup.Events = slices.Clone(update.Events)
		dup.Events[0].Seq = 2                                     // already stored, with other content
		is.True(errors.Is(commit(t, s, dup), engine.ErrConflict)) // a second event at seq 2 is refused
		after, afterTasks, afterEvents := loadAll(t, s, "r1")
		is.Equal(sameRows(after, afterTasks, run, tasks), "") // the run update rolled back with the events
		is.Equal(sameEvents(afterEvents, events), "")         // seq 2 is as first written

		is.NoErr(commit(t, s, update))                               // the update commits
		is.True(errors.Is(commit(t, s, update), engine.ErrConflict)) // and cannot be committed again
		_, _, events = loadAll(t, s, "r1")
		is.Equal(sameEvents(events, append(slices.Clone(insert.Events), update.Events...)), "") // once in the log
	})

	t.Run("inserting a run twice or after a seq fails with ErrConflict", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		define(t, s, "default", wfJSON)
		insert, _ := fullChanges("default")
		is.NoErr(commit(t, s, insert))                               // first insert
		is.True(errors.Is(commit(t, s, insert), engine.ErrConflict)) // same run again
		_, _, events := loadAll(t, s, "r1")
		is.Equal(sameEvents(events, insert.Events), "") // the first insert's events only

		other := insert
		other.Run.ID = "r2"
		other.PrevSeq = 1
		is.True(errors.Is(commit(t, s, other), engine.ErrConflict)) // an insert cannot follow a seq
		absent(t, s, "r2")
	})

	t.Run("an update of a task row not stored fails with ErrNotFound and writes nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		define(t, s, "default", wfJSON)
		insert, update := fullChanges("default")
		is.NoErr(commit(t, s, insert)) // insert run r1
		bad := update
		bad.Tasks = slices.Clone(update.Tasks)
		bad.Tasks[0].TaskID = "zz"
		is.True(errors.Is(commit(t, s, bad), engine.ErrNotFound)) // no such task row
		run, _, events := loadAll(t, s, "r1")
		is.Equal(run.LastSeq, int64(2)) // run update rolled back
		is.Equal(len(events), 2)        // and its events
	})

	t.Run("a run of a definition version not stored fails with ErrConflict", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		define(t, s, "default", wfJSON)
		insert, _ := fullChanges("default")
		insert.Run.Version = 9
		is.True(errors.Is(commit(t, s, insert), engine.ErrConflict)) // unknown version
		absent(t, s, "r1")
		define(t, s, "elsewhere", otherJSON)
		insert, _ = fullChanges("elsewhere")
		is.True(errors.Is(commit(t, s, insert), engine.ErrConflict)) // wf is not a definition of this tenant
	})

	t.Run("rows no state machine produces fail with ErrConflict", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)
		for name, spoil := range map[string]func(*engine.Change){
			"an unknown run state":                 func(ch *engine.Change) { ch.Run.State = "sleeping" },
			"a terminal run without ended_at":      func(ch *engine.Change) { ch.Run.State = engine.RunCompleted },
			"an unknown task state":                func(ch *engine.Change) { ch.Tasks[0].State = "dozing" },
			"an active task with ended_at":         func(ch *engine.Change) { ch.Tasks[0].EndedAt = base },
			"a running run with ended_at":          func(ch *engine.Change) { ch.Run.EndedAt = base },
			"a terminal task without its ended_at": func(ch *engine.Change) { ch.Tasks[1].State = engine.TaskSkipped },
		} {
			id := "bad " + name
			ch := newHistory(t, plan, "default", id).next(evCreated, evStarted, ev{typ: engine.EventTaskReady, task: "a"})
			ch.Tasks = slices.Clone(ch.Tasks)
			spoil(&ch)
			err := commit(t, s, ch)
			if !errors.Is(err, engine.ErrConflict) {
				t.Errorf("%s: commit error %v, want ErrConflict", name, err)
			}
			absent(t, s, id)
		}
		is.NoErr(commit(t, s, newHistory(t, plan, "default", "good").next(evCreated))) // a valid row is accepted
	})

	t.Run("the changes of one call are all or nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)
		good := lifecycle(newHistory(t, plan, "default", "good"))[0]
		bad := lifecycle(newHistory(t, plan, "default", "bad"))[0]
		bad.PrevSeq = 5
		is.True(errors.Is(commit(t, s, good, bad), engine.ErrConflict)) // one bad change fails the call
		absent(t, s, "good")                                            // the good change of the call is not written
		absent(t, s, "bad")
	})

	t.Run("done never runs on the caller's goroutine", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)
		// The caller holds a lock across Commit that done takes: a done
		// called from within Commit would deadlock the caller.
		check := func(what string, changes ...engine.Change) error {
			var mu sync.Mutex
			returned := false
			after := make(chan bool, 1)
			errs := make(chan error, 1)
			called := make(chan struct{})
			go func() {
				defer close(called)
				mu.Lock()
				s.Commit(changes, func(err error) {
					mu.Lock()
					r := returned
					mu.Unlock()
					after <- r
					errs <- err
				})
				returned = true
				mu.Unlock()
			}()
			wait(t, called, what+": Commit to return")
			is.True(wait(t, after, what+": done")) // done ran after Commit returned
			return wait(t, errs, what+": done's error")
		}
		is.NoErr(check("an empty commit"))                                                                                // succeeds
		is.NoErr(check("a run", newHistory(t, plan, "default", "r1").next(evCreated)))                                    // succeeds
		is.True(errors.Is(check("a conflict", newHistory(t, plan, "default", "r1").next(evCreated)), engine.ErrConflict)) // fails
		c, ok := closer(s)
		if !ok {
			return
		}
		is.NoErr(c.Close())                                                                                              // close
		is.True(errors.Is(check("after Close", newHistory(t, plan, "default", "r2").next(evCreated)), engine.ErrClosed)) // refused
		is.NoErr(c.Close())                                                                                              // Close again is fine
	})
}

func testGroupCommit(t *testing.T, open func(t *testing.T) engine.Store) {
	t.Run("many runs in one call all land", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)
		var chs []engine.Change
		for i := range 300 {
			chs = append(chs, lifecycle(newHistory(t, plan, "default", fmt.Sprintf("run-%03d", i)))[0])
		}
		is.NoErr(commit(t, s, chs...)) // 300 runs, 900 events, one call
		for i := range chs {
			run, tasks, events := loadAll(t, s, chs[i].Run.ID)
			is.Equal(sameRows(run, tasks, &chs[i].Run, chs[i].Tasks), "") // every run as written
			is.Equal(sameEvents(events, chs[i].Events), "")               // with its events
		}
	})

	t.Run("commits in flight together land, and a stale one fails alone", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)
		// 50 runs of four changes each from five goroutines, none waiting
		// for an answer; run-07 also gets a replay of its second change,
		// which is stale by then.
		const runs, workers = 50, 5
		type request struct {
			changes []engine.Change
			bad     bool
			done    <-chan error
		}
		perWorker := make([][]*request, workers)
		var all []*request
		for i := range runs {
			chs := lifecycle(newHistory(t, plan, "default", fmt.Sprintf("run-%02d", i)))
			for j, ch := range chs {
				r := &request{changes: []engine.Change{ch}}
				perWorker[i%workers] = append(perWorker[i%workers], r)
				all = append(all, r)
				if i == 7 && j == 1 {
					r := &request{changes: []engine.Change{ch}, bad: true}
					perWorker[i%workers] = append(perWorker[i%workers], r)
					all = append(all, r)
				}
			}
		}
		var wg sync.WaitGroup
		for _, reqs := range perWorker {
			wg.Go(func() {
				for _, r := range reqs { // one goroutine per run keeps each run's order
					r.done = submit(s, r.changes...)
				}
			})
		}
		wg.Wait()
		for _, r := range all {
			err := wait(t, r.done, "commit acknowledgement")
			if r.bad {
				is.True(errors.Is(err, engine.ErrConflict)) // the stale change fails
			} else {
				is.NoErr(err) // every good change is acknowledged
			}
		}
		for i := range runs {
			id := fmt.Sprintf("run-%02d", i)
			run, _, events := loadAll(t, s, id)
			is.Equal(run.LastSeq, int64(7))                           // every run got its four changes
			is.Equal(len(events), 7)                                  // and their events once
			is.NoErr(engine.VerifyRun(t.Context(), s, "default", id)) // rows equal the replayed log
		}
	})

	t.Run("consecutive changes of a run in flight together all land in order", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)
		chs := lifecycle(newHistory(t, plan, "default", "r1"))
		var acks []<-chan error
		for _, ch := range chs {
			acks = append(acks, submit(s, ch))
		}
		for _, ack := range acks {
			is.NoErr(wait(t, ack, "acknowledgement")) // every change committed
		}
		run, tasks, _ := loadAll(t, s, "r1")
		is.Equal(run.LastSeq, chs[3].Run.LastSeq)                   // the run row of the last change
		is.Equal(tasks[0].State, engine.TaskCompleted)              // a from the third change
		is.Equal(tasks[1].State, engine.TaskRunning)                // b from the fourth change
		is.NoErr(engine.VerifyRun(t.Context(), s, "default", "r1")) // rows equal the replayed log
	})

	t.Run("a change in flight before the one it follows fails alone", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)
		chs := lifecycle(newHistory(t, plan, "default", "r1"))
		first, third, second := submit(s, chs[0]), submit(s, chs[2]), submit(s, chs[1])
		is.NoErr(wait(t, first, "insert"))                                     // the insert lands
		is.True(errors.Is(wait(t, third, "third change"), engine.ErrConflict)) // too early: conflict
		is.NoErr(wait(t, second, "second change"))                             // the second lands
		run, _, _ := loadAll(t, s, "r1")
		is.Equal(run.LastSeq, chs[1].Run.LastSeq)                   // at the second change
		is.NoErr(engine.VerifyRun(t.Context(), s, "default", "r1")) // and consistent with the log
	})

	t.Run("a change checks alone whatever shares its transaction", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)

		chs := lifecycle(newHistory(t, plan, "default", "r1"))
		unknown := chs[1]
		unknown.Tasks = slices.Clone(unknown.Tasks)
		unknown.Tasks[0].TaskID = "zz" // no such task
		insert, bad := submit(s, chs[0]), submit(s, unknown)
		is.NoErr(wait(t, insert, "insert"))                                  // the insert lands
		is.True(errors.Is(wait(t, bad, "unknown task"), engine.ErrNotFound)) // as it would alone: unknown task
		_, tasks, _ := loadAll(t, s, "r1")
		is.Equal(len(tasks), 2) // no row for the unknown task

		chs = lifecycle(newHistory(t, plan, "default", "r2"))
		spoiled := chs[1]
		spoiled.Run.State = engine.RunCompleted // terminal without ended_at
		insert, bad, fix := submit(s, chs[0]), submit(s, spoiled), submit(s, chs[2])
		is.NoErr(wait(t, insert, "insert"))                             // the insert lands
		is.True(errors.Is(wait(t, bad, "spoiled"), engine.ErrConflict)) // refused even when a later change fixes the row
		is.True(errors.Is(wait(t, fix, "next"), engine.ErrConflict))    // so the next change is stale
		run, _, events := loadAll(t, s, "r2")
		is.Equal(run.LastSeq, int64(3)) // only the insert
		is.Equal(len(events), 3)
	})
}

func testIdempotencyKeys(t *testing.T, open func(t *testing.T) engine.Store) {
	keyed := func(t testing.TB, plan *definition.Plan, tenant, id, key, hash string) engine.Change {
		ch := newHistory(t, plan, tenant, id).next(evCreated, evStarted)
		ch.IdempotencyKey, ch.RequestHash = key, hash
		return ch
	}

	t.Run("a key is stored with the run it started", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)
		is.NoErr(commit(t, s, keyed(t, plan, "default", "r1", "k1", "h1"))) // insert with a key
		runID, hash, err := s.FindIdempotencyKey(t.Context(), "default", "k1")
		is.NoErr(err)         // found
		is.Equal(runID, "r1") // the run it started
		is.Equal(hash, "h1")  // and the request's hash
		_, _, err = s.FindIdempotencyKey(t.Context(), "default", "k2")
		is.True(errors.Is(err, engine.ErrNotFound)) // an unknown key
	})

	t.Run("a second insert with a stored key fails with ErrConflict and writes nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "default", wfJSON)
		is.NoErr(commit(t, s, keyed(t, plan, "default", "r1", "k1", "h1")))                               // first
		is.True(errors.Is(commit(t, s, keyed(t, plan, "default", "r2", "k1", "h2")), engine.ErrConflict)) // same key, another run
		absent(t, s, "r2")
		runID, hash, err := s.FindIdempotencyKey(t.Context(), "default", "k1")
		is.NoErr(err)         // still found
		is.Equal(runID, "r1") // naming the first run
		is.Equal(hash, "h1")  // and its request

		// Two starts in flight together with one key: exactly one lands.
		a, b := submit(s, keyed(t, plan, "default", "ra", "k2", "h")), submit(s, keyed(t, plan, "default", "rb", "k2", "h"))
		errA, errB := wait(t, a, "first start"), wait(t, b, "second start")
		is.True((errA == nil) != (errB == nil))                                             // one wins
		is.True(errors.Is(errA, engine.ErrConflict) || errors.Is(errB, engine.ErrConflict)) // the other conflicts
		winner, _, err := s.FindIdempotencyKey(t.Context(), "default", "k2")
		is.NoErr(err) // the key names
		loser := map[string]string{"ra": "rb", "rb": "ra"}[winner]
		is.True(loser != "") // one of the two
		absent(t, s, loser)  // the other wrote nothing
	})

	t.Run("a run inserted with its definition stores both in one commit, or neither", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		sd, plan := storedDefinition(t, "default", wfJSON)
		sd.Version = 1
		ch := keyed(t, plan, "default", "r1", "k1", "h1")
		ch.Definition = sd
		is.NoErr(commit(t, s, ch)) // the definition version, the run and the key together
		got, err := s.GetDefinition(t.Context(), "default", "wf", 1)
		is.NoErr(err)               // the version is stored
		is.Equal(got.Hash, sd.Hash) // as given
		_, _, err = s.LoadRun(t.Context(), "default", "r1")
		is.NoErr(err) // and so is the run

		// A version taken already fails the whole change: no run, no key.
		other, plan2 := storedDefinition(t, "default", `{"name":"wf","description":"changed","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
		other.Version = 1
		ch = keyed(t, plan2, "default", "r2", "k2", "h2")
		ch.Definition = other
		is.True(errors.Is(commit(t, s, ch), engine.ErrConflict)) // version 1 is taken
		absent(t, s, "r2")
		_, _, err = s.FindIdempotencyKey(t.Context(), "default", "k2")
		is.True(errors.Is(err, engine.ErrNotFound)) // the key was not stored either
		got, err = s.GetDefinition(t.Context(), "default", "wf", 0)
		is.NoErr(err)
		is.Equal(got.Version, 1)    // no other version appeared
		is.Equal(got.Hash, sd.Hash) // and version 1 is the first definition
	})

	t.Run("keys belong to their tenant", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		planA := define(t, s, "a", wfJSON)
		planB := define(t, s, "b", wfJSON)
		is.NoErr(commit(t, s, keyed(t, planA, "a", "ra", "k", "ha"))) // a's key
		is.NoErr(commit(t, s, keyed(t, planB, "b", "rb", "k", "hb"))) // the same key for b is b's own
		runID, hash, err := s.FindIdempotencyKey(t.Context(), "b", "k")
		is.NoErr(err)         // found for b
		is.Equal(runID, "rb") // b's run
		is.Equal(hash, "hb")  // b's request
		_, _, err = s.FindIdempotencyKey(t.Context(), "c", "k")
		is.True(errors.Is(err, engine.ErrNotFound)) // not another tenant's
	})
}
