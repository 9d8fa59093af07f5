package engine_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// startTogether sends n copies of one start with the same idempotency key
// at once and returns what each got.
func startTogether(t *testing.T, e *engine.Engine, wf, input, key string, n int) ([]*engine.Run, []bool, []error) {
	t.Helper()
	runs, replayed, errs := make([]*engine.Run, n), make([]bool, n), make([]error, n)
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	gate := make(chan struct{})
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-gate
			runs[i], replayed[i], errs[i] = e.StartRunIdempotent(context.Background(), engine.StartRequest{
				TenantID: "default", Workflow: wf, Input: json.RawMessage(input),
				IdempotencyKey: key, RequestHash: "same request",
			})
		}()
	}
	ready.Wait()
	close(gate)
	done.Wait()
	return runs, replayed, errs
}

// A repeated start with the same idempotency key returns the first run,
// even while the first is still being committed: the copies neither count
// against the quotas and keys the first run holds nor act on them.
func TestAdmission_ConcurrentIdempotentStartsReturnTheFirstRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		quotas engine.TenantQuotas
		def    string
		wf     string
	}{
		{"under max_active_runs with reject", engine.TenantQuotas{MaxActiveRuns: 1}, heldDef, "held"},
		{"under a cancel_newest key", engine.TenantQuotas{}, keyedDef("cancel_newest"), "keyed"},
		{"under a cancel_in_progress key", engine.TenantQuotas{}, keyedDef("cancel_in_progress"), "keyed"},
		{"under a queue key", engine.TenantQuotas{}, keyedDef("queue"), "keyed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			db := openTestStore(t)
			e := quotaEngine(t, db, tc.quotas, tc.def)
			const n = 16
			runs, replayed, errs := startTogether(t, e, tc.wf, `{"customer":"c1"}`, "k1", n)
			first, fresh := "", 0
			for i := range n {
				is.NoErr(errs[i]) // every copy gets the run, none a refusal
				if first == "" {
					first = runs[i].ID
				}
				is.Equal(runs[i].ID, first) // the same run
				if !replayed[i] {
					fresh++
				}
			}
			is.Equal(fresh, 1)                                        // started once, replayed for the others
			is.Equal(mustLoad(t, db, first).State, engine.RunRunning) // and not cancelled by a copy of itself
			is.Equal(runEvent(t, db, first, engine.EventRunCancelled), (*engine.Event)(nil))
		})
	}
}
