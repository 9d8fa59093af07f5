package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

const defs = "/api/v1/tenants/default/definitions/hello"

// twoVersions registers two versions of hello.
func twoVersions(t *testing.T, ts *testServer) {
	t.Helper()
	ts.register(t, `{"name":"hello","tasks":[{"id":"a","type":"noop"}]}`)
	ts.register(t, `{"name":"hello","timeout":"1m","tasks":[{"id":"a","type":"noop","priority":2},{"id":"b","type":"noop"}]}`)
}

func TestAliases_SetMoveStartListDiffAndDelete(t *testing.T) {
	is := is.New(t)
	ts := newServer(t, serverOptions{Access: true})
	twoVersions(t, ts)

	r := ts.do(t, http.MethodPut, defs+"/aliases/live", typeJSON, `{"version":1}`)
	var a wire.Alias
	decodeJSON(t, r, http.StatusCreated, &a)
	is.Equal(r.Header.Get("Location"), defs+"/aliases/live")            // created
	is.Equal(a.Versions, []wire.AliasTarget{{Version: 1, Weight: 100}}) // all on v1
	is.Equal(a.Revision, int64(1))
	is.Equal(a.UpdatedBy, "local") // who set it

	var run wire.Run
	decodeJSON(t, ts.postJSON(t, "/api/v1/tenants/default/workflows", `{"workflow":"hello@live"}`), http.StatusCreated, &run)
	is.Equal(run.Version, 1)        // the alias's version
	is.Equal(run.Alias, "live")     // recorded
	is.Equal(run.Workflow, "hello") // under its name
	decodeJSON(t, ts.postJSON(t, "/v1/run", `{"workflow":"hello@live"}`), http.StatusCreated, &run)
	is.Equal(run.Alias, "live") // the short API too
	run = wire.Run{}
	decodeJSON(t, ts.postJSON(t, "/v1/run", `{"workflow":"hello@2"}`), http.StatusCreated, &run)
	is.Equal(run.Version, 2) // name@N
	is.Equal(run.Alias, "")

	decodeJSON(t, ts.do(t, http.MethodPut, defs+"/aliases/live", typeJSON,
		`{"versions":[{"version":1,"weight":90},{"version":2,"weight":10}],"sticky_key":"${workflow.input.customer}",
		  "rollback":{"window":20,"margin":0.2,"min_runs":10},"revision":1}`), http.StatusOK, &a)
	is.Equal(a.Revision, int64(2)) // moved
	is.Equal(a.Rollback, &wire.RollbackPolicy{Window: 20, Margin: 0.2, MinRuns: 10})
	is.Equal(a.StickyKey, "${workflow.input.customer}")
	first := 0
	for range 5 {
		decodeJSON(t, ts.postJSON(t, "/api/v1/tenants/default/workflows", `{"workflow":"hello@live","input":{"customer":"acme"}}`), http.StatusCreated, &run)
		if first == 0 {
			first = run.Version
		}
		is.Equal(run.Version, first) // the same customer, the same version
	}
	problemOf(t, ts.do(t, http.MethodPut, defs+"/aliases/live", typeJSON, `{"version":2,"revision":1}`), http.StatusConflict, wire.CodeConflict) // a stale revision

	var page wire.AliasesPage
	ts.getJSON(t, defs+"/aliases", &page)
	is.Equal(len(page.Aliases), 1) // one alias
	is.Equal(page.Aliases[0].Alias, "live")
	ts.getJSON(t, defs+"/aliases/live", &a)
	is.Equal(len(a.Versions), 2) // read back

	var vs wire.VersionsPage
	ts.getJSON(t, defs+"/versions?limit=1", &vs)
	is.Equal(len(vs.Versions), 1) // a page of one
	is.Equal(vs.NextAfter, 1)     // and where the next starts
	vs = wire.VersionsPage{}
	ts.getJSON(t, defs+"/versions?after=1", &vs)
	is.Equal(vs.Versions[0].Version, 2)
	is.Equal(len(vs.Versions[0].Hash), 64) // with its hash
	is.Equal(vs.NextAfter, 0)              // the last page

	var d wire.DefinitionDiff
	ts.getJSON(t, defs+"/diff?from=1&to=2", &d)
	is.Equal(d.TasksAdded, []string{"b"}) // b is new
	is.Equal(d.TasksChanged[0].ID, "a")   // a changed
	is.Equal(d.TasksChanged[0].Fields[0].Field, "priority")
	is.Equal(string(d.TasksChanged[0].Fields[0].To), "2")
	is.Equal(d.Workflow[0].Field, "timeout")

	problemOf(t, ts.do(t, http.MethodDelete, defs+"/aliases/live?revision=1", "", ""), http.StatusConflict, wire.CodeConflict) // a stale revision
	r = ts.do(t, http.MethodDelete, defs+"/aliases/live", "", "")
	is.Equal(r.Status, http.StatusNoContent) // deleted
	problemOf(t, ts.get(t, defs+"/aliases/live"), http.StatusNotFound, wire.CodeNotFound)

	var log wire.AdminLogPage
	ts.getJSON(t, "/api/v1/tenants/default/admin/log", &log)
	var actions []string
	for _, ev := range log.Entries {
		actions = append(actions, string(ev.Action))
	}
	is.Equal(actions, []string{"alias.set", "alias.set", "alias.deleted"}) // every move audited
	var moved struct{ From, To []wire.AliasTarget }
	is.NoErr(json.Unmarshal(log.Entries[1].Data, &moved))
	is.Equal(moved.From, []wire.AliasTarget{{Version: 1, Weight: 100}}) // old
	is.Equal(len(moved.To), 2)                                          // and new
}

