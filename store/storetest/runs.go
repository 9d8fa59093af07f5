package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

func testRuns(t *testing.T, open func(t *testing.T) engine.Store) {
	t.Run("LoadRun and GetRunRow read a tenant's run, never another's", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		plan := define(t, s, "a", wfJSON)
		define(t, s, "b", wfJSON)
		chs := lifecycle(newHistory(t, plan, "a", "r1"))
		mustCommit(t, s, chs...)
		last := chs[len(chs)-1]

		run, tasks, err := s.LoadRun(t.Context(), "a", "r1")
		is.NoErr(err) // its tenant reads it
		h := newHistory(t, plan, "a", "r1")
		lifecycle(h)
		is.Equal(sameRows(run, tasks, &last.Run, h.tasks), "") // with every task, by position
		for i := range tasks {
			is.Equal(tasks[i].Pos, i) // in topological order
		}
		row, err := s.GetRunRow(t.Context(), "a", "r1")
		is.NoErr(err)                      // the row alone
		is.True(engine.EqualRun(row, run)) // is the same row

		_, _, err = s.LoadRun(t.Context(), "b", "r1")
		is.True(errors.Is(err, engine.ErrNotFound)) // another tenant's run is not found
		_, err = s.GetRunRow(t.Context(), "b", "r1")
		is.True(errors.Is(err, engine.ErrNotFound)) // nor its row
		_, _, err = s.LoadRun(t.Context(), "a", "nope")
		is.True(errors.Is(err, engine.ErrNotFound)) // an unknown run
		_, err = s.GetRunRow(t.Context(), "a", "nope")
		is.True(errors.Is(err, engine.ErrNotFound)) // an unknown row
	})

	t.Run("LoadActiveRuns gives every tenant's pending, running and paused runs with all their tasks", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s := open(t)
		want := map[string][]engine.Task{}
		for _, tenant := range []string{"a", "b"} {
			plan := define(t, s, tenant, wfJSON)
			for _, st := range engine.RunStates() {
				id := tenant + "-" + string(st)
				chs := runIn(t, plan, tenant, id, st, time.Time{})
				mustCommit(t, s, chs...)
				if !st.Terminal() {
					_, tasks, err := s.LoadRun(t.Context(), tenant, id)
					is.NoErr(err) // stored
					want[id] = tasks
				}
			}
		}
		got := map[string][]engine.Task{}
		wrote := false
		err := s.LoadActiveRuns(t.Context(), func(r *engine.Run, tasks []engine.Task) error {
			is.True(!r.State.Terminal()) // active only
			if _, dup := got[r.ID]; dup {
				t.Errorf("run %s came twice", r.ID)
			}
			slices.SortFunc(tasks, func(a, b engine.Task) int { return a.Pos - b.Pos })
			got[r.ID] = tasks
			if !wrote { // fn may write
				wrote = true
				d, _ := storedDefinition(t, r.TenantID, twoTasks("written-during-load", "b"))
				_, _, err := s.PutDefinition(t.Context(), d)
				is.NoErr(err) // a write from fn
			}
			return nil
		})
		is.NoErr(err)                 // load
		is.Equal(len(got), len(want)) // three active states, two tenants
		for id, tasks := range want {
			is.Equal(sameTasks(got[id], tasks), "") // every task of each, as stored
		}

		stop := errors.New("stop")
		calls := 0
		err = s.LoadActiveRuns(t.Context(), func(*engine.Run, []engine.Task) error { calls++; return stop })
		is.True(errors.Is(err, stop)) // fn's error returned
		is.Equal(calls, 1)            // and no further calls
	})
}

