package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

func testAudit(t *testing.T, open func(t *testing.T) engine.Store) {
	t.Run("EachRun gives every run of every tenant once, by id", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plans := map[string]*definition.Plan{"a": define(t, s, "a", wfJSON), "b": define(t, s, "b", wfJSON)}
		// More runs than a store may read in one page.
		var chs []engine.Change
		var want []string
		for i := range 1100 {
			tenant := []string{"a", "b"}[i%2]
			id := fmt.Sprintf("run-%04d", (i*13)%1100)
			chs = append(chs, newHistory(t, plans[tenant], tenant, id).next(evCreated))
			want = append(want, tenant+"/"+id)
		}
		mustCommit(t, s, chs...)
		slices.SortFunc(want, func(x, y string) int {
			return strings.Compare(x[strings.IndexByte(x, '/'):], y[strings.IndexByte(y, '/'):])
		})
		var got []string
		err := s.EachRun(t.Context(), func(tenant, id string) error {
			got = append(got, tenant+"/"+id)
			if len(got)%700 == 1 { // fn may read
				if _, _, err := s.LoadRun(t.Context(), tenant, id); err != nil {
					t.Errorf("load run %s during EachRun: %v", id, err)
				}
			}
			return nil
		})
		is.NoErr(err)       // walk
		is.Equal(got, want) // every run once, by id, with its tenant

		stop := errors.New("stop")
		calls := 0
		err = s.EachRun(t.Context(), func(string, string) error { calls++; return stop })
		is.True(errors.Is(err, stop)) // fn's error returned
		is.Equal(calls, 1)            // and no further calls
	})

	t.Run("RunTenant names a run's tenant", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "b", wfJSON)
		mustCommit(t, s, newHistory(t, plan, "b", "r1").next(evCreated))
		tenant, err := s.RunTenant(t.Context(), "r1")
		is.NoErr(err)         // found
		is.Equal(tenant, "b") // its tenant
		_, err = s.RunTenant(t.Context(), "nope")
		is.True(errors.Is(err, engine.ErrNotFound)) // an unknown run
	})

	t.Run("verification passes consistent runs and reports the others", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plans := map[string]*definition.Plan{"a": define(t, s, "a", wfJSON), "b": define(t, s, "b", wfJSON)}
		commitAll := func(tenant, id string, spoil func([]engine.Change)) {
			chs := lifecycle(newHistory(t, plans[tenant], tenant, id))
			if spoil != nil {
				spoil(chs)
			}
			mustCommit(t, s, chs...)
		}
		commitAll("a", "clean-a", nil)
		commitAll("b", "clean-b", nil)
		// The last change writes the rows that stay: b's, and the run's.
		commitAll("a", "task-row", func(chs []engine.Change) {
			chs[3].Tasks = slices.Clone(chs[3].Tasks)
			chs[3].Tasks[0].Attempt = 2 // b's row says two attempts, the log one
		})
		commitAll("b", "run-row", func(chs []engine.Change) {
			chs[3].Run.Output = json.RawMessage(`{"x":1}`) // an output no event recorded
		})
		commitAll("a", "chain", func(chs []engine.Change) {
			chs[2].Events = slices.Clone(chs[2].Events)
			chs[2].Events[0].Data = json.RawMessage(`{"output":{"a":2}}`) // changed after it was hashed
		})

		is.NoErr(engine.VerifyRun(t.Context(), s, "a", "clean-a")) // a consistent run verifies
		is.NoErr(engine.VerifyRun(t.Context(), s, "b", "clean-b")) // in any tenant
		for id, want := range map[string]string{"task-row": "task b ", "run-row": "run row", "chain": "hash chain"} {
			tenant, err := s.RunTenant(t.Context(), id)
			is.NoErr(err) // its tenant
			err = engine.VerifyRun(t.Context(), s, tenant, id)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("verify %s: %v, want an error naming %q", id, err, want)
			}
		}
		err := engine.VerifyRun(t.Context(), s, "b", "clean-a")
		is.True(errors.Is(err, engine.ErrNotFound)) // another tenant's run is not verified

		var bad []string
		n, err := engine.Verify(t.Context(), s, func(tenant, id string, err error) { bad = append(bad, tenant+"/"+id) })
		is.NoErr(err)  // verify all
		is.Equal(n, 5) // every run checked
		slices.Sort(bad)
		is.Equal(bad, []string{"a/chain", "a/task-row", "b/run-row"}) // exactly the spoiled ones
	})
}

func testPingAndHealth(t *testing.T, open func(t *testing.T) engine.Store) {
	is := is.New(t)
	s := open(t)
	is.NoErr(s.Ping(t.Context())) // answers
	define(t, s, "default", wfJSON)
	h := s.Health()
	is.True(h.Writable)       // a store whose writes succeed is writable
	is.Equal(h.Reason, "")    // with no reason
	is.True(h.Since.IsZero()) // and no time it failed since
}