func TestAliases_BadInputIsRefusedAndWritesNothing(t *testing.T) {
	ts := newServer(t, serverOptions{})
	twoVersions(t, ts)
	decodeJSON(t, ts.do(t, http.MethodPut, defs+"/aliases/sticky", typeJSON,
		`{"versions":[{"version":1,"weight":50},{"version":2,"weight":50}],"sticky_key":"${workflow.input.customer}"}`), http.StatusCreated, &wire.Alias{})
	cases := []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"weights not summing to 100", "PUT", defs + "/aliases/live", `{"versions":[{"version":1,"weight":50},{"version":2,"weight":40}]}`, 400, wire.CodeInvalidRequest, "versions"},
		{"a missing version", "PUT", defs + "/aliases/live", `{"versions":[{"version":1,"weight":50},{"version":7,"weight":50}]}`, 400, wire.CodeInvalidRequest, "versions[1].version"},
		{"version and versions", "PUT", defs + "/aliases/live", `{"version":1,"versions":[{"version":1,"weight":100}]}`, 400, wire.CodeInvalidRequest, "versions"},
		{"no version", "PUT", defs + "/aliases/live", `{}`, 400, wire.CodeInvalidRequest, "versions"},
		{"an unknown field", "PUT", defs + "/aliases/live", `{"version":1,"rollback":{"windows":3}}`, 400, wire.CodeInvalidRequest, "rollback.windows"},
		{"a numeric alias", "PUT", defs + "/aliases/42", `{"version":1}`, 400, wire.CodeInvalidRequest, "alias"},
		{"a bad sticky key", "PUT", defs + "/aliases/live", `{"version":1,"sticky_key":"${a.output}"}`, 400, wire.CodeInvalidRequest, "sticky_key"},
		{"an unknown definition", "PUT", "/api/v1/tenants/default/definitions/nope/aliases/live", `{"version":1}`, 404, wire.CodeNotFound, ""},
		{"a sticky key the input lacks", "POST", "/api/v1/tenants/default/workflows", `{"workflow":"hello@sticky","input":{"user":1}}`, 400, wire.CodeInvalidRequest, "input.customer"},
		{"an unknown alias", "POST", "/api/v1/tenants/default/workflows", `{"workflow":"hello@nope"}`, 404, wire.CodeNotFound, "workflow"},
		{"an alias and a version", "POST", "/v1/run", `{"workflow":"hello@sticky","version":1,"input":{"customer":"x"}}`, 400, wire.CodeInvalidRequest, "version"},
		{"a malformed reference", "POST", "/v1/run", `{"workflow":"hello@a b"}`, 400, wire.CodeInvalidRequest, "workflow"},
		{"a diff without to", "GET", defs + "/diff?from=1", "", 400, wire.CodeInvalidRequest, "to"},
		{"a diff to a missing version", "GET", defs + "/diff?from=1&to=9", "", 400, wire.CodeInvalidRequest, "to"},
		{"versions of an unknown definition", "GET", "/api/v1/tenants/default/definitions/nope/versions", "", 404, wire.CodeNotFound, ""},
		{"a bad versions limit", "GET", defs + "/versions?limit=0", "", 400, wire.CodeInvalidRequest, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			before := ts.writes(t)
			ct := ""
			if c.body != "" {
				ct = typeJSON
			}
			p := problemOf(t, ts.do(t, c.method, c.path, ct, c.body), c.status, c.code)
			if c.field != "" {
				is.Equal(fieldOf(t, p), c.field) // naming the field
			}
			is.Equal(ts.writes(t), before) // nothing written, nothing started
		})
	}
}

