package engine_test

import (
	"context"
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
