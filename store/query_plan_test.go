package store_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// TestQueryPlans checks that every filter combination the API offers is
// answered from an index in the order asked for: a plan that sorts ("USE
// TEMP B-TREE FOR ORDER BY") reads the whole match set before returning the
// first row, which on a large tenant means a page costs as much as the
// tenant's history. The store is small and never ANALYZEd: without
// statistics SQLite plans as it does on a fresh production store.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	is := is.New(t)
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "plans.db"), store.Options{})
	is.NoErr(err) // open store
	t.Cleanup(func() { db.Close() })
	_, err = buildQueryFixture(ctx, db, queryFixtureSpec{Runs: 40, Tenants: 2, Seed: 1})
	is.NoErr(err) // a few runs

	const tenant = "tenant-00"
	cursor := &engine.RunCursor{CreatedAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), ID: "019c0000-0000-7000-8000-000000000000"}
	day := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)

	runCases := []struct {
		name  string
		f     engine.RunFilter
		index string
	}{
		{name: "newest first", f: engine.RunFilter{}, index: "runs_tenant_created"},
		{name: "newest first after a cursor", f: engine.RunFilter{Cursor: cursor}, index: "runs_tenant_created"},
		{name: "by status", f: engine.RunFilter{State: engine.RunFailed}, index: "runs_tenant_state_created"},
		{name: "by active status", f: engine.RunFilter{State: engine.RunRunning}, index: "runs_tenant_state_created"},
		{name: "by status after a cursor", f: engine.RunFilter{State: engine.RunFailed, Cursor: cursor}, index: "runs_tenant_state_created"},
		{name: "by workflow", f: engine.RunFilter{Workflow: "invoice-render"}, index: "runs_tenant_workflow_created"},
		{name: "by workflow after a cursor", f: engine.RunFilter{Workflow: "invoice-render", Cursor: cursor}, index: "runs_tenant_workflow_created"},
		{name: "by status and workflow", f: engine.RunFilter{State: engine.RunFailed, Workflow: "invoice-render"}, index: "runs_tenant_"},
		{name: "by status and workflow after a cursor", f: engine.RunFilter{State: engine.RunFailed, Workflow: "invoice-render", Cursor: cursor}, index: "runs_tenant_"},
		{name: "by origin", f: engine.RunFilter{OriginKind: engine.OriginSchedule}, index: "runs_tenant_origin_kind"},
		{name: "by origin and id after a cursor", f: engine.RunFilter{OriginKind: engine.OriginSchedule, OriginID: "nightly", Cursor: cursor}, index: "runs_tenant_origin_id"},
		// ExplainRuns leaves created_after and created_before out of the
		// query it explains (ListRuns puts them in), so these two show the
		// plan without them.
		{name: "created after", f: engine.RunFilter{CreatedAfter: day}, index: "runs_tenant_created"},
		{name: "created between", f: engine.RunFilter{CreatedAfter: day, CreatedBefore: day.Add(24 * time.Hour), Cursor: cursor}, index: "runs_tenant_created"},
	}
	for _, c := range runCases {
		t.Run("runs "+c.name, func(t *testing.T) {
			is := is.New(t)
			f := c.f
			f.TenantID, f.Limit = tenant, 50
			plan, err := db.ExplainRuns(ctx, f)
			is.NoErr(err) // explain
			t.Logf("runs %s:\n%s", c.name, plan)
			checkQueryPlan(t, plan, c.index)
		})
	}

	// A run's events are found through the suggested events_tenant_run
	// (tenant_id, run_id, id), or through the (run_id, seq) index when the
	// query orders by seq, which within one run is the log order.
	const runIndexes = "events_tenant_run|sqlite_autoindex_events_1"
	since, until := day, day.Add(time.Hour)
	eventCases := []struct {
		name  string
		f     engine.EventFilter
		index string
	}{
		{name: "tenant log", f: engine.EventFilter{}, index: "events_tenant"},
		{name: "tenant log after a cursor", f: engine.EventFilter{After: &engine.EventCursor{ID: 1000}}, index: "events_tenant"},
		{name: "by type", f: engine.EventFilter{Type: engine.EventRunFailed}, index: "events_tenant_type"},
		{name: "by type after a cursor", f: engine.EventFilter{Type: engine.EventRunFailed, After: &engine.EventCursor{ID: 1000}}, index: "events_tenant_type"},
		{name: "by actor", f: engine.EventFilter{Actor: "alice"}, index: "events_tenant_actor"},
		{name: "by actor after a cursor", f: engine.EventFilter{Actor: "alice", After: &engine.EventCursor{ID: 1000}}, index: "events_tenant_actor"},
		{name: "on behalf of", f: engine.EventFilter{OnBehalf: "alice"}, index: "events_tenant_on_behalf"},
		{name: "on behalf of after a cursor", f: engine.EventFilter{OnBehalf: "alice", After: &engine.EventCursor{ID: 1000}}, index: "events_tenant_on_behalf"},
		{name: "by type and actor", f: engine.EventFilter{Type: engine.EventRunFailed, Actor: "alice", After: &engine.EventCursor{ID: 1000}}, index: "events_tenant_"},
		{name: "by task id", f: engine.EventFilter{TaskID: "validate", After: &engine.EventCursor{ID: 1000}}, index: "events_tenant"},
		{name: "by run", f: engine.EventFilter{RunID: "r1"}, index: runIndexes},
		{name: "by run after a cursor", f: engine.EventFilter{RunID: "r1", After: &engine.EventCursor{ID: 1000}}, index: runIndexes},
		{name: "by run after a seq", f: engine.EventFilter{RunID: "r1", AfterSeq: 3}, index: runIndexes},
		{name: "by run and type", f: engine.EventFilter{RunID: "r1", Type: engine.EventTaskCompleted}, index: runIndexes},
		{name: "by run and task", f: engine.EventFilter{RunID: "r1", TaskID: "validate"}, index: runIndexes},
		{name: "since", f: engine.EventFilter{Since: since}, index: "events_tenant_at"},
		{name: "until", f: engine.EventFilter{Until: until}, index: "events_tenant_at"},
		{name: "since and until", f: engine.EventFilter{Since: since, Until: until}, index: "events_tenant_at"},
		{name: "since and until after a cursor", f: engine.EventFilter{Since: since, Until: until, After: &engine.EventCursor{ID: 1000, At: since}}, index: "events_tenant_at"},
		{name: "by type since", f: engine.EventFilter{Type: engine.EventRunFailed, Since: since}, index: "events_tenant_"},
		{name: "by actor since", f: engine.EventFilter{Actor: "alice", Since: since}, index: "events_tenant_"},
	}
	for _, c := range eventCases {
		t.Run("events "+c.name, func(t *testing.T) {
			is := is.New(t)
			f := c.f
			f.TenantID, f.Limit = tenant, 51
			plan, err := db.ExplainEvents(ctx, f)
			is.NoErr(err) // explain
			t.Logf("events %s:\n%s", c.name, plan)
			checkQueryPlan(t, plan, c.index)
		})
	}
}