func TestAliases_AutomaticRollbackShowsItsFigures(t *testing.T) {
	is := is.New(t)
	boom := engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
		return nil, &engine.TaskError{Code: "boom", Message: "broken"}
	})
	ts := newServer(t, serverOptions{Handlers: map[string]engine.Handler{"boom": boom}})
	ts.register(t, `{"name":"hello","tasks":[{"id":"a","type":"noop"}]}`)
	ts.register(t, `{"name":"hello","tasks":[{"id":"a","type":"boom"}]}`)
	decodeJSON(t, ts.do(t, http.MethodPut, defs+"/aliases/canary", typeJSON,
		`{"versions":[{"version":1,"weight":50},{"version":2,"weight":50}],"sticky_key":"${workflow.input.k}",
		  "rollback":{"window":5,"margin":0.5,"min_runs":3}}`), http.StatusCreated, &wire.Alias{})
	pick := &engine.Alias{TenantID: "default", Name: "hello", Alias: "canary",
		Versions: []engine.AliasTarget{{Version: 1, Weight: 50}, {Version: 2, Weight: 50}}}
	sent := map[int]int{}
	for i := 0; sent[1] < 3 || sent[2] < 3; i++ {
		k := fmt.Sprintf("k%d", i)
		v := pick.Pick([]byte(strconv.Quote(k)))
		if sent[v] == 3 {
			continue
		}
		sent[v]++
		run := ts.startRun(t, fmt.Sprintf(`{"workflow":"hello@canary","input":{"k":%q}}`, k))
		is.Equal(run.Version, v) // the version the key picks
		ts.waitRun(t, run.ID, "the end", func(r *runJSON) bool { return r.State.Terminal() })
	}
	var a wire.Alias
	waitFor(t, "the alias to roll back", func() bool {
		a = wire.Alias{}
		ts.getJSON(t, defs+"/aliases/canary", &a)
		return len(a.Versions) == 1
	})
	is.Equal(a.Versions, []wire.AliasTarget{{Version: 1, Weight: 100}}) // rolled back to v1
	is.Equal(a.UpdatedBy, "engine")                                     // by the engine
	is.True(a.Rollback == nil)                                          // the policy is spent
	is.True(a.RolledBack != nil)                                        // the figures are shown
	is.Equal(a.RolledBack.Newer, wire.VersionOutcomes{Version: 2, Runs: 3, Failed: 3, FailureRate: 1})
	is.Equal(a.RolledBack.Older, wire.VersionOutcomes{Version: 1, Runs: 3, Failed: 0, FailureRate: 0})
	is.Equal(len(a.RolledBack.From), 2) // what it pointed at
}
