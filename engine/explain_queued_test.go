package engine_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// Explain says what a queued run waits for: its place in line for a slot
// of its tenant's max_active_runs.
func TestExplain_QueuedRunNamesItsQuotaAndPlace(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true,
		DefaultQuotas: engine.TenantQuotas{MaxActiveRuns: 1, OnActiveLimit: engine.OnActiveQueue}}, nil)
	_, _, err := e.RegisterDefinition(ctx, tenant, []byte(`{"name":"ext","tasks":[{"id":"a","type":"python"}]}`))
	is.NoErr(err)
	var runs []*engine.Run
	for range 3 {
		r, err := e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "ext"})
		is.NoErr(err)
		runs = append(runs, r)
	}
	x, err := e.Explain(ctx, tenant, runs[2].ID)
	is.NoErr(err)
	is.Equal(x.Run.State, engine.RunPending)             // the third waits
	is.Equal(x.Run.Reason, engine.WaitTenantActiveRuns)  // for a slot of its tenant
	is.True(strings.Contains(x.Run.Detail, "2 in line")) // second in line
	x, err = e.Explain(ctx, tenant, runs[0].ID)
	is.NoErr(err)
	is.Equal(x.Run.Reason, "") // the running one does not
}

// Explain names the concurrency key a queued run waits for, and its place
// in that key's line.
func TestExplain_QueuedRunNamesItsConcurrencyKey(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{}, keyedDef("queue"))
	mustStart(t, e, "keyed", `{"customer":"c1"}`) // takes c1's one slot
	second := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	third := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	x, err := e.Explain(ctx, "default", third.ID)
	is.NoErr(err)
	is.Equal(x.Run.State, engine.RunPending)
	is.Equal(x.Run.Reason, engine.WaitConcurrencyKey)                                              // waits for its key
	is.Equal(x.Run.Detail, `the run is pending: 2 in line for a slot of its concurrency key "c1"`) // which, and its place
	b, err := json.Marshal(x.Run)
	is.NoErr(err)
	is.Equal(string(b), `{"id":"`+third.ID+`","state":"pending","reason":"concurrency_key",`+
		`"detail":"the run is pending: 2 in line for a slot of its concurrency key \"c1\""}`) // as JSON
	x, err = e.Explain(ctx, "default", second.ID)
	is.NoErr(err)
	is.Equal(x.Run.Detail, `the run is pending: 1 in line for a slot of its concurrency key "c1"`) // next in line
}
