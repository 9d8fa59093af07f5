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

// maxFixtureEvents is more events than any fixture holds.
const maxFixtureEvents = 10_000

// logged returns the events of runs of tenant as stored, with their ids, in
// log order.
func logged(t testing.TB, s engine.Store, tenant string, runs ...string) []engine.Event {
	t.Helper()
	var out []engine.Event
	for _, id := range runs {
		evs, err := s.RunEvents(t.Context(), tenant, id, 0, 0)
		if err != nil {
			t.Fatalf("events of %s: %v", id, err)
		}
		out = append(out, evs...)
	}
	slices.SortFunc(out, func(a, b engine.Event) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// inTimeOrder returns events by time, then id.
func inTimeOrder(evs []engine.Event) []engine.Event {
	out := slices.Clone(evs)
	slices.SortFunc(out, func(a, b engine.Event) int {
		return cmp.Or(micro(a.At).Compare(micro(b.At)), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// keep returns the events f would select, in the order given.
func keep(evs []engine.Event, f engine.EventFilter) []engine.Event {
	var out []engine.Event
	for _, e := range evs {
		if (f.RunID == "" || e.RunID == f.RunID) && (f.TaskID == "" || e.TaskID == f.TaskID) &&
			(f.Type == "" || e.Type == f.Type) && (f.Actor == "" || e.Actor == f.Actor) &&
			(f.OnBehalf == "" || e.OnBehalf == f.OnBehalf) &&
			(f.Since.IsZero() || !micro(e.At).Before(micro(f.Since))) &&
			(f.Until.IsZero() || micro(e.At).Before(micro(f.Until))) && e.Seq > f.AfterSeq {
			out = append(out, e)
		}
	}
	return out
}

// pageAll pages through ListEvents with pages of size, each continuing after
// the last event of the one before, and returns every event.
func pageAll(t testing.TB, s engine.Store, f engine.EventFilter, size int) []engine.Event {
	t.Helper()
	f.Limit = size
	var out []engine.Event
	for pages := 0; ; pages++ {
		if pages > 10_000 {
			t.Fatalf("more than 10000 pages")
		}
		evs, err := s.ListEvents(t.Context(), f)
		if err != nil {
			t.Fatalf("list events: %v", err)
		}
		if len(evs) > size {
			t.Fatalf("a page of %d events, limit %d", len(evs), size)
		}
		out = append(out, evs...)
		if len(evs) < size {
			return out
		}
		f.After = engine.EventCursorOf(&evs[len(evs)-1])
	}
}

// stream returns every event StreamEvents gives for f, failing the test
// if it gives more than the fixtures hold.
func stream(t testing.TB, s engine.Store, f engine.EventFilter) []engine.Event {
	t.Helper()
	var out []engine.Event
	if err := s.StreamEvents(t.Context(), f, func(e *engine.Event) error {
		if len(out) == maxFixtureEvents {
			return fmt.Errorf("more than %d events: the stream repeats itself", maxFixtureEvents)
		}
		out = append(out, *e)
		return nil
	}); err != nil {
		t.Fatalf("stream events: %v", err)
	}
	return out
}

// sameIDs reports how two event lists differ by id, "" if not at all.
func sameIDs(got, want []engine.Event) string {
	g, w := make([]int64, len(got)), make([]int64, len(want))
	for i := range got {
		g[i] = got[i].ID
	}
	for i := range want {
		w[i] = want[i].ID
	}
	if slices.Equal(g, w) {
		return ""
	}
	return fmt.Sprintf("event ids\n got %v\nwant %v", g, w)
}

func testListEvents(t *testing.T, open func(t *testing.T) engine.Store) {
	s := open(t)
	planA := define(t, s, "acme", wfJSON)
	planG := define(t, s, "globex", wfJSON)
	// Three runs of acme whose changes interleave in the log: rb's events are
	// timed before ra's though written after them, rc's at the same times as
	// ra's; globex's run at the same times as well.
	hist := func(plan *definition.Plan, tenant, id, actor string, start time.Time) []engine.Change {
		h := newHistory(t, plan, tenant, id)
		h.clock, h.actor = start, actor
		if id == "rc" {
			h.onBehalf = "carol" // alice acting for carol
		}
		return lifecycle(h)
	}
	ra := hist(planA, "acme", "ra", "alice", base)
	rb := hist(planA, "acme", "rb", "bob", base.Add(-time.Hour))
	rc := hist(planA, "acme", "rc", "alice", base)
	gx := hist(planG, "globex", "gx", "bob", base)
	var written []engine.Event // acme's events in the order they were committed
	for i := range ra {
		for _, ch := range []engine.Change{ra[i], rb[i], gx[i], rc[i]} {
			mustCommit(t, s, ch)
			if ch.Run.TenantID == "acme" {
				written = append(written, ch.Events...)
			}
		}
	}
	all := logged(t, s, "acme", "ra", "rb", "rc")
	timed := inTimeOrder(all)
	since, until := ra[1].Events[0].At, ra[3].Events[0].At // a's start and b's start in ra's time

	t.Run("events come in log order, the order they were committed", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		got, err := s.ListEvents(t.Context(), engine.EventFilter{TenantID: "acme", Limit: engine.MaxPage + 1})
		is.NoErr(err)                          // list
		is.Equal(sameEvents(got, written), "") // every event as written, in commit order
		is.Equal(sameIDs(got, all), "")        // by ascending id
		is.True(sameIDs(all, timed) != "")     // which is not the time order here
	})

	cases := []struct {
		name  string
		f     engine.EventFilter
		order []engine.Event
	}{
		{"a run's events, by seq", engine.EventFilter{RunID: "rb"}, all},
		{"by task", engine.EventFilter{TaskID: "a"}, all},
		{"by type", engine.EventFilter{Type: engine.EventTaskStarted}, all},
		{"by actor", engine.EventFilter{Actor: "bob"}, all},
		{"by type and actor", engine.EventFilter{Type: engine.EventTaskReady, Actor: "alice"}, all},
		{"on behalf of", engine.EventFilter{OnBehalf: "carol"}, all},
		{"by actor and on behalf of", engine.EventFilter{Actor: "alice", OnBehalf: "carol", Type: engine.EventTaskStarted}, all},
		{"a run's events of a task", engine.EventFilter{RunID: "ra", TaskID: "b"}, all},
		{"a run's events after a seq", engine.EventFilter{RunID: "rc", AfterSeq: 3}, all},
		{"since, inclusive, in time order", engine.EventFilter{Since: since}, timed},
		{"until, exclusive, in time order", engine.EventFilter{Until: until}, timed},
		{"since and until by type, in time order", engine.EventFilter{Since: since, Until: until, Type: engine.EventTaskStarted}, timed},
		{"a run's events since, by seq", engine.EventFilter{RunID: "ra", Since: since}, all},
	}

	t.Run("every filter selects its events in its order, page by page", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		for _, c := range cases {
			c.f.TenantID = "acme"
			want := keep(c.order, c.f)
			if len(want) == 0 {
				t.Fatalf("%s: the fixture has no such event", c.name)
			}
			for _, size := range []int{1, 2, 5, engine.MaxPage + 1} {
				if d := sameIDs(pageAll(t, s, c.f, size), want); d != "" {
					t.Errorf("%s, pages of %d: %s", c.name, size, d)
				}
			}
		}
		got := pageAll(t, s, engine.EventFilter{TenantID: "acme", Since: since}, 10)
		is.True(got[0].At.Equal(micro(since))) // since is inclusive: the events at since are in
		got = pageAll(t, s, engine.EventFilter{TenantID: "acme", Until: until}, 10)
		is.True(micro(got[len(got)-1].At).Before(micro(until)))                                           // until is exclusive
		is.True(len(keep(all, engine.EventFilter{Since: until, Until: until.Add(time.Microsecond)})) > 0) // though events at until exist
	})

	t.Run("a tenant sees its own events only", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		got := pageAll(t, s, engine.EventFilter{TenantID: "globex"}, 3)
		is.Equal(sameIDs(got, logged(t, s, "globex", "gx")), "") // globex's events
		none, err := s.ListEvents(t.Context(), engine.EventFilter{TenantID: "acme", RunID: "gx", Limit: 10})
		is.NoErr(err)          // acme asks for globex's run
		is.Equal(len(none), 0) // and sees nothing of it
		none, err = s.ListEvents(t.Context(), engine.EventFilter{TenantID: "initech", Since: base.Add(-2 * time.Hour), Limit: 10})
		is.NoErr(err)          // a tenant without events
		is.Equal(len(none), 0) // has none
	})

	t.Run("a limit out of 1..MaxPage+1 or a timed cursor without a time is refused", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		for _, n := range []int{0, -1, engine.MaxPage + 2} {
			_, err := s.ListEvents(t.Context(), engine.EventFilter{TenantID: "acme", Limit: n})
			is.True(err != nil) // refused
		}
		_, err := s.ListEvents(t.Context(), engine.EventFilter{TenantID: "acme", Since: since, Limit: 10,
			After: &engine.EventCursor{ID: all[3].ID}})
		is.True(errors.Is(err, engine.ErrCursorWithoutTime)) // a timed query needs the cursor's time
		err = s.StreamEvents(t.Context(), engine.EventFilter{TenantID: "acme", Until: until,
			After: &engine.EventCursor{ID: all[3].ID}}, func(*engine.Event) error { return nil })
		is.True(errors.Is(err, engine.ErrCursorWithoutTime)) // streaming too
	})
}

func testStreamEvents(t *testing.T, open func(t *testing.T) engine.Store) {
	s := open(t)
	planA := define(t, s, "acme", wfJSON)
	planG := define(t, s, "globex", wfJSON)
	// 200 runs of acme, 1,400 events, written in four calls of 200 changes;
	// every run's events at the same times, so that the time order is all
	// ties broken by id. Four runs of globex in between.
	const runs = 200
	steps := make([][]engine.Change, 4)
	for i := range runs {
		for j, ch := range lifecycle(newHistory(t, planA, "acme", fmt.Sprintf("run-%03d", i))) {
			steps[j] = append(steps[j], ch)
		}
	}
	var written []engine.Event
	var globex []string
	for j, chs := range steps {
		mustCommit(t, s, chs...)
		for _, ch := range chs {
			written = append(written, ch.Events...)
		}
		id := fmt.Sprintf("gx-%d", j)
		mustCommit(t, s, newHistory(t, planG, "globex", id).next(evCreated))
		globex = append(globex, id)
	}
	var names []string
	for i := range runs {
		names = append(names, fmt.Sprintf("run-%03d", i))
	}
	all := logged(t, s, "acme", names...)

	t.Run("every event comes once, in log order, whatever the number", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		got := stream(t, s, engine.EventFilter{TenantID: "acme"})
		is.Equal(sameEvents(got, written), "") // every event as written, in commit order
		is.Equal(sameIDs(got, all), "")        // by ascending id
	})

	t.Run("a limit, a cursor and filters bound the stream", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		is.Equal(sameIDs(stream(t, s, engine.EventFilter{TenantID: "acme", Limit: 700}), all[:700]), "") // the first 700
		after := engine.EventCursorOf(&all[599])
		is.Equal(sameIDs(stream(t, s, engine.EventFilter{TenantID: "acme", After: after}), all[600:]), "") // after the 600th
		f := engine.EventFilter{TenantID: "acme", Type: engine.EventTaskStarted}
		is.Equal(sameIDs(stream(t, s, f), keep(all, f)), "") // by type
		f = engine.EventFilter{TenantID: "acme", RunID: "run-123"}
		is.Equal(sameIDs(stream(t, s, f), keep(all, f)), "") // one run
	})

	t.Run("a timed stream comes in time order, ties by id, across pages", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		timed := inTimeOrder(all)
		f := engine.EventFilter{TenantID: "acme", Since: base}
		got := stream(t, s, f)
		is.Equal(len(got), len(all))               // every event
		is.Equal(sameIDs(got, keep(timed, f)), "") // in time order
		f = engine.EventFilter{TenantID: "acme", Since: all[0].At, Until: timed[len(timed)-1].At}
		is.Equal(sameIDs(stream(t, s, f), keep(timed, f)), "") // a window
		f.After = engine.EventCursorOf(&timed[450])
		want := keep(timed[451:], f)
		is.Equal(sameIDs(stream(t, s, f), want), "")      // continuing after a timed cursor
		is.Equal(sameIDs(pageAll(t, s, f, 97), want), "") // as pages do
	})

	t.Run("an error from fn stops the stream", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		stop := errors.New("stop")
		calls := 0
		err := s.StreamEvents(t.Context(), engine.EventFilter{TenantID: "acme"}, func(*engine.Event) error {
			if calls++; calls == 3 {
				return stop
			}
			return nil
		})
		is.True(errors.Is(err, stop)) // fn's error returned
		is.Equal(calls, 3)            // and no further calls
	})

	t.Run("a tenant streams its own events only", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		got := stream(t, s, engine.EventFilter{TenantID: "globex"})
		is.Equal(sameIDs(got, logged(t, s, "globex", globex...)), "") // globex's events
		is.Equal(len(got), len(globex))                               // one each
	})
}
