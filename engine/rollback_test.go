package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// boom fails every attempt.
var boom = engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
	return nil, &engine.TaskError{Code: "boom", Message: "the new version is broken"}
})

// canary sets wf@canary to split 50/50 between v1 (noop) and v2 (boom) by
// the sticky key ${workflow.input.k}, rolling back over a window of 10 once
// v2 has 4 finished runs, and returns customer keys the alias sends to each
// version.
func canary(t *testing.T, e *engine.Engine) (a *engine.Alias, keys map[int][]string) {
	t.Helper()
	a, err := e.SetAlias(context.Background(), operator, tenant, "wf", "canary", engine.AliasSpec{
		Versions:  []engine.AliasTarget{{Version: 1, Weight: 50}, {Version: 2, Weight: 50}},
		StickyKey: "${workflow.input.k}",
		Rollback:  &engine.RollbackPolicy{Window: 10, Margin: 0.2, MinRuns: 4}})
	if err != nil {
		t.Fatalf("set canary: %v", err)
	}
	keys = map[int][]string{}
	for i := 0; len(keys[1]) < 20 || len(keys[2]) < 20; i++ {
		k := fmt.Sprintf("cust-%d", i)
		v := a.Pick([]byte(fmt.Sprintf("%q", k))) // the rendered key is the JSON string
		keys[v] = append(keys[v], k)
	}
	return a, keys
}

// runTo starts a run of wf@canary with key k, checks it got version want,
// and waits for it to end.
func runTo(t *testing.T, e *engine.Engine, db *store.DB, k string, want int) *engine.Run {
	t.Helper()
	run := startRef(t, e, "wf@canary", fmt.Sprintf(`{"k":%q}`, k))
	if run.Version != want {
		t.Fatalf("key %s got version %d, want %d", k, run.Version, want)
	}
	return waitRun(t, db, run.ID)
}

// waitRolledBack waits until the alias points at one version.
func waitRolledBack(t *testing.T, e *engine.Engine) *engine.Alias {
	t.Helper()
	var a *engine.Alias
	waitFor(t, "the alias to roll back", func() bool {
		var err error
		a, err = e.GetAlias(context.Background(), tenant, "wf", "canary")
		if err != nil {
			t.Fatalf("get alias: %v", err)
		}
		return len(a.Versions) == 1
	})
	return a
}

func TestRollback_AliasMovesBackWhenTheNewerVersionFails(t *testing.T) {
	is := is.New(t)
	db := openTestStore(t)
	e := startEngine(t, db, map[string]engine.Handler{"boom": boom})
	registerVersions(t, e, "wf", "noop", "boom")
	ctx := context.Background()
	before, keys := canary(t, e)
	for _, k := range keys[1][:4] {
		is.Equal(runTo(t, e, db, k, 1).State, engine.RunCompleted) // v1 works
	}
	for _, k := range keys[2][:4] {
		is.Equal(runTo(t, e, db, k, 2).State, engine.RunFailed) // v2 fails
	}
	a := waitRolledBack(t, e)
	is.Equal(a.Versions, []engine.AliasTarget{{Version: 1, Weight: 100}}) // back on the older version alone
	is.Equal(a.UpdatedBy, engine.ActorEngine)                             // moved by the engine
	is.Equal(a.Revision, before.Revision+1)                               // one move
	rb := a.RolledBack
	is.True(rb != nil)                                                                         // with the figures
	is.Equal(rb.Newer, engine.VersionOutcomes{Version: 2, Runs: 4, Failed: 4, FailureRate: 1}) // v2: 4 of 4 failed
	is.Equal(rb.Older, engine.VersionOutcomes{Version: 1, Runs: 4, Failed: 0, FailureRate: 0}) // v1: none of 4
	is.Equal(rb.From, before.Versions)                                                         // what it pointed at before
	is.Equal(rb.Margin, 0.2)

	// Every start through the alias now gets v1, the key v2 had included.
	is.Equal(startRef(t, e, "wf@canary", fmt.Sprintf(`{"k":%q}`, keys[2][0])).Version, 1)

	log, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: tenant})
	is.NoErr(err)
	last := log[len(log)-1]
	is.Equal(last.Action, engine.AdminAliasRolledBack) // audited
	is.Equal(last.Actor, engine.ActorEngine)           // as the engine
	var data struct {
		From, To     []engine.AliasTarget
		Newer, Older engine.VersionOutcomes
		Margin       float64
	}
	is.NoErr(json.Unmarshal(last.Data, &data))
	is.Equal(data.Newer.FailureRate, 1.0) // both failure rates
	is.Equal(data.Older.FailureRate, 0.0)
	is.Equal(data.Older.Runs, 4) // and the counts
	is.Equal(data.To, []engine.AliasTarget{{Version: 1, Weight: 100}})
	_, err = db.VerifyAdminLog(ctx)
	is.NoErr(err) // in the hash chain
}

func TestRollback_CountsSurviveARestart(t *testing.T) {
	is := is.New(t)
	db := openTestStore(t)
	e := startEngine(t, db, map[string]engine.Handler{"boom": boom})
	registerVersions(t, e, "wf", "noop", "boom")
	_, keys := canary(t, e)
	for _, k := range keys[1][:4] {
		runTo(t, e, db, k, 1)
	}
	for _, k := range keys[2][:3] {
		is.Equal(runTo(t, e, db, k, 2).State, engine.RunFailed) // 3 failures: below min_runs
	}
	is.NoErr(e.Stop(context.Background()))
	a, err := db.GetAlias(context.Background(), tenant, "wf", "canary")
	is.NoErr(err)
	is.Equal(len(a.Versions), 2) // still split when the engine stops

	// A new engine counts the runs of the one before: one more failure of
	// v2 makes 4, and the alias moves back.
	e2 := startEngine(t, db, map[string]engine.Handler{"boom": boom})
	runTo(t, e2, db, keys[2][3], 2)
	a = waitRolledBack(t, e2)
	is.Equal(a.RolledBack.Newer.Runs, 4) // 3 from before the restart and 1 after
	is.Equal(a.RolledBack.Older.Runs, 4) // v1's 4 from before
}

func TestRollback_ChangedAliasCountsAfresh(t *testing.T) {
	is := is.New(t)
	db := openTestStore(t)
	e := startEngine(t, db, map[string]engine.Handler{"boom": boom})
	registerVersions(t, e, "wf", "noop", "boom")
	_, keys := canary(t, e)
	for _, k := range keys[1][:4] {
		runTo(t, e, db, k, 1)
	}
	for _, k := range keys[2][:3] {
		runTo(t, e, db, k, 2)
	}
	// Setting the alias again starts the count again: none of the runs
	// before it count.
	_, keys = canary(t, e)
	for _, k := range keys[2][3:7] {
		runTo(t, e, db, k, 2)
	}
	a := waitRolledBack(t, e)
	is.Equal(a.RolledBack.Newer.Runs, 4) // the 4 failures since the change
	is.Equal(a.RolledBack.Older.Runs, 0) // and no run of v1 from before it
	_, err := e.SetAlias(context.Background(), operator, tenant, "wf", "canary", engine.AliasSpec{Revision: 2,
		Versions: []engine.AliasTarget{{Version: 2}}})
	is.True(errors.Is(err, engine.ErrConflict)) // the rollback moved the revision on
}
