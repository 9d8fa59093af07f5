package store_test

import (
	"context"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// TestStore_ListRunsLeavesPayloadsOut: a list of runs carries summaries, so
// that a page of runs with large inputs stays small; the run's own read has
// the input.
func TestStore_ListRunsLeavesPayloadsOut(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	_, err := buildQueryFixture(ctx, db, queryFixtureSpec{Runs: 20, Tenants: 2, Seed: 1})
	is.NoErr(err) // runs with inputs, some finished with outputs
	runs, _, err := db.ListRuns(ctx, engine.RunFilter{TenantID: "tenant-00", Limit: 50})
	is.NoErr(err)
	is.True(len(runs) > 0) // the tenant has runs
	for _, r := range runs {
		is.True(r.Input == nil && r.Output == nil) // neither payload is read for a list
		is.True(r.ID != "" && r.State != "" && !r.CreatedAt.IsZero())
	}
	full, err := db.GetRunRow(ctx, "tenant-00", runs[0].ID)
	is.NoErr(err)
	is.True(len(full.Input) > 0) // the run itself has its input
}
