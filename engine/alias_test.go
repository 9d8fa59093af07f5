package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

var operator = engine.By("key:k1:ops")

// registerVersions stores n distinct versions of the definition wf (version
// i has a task of type typ[i-1], "noop" when typ is shorter).
func registerVersions(t *testing.T, e *engine.Engine, name string, typs ...string) {
	t.Helper()
	for i, typ := range typs {
		def := fmt.Sprintf(`{"name":%q,"tasks":[{"id":"a","type":%q,"priority":%d}]}`, name, typ, i)
		sd, _, err := e.RegisterDefinition(context.Background(), tenant, []byte(def))
		if err != nil || sd.Version != i+1 {
			t.Fatalf("register %s v%d: %v", name, i+1, err)
		}
	}
}

func startRef(t *testing.T, e *engine.Engine, ref string, input string) *engine.Run {
	t.Helper()
	req := engine.StartRequest{TenantID: tenant, Workflow: ref}
	if input != "" {
		req.Input = json.RawMessage(input)
	}
	run, err := e.StartRun(context.Background(), req)
	if err != nil {
		t.Fatalf("start %s: %v", ref, err)
	}
	return run
}

// createdData is the data of a run's run.created event.
func createdData(t *testing.T, db *store.DB, runID string) engine.EventData {
	t.Helper()
	evs, err := db.RunEvents(context.Background(), tenant, runID, 0, 1)
	if err != nil || len(evs) != 1 || evs[0].Type != engine.EventRunCreated {
		t.Fatalf("run.created of %s: %v %v", runID, evs, err)
	}
	var d engine.EventData
	if err := json.Unmarshal(evs[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAlias_StartResolvesPlainVersionLatestAndAlias(t *testing.T) {
	is := is.New(t)
	db := openTestStore(t)
	e := startEngine(t, db, nil)
	registerVersions(t, e, "wf", "noop", "noop", "noop")
	ctx := context.Background()

	run := startRef(t, e, "wf", "")
	is.Equal(run.Version, 3)                             // a plain name starts the latest
	is.Equal(run.Alias, "")                              // without an alias
	is.Equal(startRef(t, e, "wf@1", "").Version, 1)      // name@N starts version N
	is.Equal(startRef(t, e, "wf@latest", "").Version, 3) // name@latest the latest

	_, err := e.SetAlias(ctx, operator, tenant, "wf", "live", engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 2}}})
	is.NoErr(err) // set live -> v2
	run = startRef(t, e, "wf@live", "")
	is.Equal(run.Version, 2)     // the alias's version
	is.Equal(run.Alias, "live")  // recorded on the run
	is.Equal(run.Workflow, "wf") // under the definition's name
	d := createdData(t, db, run.ID)
	is.Equal(d.Alias, "live") // run.created records the alias
	is.Equal(d.Version, 2)    // and the version it got
	stored, _, err := db.LoadRun(ctx, tenant, run.ID)
	is.NoErr(err)
	is.Equal(stored.Alias, "live") // the runs row too

	// Moving the alias takes effect on the next start at once.
	_, err = e.SetAlias(ctx, operator, tenant, "wf", "live", engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 1}}})
	is.NoErr(err)
	is.Equal(startRef(t, e, "wf@live", "").Version, 1) // the cache forgot the old target

	_, err = e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "wf@nope"})
	is.True(errors.Is(err, engine.ErrAliasNotFound)) // an unknown alias
	_, err = e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "wf@9"})
	is.True(errors.Is(err, engine.ErrNotFound)) // a version that does not exist
	_, err = e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "wf@live", Version: 2})
	var fe *engine.FieldError
	is.True(errors.As(err, &fe) && fe.Field == "version") // a version twice
	_, err = e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "wf@a/b"})
	is.True(errors.As(err, &fe) && fe.Field == "workflow") // a malformed reference
}

func TestAlias_WeightedPickFollowsTheWeights(t *testing.T) {
	is := is.New(t)
	a := &engine.Alias{TenantID: tenant, Name: "wf", Alias: "canary",
		Versions: []engine.AliasTarget{{Version: 3, Weight: 90}, {Version: 4, Weight: 10}}}
	counts := map[int]int{}
	for i := range 1000 {
		counts[a.Pick([]byte(fmt.Sprintf("run-%04d", i)))]++
	}
	// A deterministic hash spread over 1000 keys: within 4 points of each weight.
	is.True(counts[3] >= 860 && counts[3] <= 940) // ~90% on v3
	is.Equal(counts[3]+counts[4], 1000)           // nothing else
	// The same key always gets the same version.
	for i := range 50 {
		k := []byte(fmt.Sprintf("customer-%d", i))
		is.Equal(a.Pick(k), a.Pick(k))
	}
	// Moving weight to the second version keeps every key it had.
	b := *a
	b.Versions = []engine.AliasTarget{{Version: 3, Weight: 50}, {Version: 4, Weight: 50}}
	for i := range 1000 {
		k := []byte(fmt.Sprintf("k%d", i))
		if a.Pick(k) == 4 {
			is.Equal(b.Pick(k), 4) // still on v4 after 90/10 -> 50/50
		}
	}
}