func testRunEvents(t *testing.T, open func(t *testing.T) engine.Store) {
	s := open(t)
	plan := define(t, s, "default", wfJSON)
	define(t, s, "other", wfJSON)
	// Two runs committed alternately, so that their events interleave in
	// the log.
	one, two := lifecycle(newHistory(t, plan, "default", "one")), lifecycle(newHistory(t, plan, "default", "two"))
	var want []engine.Event
	for i := range one {
		mustCommit(t, s, one[i])
		mustCommit(t, s, two[i])
		want = append(want, one[i].Events...)
	}

	t.Run("all events of a run come in seq order", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		got, err := s.RunEvents(t.Context(), "default", "one", 0, 0)
		is.NoErr(err)                       // read
		is.Equal(sameEvents(got, want), "") // every event of run one only
		for i := 1; i < len(got); i++ {
			is.True(got[i].ID > got[i-1].ID) // log positions ascend
		}
		all, err := s.RunEvents(t.Context(), "default", "one", 0, -1)
		is.NoErr(err)      // a negative limit
		is.Equal(all, got) // means all as well
	})

	t.Run("afterSeq and limit page through a run's log", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		var pages [][]engine.Event
		after := int64(0)
		for {
			page, err := s.RunEvents(t.Context(), "default", "one", after, 3)
			is.NoErr(err) // read a page
			if len(page) == 0 {
				break
			}
			is.True(len(page) <= 3)        // at most limit
			is.Equal(page[0].Seq, after+1) // continues after the cursor
			pages = append(pages, page)
			after = page[len(page)-1].Seq
		}
		is.Equal(len(pages), 3)                                 // 3 + 3 + 1
		is.Equal(sameEvents(slices.Concat(pages...), want), "") // pages add up to the log
		tail, err := s.RunEvents(t.Context(), "default", "one", 5, 0)
		is.NoErr(err)                            // after seq 5
		is.Equal(sameEvents(tail, want[5:]), "") // seq 6 and 7
	})

	t.Run("a run the tenant does not hold has no events", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		none, err := s.RunEvents(t.Context(), "default", "nope", 0, 0)
		is.NoErr(err)          // an unknown run
		is.Equal(len(none), 0) // has none
		none, err = s.RunEvents(t.Context(), "other", "one", 0, 0)
		is.NoErr(err)          // another tenant's run
		is.Equal(len(none), 0) // shows none
	})
}

// listed is a run of the ListRuns fixture as the test expects it.
type listed struct {
	id       string
	tenant   string
	workflow string
	state    engine.RunState
	created  time.Time
	origin   *engine.Origin
}

// listAll pages through ListRuns with pages of size and returns the ids. It
// checks that every page but the last is full and that only the last has
// no cursor.
func listAll(t testing.TB, s engine.Store, f engine.RunFilter, size int) []string {
	t.Helper()
	f.Limit = size
	var out []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("more than 1000 pages")
		}
		runs, next, err := s.ListRuns(t.Context(), f)
		if err != nil {
			t.Fatalf("list runs: %v", err)
		}
		out = append(out, ids(runs)...)
		if next == nil {
			return out
		}
		if len(runs) != size {
			t.Fatalf("page %d: %d runs and a cursor, want a full page of %d", pages, len(runs), size)
		}
		f.Cursor = next
	}
}