// checkQueryPlan fails t unless plan searches the index named index (any
// whose name starts with it when it ends in "_"; "INTEGER PRIMARY KEY" for
// the rowid; alternatives separated by "|") and needs no sort for the
// ORDER BY.
func checkQueryPlan(t *testing.T, plan, indexes string) {
	t.Helper()
	is := is.NewRelaxed(t)
	uses := false
	for _, how := range []string{"USING INDEX ", "USING COVERING INDEX ", "USING INTEGER PRIMARY KEY"} {
		i := strings.Index(plan, how)
		if i < 0 {
			continue
		}
		name := strings.TrimPrefix(how, "USING ")
		if strings.HasSuffix(how, " ") {
			name, _, _ = strings.Cut(plan[i+len(how):], " ")
		}
		for index := range strings.SplitSeq(indexes, "|") {
			if name == index || strings.HasSuffix(index, "_") && strings.HasPrefix(name, index) {
				uses = true
			}
		}
	}
	is.True(strings.HasPrefix(plan, "SEARCH ") || strings.Contains(plan, "\nSEARCH ")) // searches, never scans
	is.True(uses)                                                                      // through the expected index
	is.True(!strings.Contains(plan, "USE TEMP B-TREE FOR ORDER BY"))                   // and needs no sort
}

// TestQueryFixture checks that the benchmark fixture is a history the
// engine could have written: every run verifies against its events.
func TestQueryFixture(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	is := is.New(t)
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "fixture.db"), store.Options{})
	is.NoErr(err) // open store
	t.Cleanup(func() { db.Close() })
	const runs = 500
	st, err := buildQueryFixture(ctx, db, queryFixtureSpec{Runs: runs, Tenants: 3, Seed: 2})
	is.NoErr(err)           // build
	is.Equal(st.Runs, runs) // every run written
	n, err := engine.Verify(ctx, db, func(_, runID string, err error) { t.Errorf("run %s: %v", runID, err) })
	is.NoErr(err)     // verify
	is.Equal(n, runs) // every run checked
	states := map[engine.RunState]int{}
	list, _, err := db.ListRuns(ctx, engine.RunFilter{TenantID: "tenant-00", Limit: engine.MaxPage})
	is.NoErr(err) // list
	for _, r := range list {
		states[r.State]++
	}
	t.Logf("%d events, states of tenant-00's runs: %v", st.Events, states)
	is.True(states[engine.RunCompleted] > len(list)*3/4) // mostly completed
	is.True(states[engine.RunFailed] > 0)                // some failed
	is.True(states[engine.RunRunning] > 0)               // some running
}