func TestAlias_StartsSplitByRunIDAndStickyKey(t *testing.T) {
	is := is.New(t)
	db := openTestStore(t)
	e := startEngine(t, db, nil)
	registerVersions(t, e, "wf", "noop", "noop")
	ctx := context.Background()
	a, err := e.SetAlias(ctx, operator, tenant, "wf", "canary", engine.AliasSpec{
		Versions: []engine.AliasTarget{{Version: 1, Weight: 50}, {Version: 2, Weight: 50}}})
	is.NoErr(err)
	counts := map[int]int{}
	for range 60 {
		run := startRef(t, e, "wf@canary", "")
		is.Equal(run.Version, a.Pick([]byte(run.ID))) // picked by the hash of the run id
		counts[run.Version]++
	}
	is.True(counts[1] > 10 && counts[2] > 10) // both versions get runs

	_, err = e.SetAlias(ctx, operator, tenant, "wf", "sticky", engine.AliasSpec{
		Versions:  []engine.AliasTarget{{Version: 1, Weight: 50}, {Version: 2, Weight: 50}},
		StickyKey: "${workflow.input.customer}"})
	is.NoErr(err)
	seen := map[string]int{}
	for i := range 40 {
		cust := fmt.Sprintf("c%d", i%4)
		run := startRef(t, e, "wf@sticky", fmt.Sprintf(`{"customer":%q,"n":%d}`, cust, i))
		if v, ok := seen[cust]; ok {
			is.Equal(run.Version, v) // the same customer, the same version
		}
		seen[cust] = run.Version
	}

	runs, _, err := e.ListRuns(ctx, engine.RunFilter{TenantID: tenant, Limit: 1000})
	is.NoErr(err)
	before := len(runs)
	_, err = e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "wf@sticky", Input: json.RawMessage(`{"user":"x"}`)})
	var fe *engine.FieldError
	is.True(errors.As(err, &fe))         // the sticky key does not resolve
	is.Equal(fe.Field, "input.customer") // naming the field the input lacks
	runs, _, err = e.ListRuns(ctx, engine.RunFilter{TenantID: tenant, Limit: 1000})
	is.NoErr(err)
	is.Equal(len(runs), before) // nothing started
}

func TestAlias_MovesAreAuditedWithOldAndNew(t *testing.T) {
	is := is.New(t)
	db := openTestStore(t)
	e := startEngine(t, db, nil)
	registerVersions(t, e, "wf", "noop", "noop")
	ctx := context.Background()
	by := engine.Caller{Actor: "key:k1:ops", OnBehalf: "alice"}
	a, err := e.SetAlias(ctx, by, tenant, "wf", "live", engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 1}}})
	is.NoErr(err)
	is.Equal(a.Revision, int64(1)) // created at revision 1
	a, err = e.SetAlias(ctx, by, tenant, "wf", "live", engine.AliasSpec{Revision: 1,
		Versions: []engine.AliasTarget{{Version: 1, Weight: 90}, {Version: 2, Weight: 10}}})
	is.NoErr(err)
	is.Equal(a.Revision, int64(2)) // moved: revision 2
	_, err = e.SetAlias(ctx, by, tenant, "wf", "live", engine.AliasSpec{Revision: 1, Versions: []engine.AliasTarget{{Version: 2}}})
	is.True(errors.Is(err, engine.ErrConflict)) // a stale revision is refused
	// Rollback is moving it back.
	_, err = e.SetAlias(ctx, by, tenant, "wf", "live", engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 1}}})
	is.NoErr(err)
	is.NoErr(e.DeleteAlias(ctx, by, tenant, "wf", "live", 0))
	_, err = e.GetAlias(ctx, tenant, "wf", "live")
	is.True(errors.Is(err, engine.ErrAliasNotFound)) // deleted

	log, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: tenant})
	is.NoErr(err)
	var actions []engine.AdminAction
	for _, ev := range log {
		actions = append(actions, ev.Action)
		is.Equal(ev.Actor, "key:k1:ops") // who moved it
	}
	is.Equal(actions, []engine.AdminAction{engine.AdminAliasSet, engine.AdminAliasSet, engine.AdminAliasSet, engine.AdminAliasDeleted})
	var moved struct {
		From     []engine.AliasTarget `json:"from"`
		To       []engine.AliasTarget `json:"to"`
		OnBehalf string               `json:"on_behalf"`
		Revision int64                `json:"revision"`
	}
	is.NoErr(json.Unmarshal(log[1].Data, &moved))
	is.Equal(moved.From, []engine.AliasTarget{{Version: 1, Weight: 100}})                        // the old target
	is.Equal(moved.To, []engine.AliasTarget{{Version: 1, Weight: 90}, {Version: 2, Weight: 10}}) // the new
	is.Equal(moved.OnBehalf, "alice")                                                            // on whose behalf
	is.Equal(moved.Revision, int64(2))                                                           // and the revision it made
	n, err := db.VerifyAdminLog(ctx)
	is.NoErr(err)  // the chain holds
	is.Equal(n, 4) // with every move
}