func testListRuns(t *testing.T, open func(t *testing.T) engine.Store) {
	s := open(t)
	plans := map[string]map[string]*definition.Plan{}
	for _, tenant := range []string{"acme", "globex"} {
		plans[tenant] = map[string]*definition.Plan{"wf": define(t, s, tenant, wfJSON), "other": define(t, s, tenant, otherJSON)}
	}
	// 60 runs of acme in groups of four created at the same microsecond,
	// whose ids do not follow their creation; 12 of globex at the same times.
	states := []engine.RunState{engine.RunPending, engine.RunRunning, engine.RunCompleted, engine.RunFailed, engine.RunPaused}
	var all []listed
	var chs []engine.Change
	// Every third run was started by a schedule's slot or a webhook.
	origins := []*engine.Origin{nil, {Kind: engine.OriginSchedule, ID: "nightly", Slot: base}, nil,
		{Kind: engine.OriginWebhook, ID: "gh", Ref: "delivery-1"}, nil, {Kind: engine.OriginSchedule, ID: "hourly", Slot: base}}
	add := func(tenant, id string, i int) {
		r := listed{id: id, tenant: tenant, workflow: []string{"wf", "other"}[i%2], state: states[i%len(states)],
			created: base.Add(time.Duration(i/4) * time.Millisecond), origin: origins[i%len(origins)]}
		all = append(all, r)
		chs = append(chs, runFrom(t, plans[tenant][r.workflow], tenant, r.id, r.state, r.created, r.origin)...)
	}
	for i := range 60 {
		add("acme", fmt.Sprintf("run-%02d", (i*37)%60), i)
	}
	for i := range 12 {
		add("globex", fmt.Sprintf("globex-%02d", (i*5)%12), i)
	}
	mustCommit(t, s, chs...)
	slices.SortFunc(all, func(a, b listed) int {
		return cmp.Or(b.created.Compare(a.created), cmp.Compare(b.id, a.id))
	})
	expect := func(tenant string, keep func(listed) bool) []string {
		var out []string
		for _, r := range all {
			if r.tenant == tenant && keep(r) {
				out = append(out, r.id)
			}
		}
		return out
	}
	every := func(listed) bool { return true }

	t.Run("runs come newest first, by id within a time", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		runs, next, err := s.ListRuns(t.Context(), engine.RunFilter{TenantID: "acme", Limit: engine.MaxPage})
		is.NoErr(err)                              // list
		is.Equal(next, (*engine.RunCursor)(nil))   // one page
		is.Equal(ids(runs), expect("acme", every)) // in order
		is.Equal(runs[0].TenantID, "acme")         // rows of the tenant
		row, err := s.GetRunRow(t.Context(), "acme", runs[0].ID)
		is.NoErr(err)               // the same run
		is.True(len(row.Input) > 0) // has an input
		summary := *row
		summary.Input, summary.Output = nil, nil
		is.True(engine.EqualRun(&summary, &runs[0])) // which its list row leaves out, and nothing else
		for _, r := range runs {
			is.True(r.Input == nil && r.Output == nil) // no list row carries a payload
		}
	})

	t.Run("pages add up to the list without gaps or repeats", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		for _, size := range []int{1, 3, 4, 7, 59, 60, 61} {
			got := listAll(t, s, engine.RunFilter{TenantID: "acme"}, size)
			is.Equal(got, expect("acme", every)) // every run once, in order
		}
	})

	t.Run("every filter selects its runs, page by page", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		after, before := base.Add(3*time.Millisecond), base.Add(11*time.Millisecond)
		cases := []struct {
			name string
			f    engine.RunFilter
			keep func(listed) bool
		}{
			{"by state", engine.RunFilter{State: engine.RunRunning}, func(r listed) bool { return r.state == engine.RunRunning }},
			{"by workflow", engine.RunFilter{Workflow: "other"}, func(r listed) bool { return r.workflow == "other" }},
			{"by state and workflow", engine.RunFilter{State: engine.RunCompleted, Workflow: "wf"},
				func(r listed) bool { return r.state == engine.RunCompleted && r.workflow == "wf" }},
			{"created after, exclusive", engine.RunFilter{CreatedAfter: after}, func(r listed) bool { return micro(r.created).After(micro(after)) }},
			{"created before, exclusive", engine.RunFilter{CreatedBefore: before}, func(r listed) bool { return micro(r.created).Before(micro(before)) }},
			{"created between, by state", engine.RunFilter{CreatedAfter: after, CreatedBefore: before, State: engine.RunPending},
				func(r listed) bool {
					return micro(r.created).After(micro(after)) && micro(r.created).Before(micro(before)) && r.state == engine.RunPending
				}},
			{"by origin kind", engine.RunFilter{OriginKind: engine.OriginSchedule},
				func(r listed) bool { return r.origin != nil && r.origin.Kind == engine.OriginSchedule }},
			{"by origin kind and id, by state", engine.RunFilter{OriginKind: engine.OriginSchedule, OriginID: "nightly", State: engine.RunRunning},
				func(r listed) bool {
					return r.origin != nil && r.origin.ID == "nightly" && r.state == engine.RunRunning
				}},
			{"a state no run is in", engine.RunFilter{State: engine.RunTimedOut}, func(listed) bool { return false }},
		}
		for _, c := range cases {
			c.f.TenantID = "acme"
			want := expect("acme", c.keep)
			if c.name != "a state no run is in" && len(want) == 0 {
				t.Fatalf("%s: the fixture has no such run", c.name)
			}
			for _, size := range []int{2, engine.MaxPage} {
				if got := listAll(t, s, c.f, size); !slices.Equal(got, want) {
					t.Errorf("%s, pages of %d:\n got %v\nwant %v", c.name, size, got, want)
				}
			}
		}
		is.True(len(cases) > 0)
	})

	t.Run("a tenant lists its own runs only", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		is.Equal(listAll(t, s, engine.RunFilter{TenantID: "globex"}, 5), expect("globex", every)) // globex's runs
		is.Equal(len(listAll(t, s, engine.RunFilter{TenantID: "initech"}, 5)), 0)                 // a tenant without runs
		got := listAll(t, s, engine.RunFilter{TenantID: "globex", Workflow: "wf", State: engine.RunPending}, 5)
		is.Equal(got, expect("globex", func(r listed) bool { return r.workflow == "wf" && r.state == engine.RunPending }))
	})

	t.Run("a run keeps what started it, in its row and its list row", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		runs := listAll(t, s, engine.RunFilter{TenantID: "acme", OriginKind: engine.OriginWebhook, OriginID: "gh"}, engine.MaxPage)
		is.True(len(runs) > 0) // the fixture has webhook runs
		row, err := s.GetRunRow(t.Context(), "acme", runs[0])
		is.NoErr(err)
		is.Equal(*row.Origin, engine.Origin{Kind: engine.OriginWebhook, ID: "gh", Ref: "delivery-1"}) // the origin as recorded
		is.Equal(row.Alias, "live")                                                                   // and the alias
		page, _, err := s.ListRuns(t.Context(), engine.RunFilter{TenantID: "acme", OriginKind: engine.OriginSchedule, OriginID: "nightly", Limit: 1})
		is.NoErr(err)
		is.Equal(*page[0].Origin, engine.Origin{Kind: engine.OriginSchedule, ID: "nightly", Slot: micro(base)}) // a slot's time
		_, _, err = s.ListRuns(t.Context(), engine.RunFilter{TenantID: "acme", OriginID: "nightly", Limit: 1})
		is.True(err != nil) // an origin id without its kind is refused
	})

	t.Run("counts by state match the list, filter by filter", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		rc, ok := s.(engine.RunCounter)
		if !ok {
			t.Fatal("the store does not count runs (engine.RunCounter)")
		}
		for _, f := range []engine.RunFilter{{}, {Workflow: "other"}, {OriginKind: engine.OriginSchedule},
			{OriginKind: engine.OriginSchedule, OriginID: "nightly"}, {CreatedAfter: base.Add(5 * time.Millisecond)}} {
			f.TenantID = "acme"
			got, err := rc.CountRuns(t.Context(), f)
			is.NoErr(err)
			want := map[engine.RunState]int{}
			for _, st := range engine.RunStates() {
				g := f
				g.State = st
				if n := len(listAll(t, s, g, engine.MaxPage)); n > 0 {
					want[st] = n
				}
			}
			is.Equal(got, want) // the counts of what the list lists
		}
		got, err := rc.CountRuns(t.Context(), engine.RunFilter{TenantID: "initech"})
		is.NoErr(err)
		is.Equal(len(got), 0) // a tenant without runs counts none
	})

	t.Run("a limit out of 1..MaxPage is refused", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		for _, n := range []int{0, -1, engine.MaxPage + 1} {
			_, _, err := s.ListRuns(t.Context(), engine.RunFilter{TenantID: "acme", Limit: n})
			is.True(err != nil) // refused
		}
	})
}
