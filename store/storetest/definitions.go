package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// sameJSON reports whether two documents hold the same values.
func sameJSON(a, b json.RawMessage) bool {
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && reflect.DeepEqual(va, vb)
}

// twoTasks returns a definition named name whose second task has the id
// task: a different definition, and hash, for each task id.
func twoTasks(name, task string) string {
	return fmt.Sprintf(`{"name":%q,"tasks":[{"id":"a","type":"noop"},{"id":%q,"type":"noop","depends_on":["a"]}]}`, name, task)
}

func testDefinitions(t *testing.T, open func(t *testing.T) engine.Store) {
	t.Run("versions: the first is 1, the same again is not new, a change is the next", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		v1, _ := storedDefinition(t, "a", wfJSON)
		v2, _ := storedDefinition(t, "a", twoTasks("wf", "c"))

		got, created, err := s.PutDefinition(t.Context(), v1)
		is.NoErr(err)                                    // put
		is.True(created)                                 // new
		is.Equal(got.Version, 1)                         // first version
		is.Equal(got.Hash, v1.Hash)                      // with its hash
		is.True(sameJSON(got.Definition, v1.Definition)) // and definition

		again := *v1
		again.CreatedAt = base.Add(time.Hour)
		got, created, err = s.PutDefinition(t.Context(), &again)
		is.NoErr(err)                                    // put the same again, later
		is.True(!created)                                // not new
		is.Equal(got.Version, 1)                         // the stored version
		is.Equal(got.Hash, v1.Hash)                      // its hash
		is.True(got.CreatedAt.Equal(micro(base)))        // and the time it was first stored
		is.True(sameJSON(got.Definition, v1.Definition)) // and its definition

		got, created, err = s.PutDefinition(t.Context(), v2)
		is.NoErr(err)            // put a changed definition
		is.True(created)         // new
		is.Equal(got.Version, 2) // the next version

		got, created, err = s.PutDefinition(t.Context(), v1)
		is.NoErr(err)            // the first definition again
		is.True(created)         // differs from the latest: new
		is.Equal(got.Version, 3) // versions only grow
	})

	t.Run("GetDefinition returns the latest or an exact version, else ErrNotFound", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		v1, _ := storedDefinition(t, "a", wfJSON)
		v2, _ := storedDefinition(t, "a", twoTasks("wf", "c"))
		for _, d := range []*engine.StoredDefinition{v1, v2} {
			_, _, err := s.PutDefinition(t.Context(), d)
			is.NoErr(err) // put
		}
		latest, err := s.GetDefinition(t.Context(), "a", "wf", 0)
		is.NoErr(err)                                       // latest
		is.Equal(latest.Version, 2)                         // is version 2
		is.Equal(latest.Hash, v2.Hash)                      // the second definition
		is.True(sameJSON(latest.Definition, v2.Definition)) // its JSON
		is.Equal(latest.TenantID, "a")                      // its tenant
		is.Equal(latest.Name, "wf")                         // its name
		first, err := s.GetDefinition(t.Context(), "a", "wf", 1)
		is.NoErr(err)                                      // exact version
		is.Equal(first.Version, 1)                         // version 1
		is.Equal(first.Hash, v1.Hash)                      // the first definition
		is.True(sameJSON(first.Definition, v1.Definition)) // its JSON
		is.True(first.CreatedAt.Equal(micro(base)))        // stored time

		for _, c := range []struct {
			tenant, name string
			version      int
		}{{"a", "nope", 0}, {"a", "wf", 3}, {"b", "wf", 0}, {"b", "wf", 1}} {
			_, err := s.GetDefinition(t.Context(), c.tenant, c.name, c.version)
			if !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("GetDefinition(%s, %s, %d): %v, want ErrNotFound", c.tenant, c.name, c.version, err)
			}
		}
	})

	t.Run("tenants have their own versions", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		a, _ := storedDefinition(t, "a", wfJSON)
		b, _ := storedDefinition(t, "b", wfJSON)
		_, _, err := s.PutDefinition(t.Context(), a)
		is.NoErr(err) // a's v1
		a2, _ := storedDefinition(t, "a", twoTasks("wf", "c"))
		_, _, err = s.PutDefinition(t.Context(), a2)
		is.NoErr(err) // a's v2
		got, created, err := s.PutDefinition(t.Context(), b)
		is.NoErr(err)            // put for b
		is.True(created)         // new for b, though a has it
		is.Equal(got.Version, 1) // b's own version 1
	})

	t.Run("concurrent puts of one definition store it once", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		const n = 8
		results := make(chan *engine.StoredDefinition, n)
		createdN := make(chan bool, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				d, _ := storedDefinition(t, "a", wfJSON)
				got, created, err := s.PutDefinition(t.Context(), d)
				if err != nil {
					t.Errorf("put: %v", err)
					return
				}
				results <- got
				createdN <- created
			})
		}
		wg.Wait()
		close(results)
		close(createdN)
		for got := range results {
			is.Equal(got.Version, 1) // everyone sees version 1
		}
		news := 0
		for c := range createdN {
			if c {
				news++
			}
		}
		is.Equal(news, 1) // exactly one put created it
	})

	t.Run("concurrent puts of different definitions get distinct versions", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		const n = 8
		versions := make(chan int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				d, _ := storedDefinition(t, "a", twoTasks("wf", fmt.Sprintf("t%d", i)))
				got, created, err := s.PutDefinition(t.Context(), d)
				if err != nil || !created {
					t.Errorf("put %d: created %v, %v", i, created, err)
					return
				}
				versions <- got.Version
			})
		}
		wg.Wait()
		close(versions)
		var got []int
		for v := range versions {
			got = append(got, v)
		}
		slices.Sort(got)
		is.Equal(got, []int{1, 2, 3, 4, 5, 6, 7, 8}) // one version each, none lost
		latest, err := s.GetDefinition(t.Context(), "a", "wf", 0)
		is.NoErr(err)               // latest
		is.Equal(latest.Version, n) // is the last
	})

	t.Run("ListDefinitions lists a tenant's latest versions by name", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		var hashes = map[string]string{}
		for _, data := range []string{twoTasks("zeta", "b"), twoTasks("alpha", "b"), twoTasks("alpha", "c"), twoTasks("mid", "b")} {
			d, _ := storedDefinition(t, "a", data)
			_, _, err := s.PutDefinition(t.Context(), d)
			is.NoErr(err) // put
			hashes[d.Name] = d.Hash
		}
		other, _ := storedDefinition(t, "b", twoTasks("beta", "b"))
		_, _, err := s.PutDefinition(t.Context(), other)
		is.NoErr(err) // another tenant's

		list, err := s.ListDefinitions(t.Context(), "a")
		is.NoErr(err) // list
		var names []string
		for _, d := range list {
			names = append(names, d.Name)
			is.Equal(d.TenantID, "a")        // a's
			is.Equal(d.Hash, hashes[d.Name]) // with the latest version's hash
			is.True(!d.CreatedAt.IsZero())   // and its time
		}
		is.Equal(names, []string{"alpha", "mid", "zeta"}) // by name, once each
		is.Equal(list[0].Version, 2)                      // alpha at its latest
		is.Equal(list[1].Version, 1)                      // mid
		none, err := s.ListDefinitions(t.Context(), "c")
		is.NoErr(err)          // a tenant without definitions
		is.Equal(len(none), 0) // has none
	})
}