func TestAlias_BadInputIsRefusedAndWritesNothing(t *testing.T) {
	db := openTestStore(t)
	e := startEngine(t, db, nil)
	registerVersions(t, e, "wf", "noop", "noop")
	ctx := context.Background()
	two := func(w1, w2 int) []engine.AliasTarget {
		return []engine.AliasTarget{{Version: 1, Weight: w1}, {Version: 2, Weight: w2}}
	}
	cases := []struct {
		name, def, alias, field string
		spec                    engine.AliasSpec
	}{
		{"weights not summing to 100", "wf", "live", "versions", engine.AliasSpec{Versions: two(50, 40)}},
		{"a zero weight", "wf", "live", "versions[1].weight", engine.AliasSpec{Versions: two(100, 0)}},
		{"three versions", "wf", "live", "versions", engine.AliasSpec{Versions: append(two(50, 25), engine.AliasTarget{Version: 2, Weight: 25})}},
		{"no version", "wf", "live", "versions", engine.AliasSpec{}},
		{"a version named twice", "wf", "live", "versions[1].version", engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 1, Weight: 50}, {Version: 1, Weight: 50}}}},
		{"a missing version", "wf", "live", "versions[1].version", engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 1, Weight: 50}, {Version: 9, Weight: 50}}}},
		{"a numeric alias", "wf", "3", "alias", engine.AliasSpec{Versions: two(50, 50)}},
		{"alias latest", "wf", "latest", "alias", engine.AliasSpec{Versions: two(50, 50)}},
		{"a malformed alias", "wf", "a b", "alias", engine.AliasSpec{Versions: two(50, 50)}},
		{"a sticky key referencing a task", "wf", "live", "sticky_key", engine.AliasSpec{Versions: two(50, 50), StickyKey: "${a.output.x}"}},
		{"a sticky key without reference", "wf", "live", "sticky_key", engine.AliasSpec{Versions: two(50, 50), StickyKey: "fixed"}},
		{"rollback on one version", "wf", "live", "rollback", engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 1}}, Rollback: &engine.RollbackPolicy{Window: 10}}},
		{"a rollback margin of 1", "wf", "live", "rollback.margin", engine.AliasSpec{Versions: two(50, 50), Rollback: &engine.RollbackPolicy{Margin: 1}}},
		{"min_runs over the window", "wf", "live", "rollback.min_runs", engine.AliasSpec{Versions: two(50, 50), Rollback: &engine.RollbackPolicy{Window: 5, MinRuns: 6}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			_, err := e.SetAlias(ctx, operator, tenant, c.def, c.alias, c.spec)
			var fe *engine.FieldError
			is.True(errors.As(err, &fe)) // a field error
			is.Equal(fe.Field, c.field)  // naming the field
		})
	}
	is := is.New(t)
	_, err := e.SetAlias(ctx, operator, tenant, "nope", "live", engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 1}}})
	is.True(errors.Is(err, engine.ErrNotFound)) // an unknown definition
	list, err := e.ListAliases(ctx, tenant, "wf")
	is.NoErr(err)
	is.Equal(len(list), 0) // nothing written
	log, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: tenant})
	is.NoErr(err)
	is.Equal(len(log), 0) // nothing recorded
}

func FuzzParseWorkflowRef(f *testing.F) {
	for _, s := range []string{"wf", "wf@3", "wf@latest", "wf@live", "wf@", "@x", "wf@0", "wf@a@b", "w f@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := engine.ParseWorkflowRef("workflow", s)
		if err != nil {
			var fe *engine.FieldError
			if !errors.As(err, &fe) || fe.Field != "workflow" {
				t.Fatalf("%q: %v, want a field error naming workflow", s, err)
			}
			return
		}
		if r.Version < 0 || (r.Version > 0 && r.Alias != "") {
			t.Fatalf("%q: version %d and alias %q", s, r.Version, r.Alias)
		}
		if r.Alias != "" && engine.ValidAliasName(r.Alias) != "" {
			t.Fatalf("%q: alias %q is not a valid alias name", s, r.Alias)
		}
		want := r.Name
		switch {
		case r.Alias != "":
			want += "@" + r.Alias
		case r.Version > 0:
			want += fmt.Sprintf("@%d", r.Version)
		}
		if want != s && want+"@latest" != s && (r.Version == 0 || !strings.HasPrefix(s, r.Name+"@0")) {
			t.Fatalf("%q parsed as %+v", s, r)
		}
	})
}
