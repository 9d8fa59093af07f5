package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// tombstoneOf is the tombstone retention makes of a stored run.
func tombstoneOf(t testing.TB, s engine.Store, tenant, id string) engine.Tombstone {
	t.Helper()
	run, err := s.GetRunRow(t.Context(), tenant, id)
	if err != nil {
		t.Fatalf("run %s: %v", id, err)
	}
	return engine.Tombstone{TenantID: tenant, RunID: id, Workflow: run.Workflow, Version: run.Version, State: run.State,
		CreatedAt: run.CreatedAt, EndedAt: run.EndedAt, Events: run.LastSeq, FinalHash: run.LastHash,
		Archive: tenant + "/day.ndjson.gz", RecordSHA256: "ab", RemovedAt: micro(base.Add(time.Hour))}
}

func testRetention(t *testing.T, open func(t *testing.T) engine.Store) {
	t.Run("expired runs are the terminal ones that ended before, oldest first", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		rs, ok := s.(engine.RetentionStore)
		if !ok {
			t.Fatal("the store keeps no tombstones (engine.RetentionStore)")
		}
		plan := define(t, s, "acme", wfJSON)
		mustCommit(t, s, runIn(t, plan, "acme", "done-1", engine.RunCompleted, base)...)
		mustCommit(t, s, runIn(t, plan, "acme", "live", engine.RunRunning, base)...)
		mustCommit(t, s, runIn(t, plan, "acme", "done-2", engine.RunFailed, base.Add(time.Minute))...)
		mustCommit(t, s, runIn(t, define(t, s, "globex", wfJSON), "globex", "globex-run", engine.RunCompleted, base)...)
		ids, err := rs.ExpiredRuns(t.Context(), "acme", base.Add(time.Hour), 10)
		is.NoErr(err)
		is.Equal(ids, []string{"done-1", "done-2"}) // not the live run, not another tenant's
		ids, err = rs.ExpiredRuns(t.Context(), "acme", base.Add(time.Hour), 1)
		is.NoErr(err)
		is.Equal(len(ids), 1) // at most the limit
	})

	t.Run("a removed run leaves its tombstone and its log's skeleton; a run that moved on stays", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		rs := s.(engine.RetentionStore)
		cl := s.(engine.CheckpointLog)
		plan := define(t, s, "acme", wfJSON)
		mustCommit(t, s, runIn(t, plan, "acme", "gone", engine.RunCompleted, base)...)
		mustCommit(t, s, runIn(t, plan, "acme", "retried", engine.RunFailed, base)...)
		events, runs, err := cl.LogCount(t.Context(), "acme", 1<<40)
		is.NoErr(err)
		gone := tombstoneOf(t, s, "acme", "gone")
		stale := tombstoneOf(t, s, "acme", "retried")
		stale.FinalHash = "0000" // the run moved on since its tombstone was made
		n, err := rs.RemoveRuns(t.Context(), []engine.Tombstone{gone, stale})
		is.NoErr(err)
		is.Equal(n, 1) // one removed
		_, _, err = s.LoadRun(t.Context(), "acme", "gone")
		is.True(errors.Is(err, engine.ErrNotFound)) // gone from the live tables
		evs, err := s.RunEvents(t.Context(), "acme", "gone", 0, 0)
		is.NoErr(err)
		is.Equal(len(evs), 0) // with its events
		_, err = s.GetRunRow(t.Context(), "acme", "retried")
		is.NoErr(err) // the other stays
		ts, err := rs.GetTombstone(t.Context(), "acme", "gone")
		is.NoErr(err)
		is.Equal(*ts, gone) // the tombstone as recorded
		_, err = rs.GetTombstone(t.Context(), "globex", "gone")
		is.True(errors.Is(err, engine.ErrNotFound)) // and another tenant's is not found
		_, err = rs.GetTombstone(t.Context(), "acme", "retried")
		is.True(errors.Is(err, engine.ErrNotFound)) // no tombstone for what stayed
		e2, r2, err := cl.LogCount(t.Context(), "acme", 1<<40)
		is.NoErr(err)
		is.Equal([2]int64{e2, r2}, [2]int64{events, runs}) // checkpoints still count every event ever appended
		n, err = rs.RemoveRuns(t.Context(), []engine.Tombstone{gone})
		is.NoErr(err)
		is.Equal(n, 0) // removing it again does nothing
	})
}
