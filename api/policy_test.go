package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
)

// testClock is a clock a test sets; safe for concurrent use.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// policyServer serves the API in AUTH=required with the policy at path.
func policyServer(t *testing.T, path string, clock *testClock, logs *logBuffer) (*testServer, *policy.Engine) {
	t.Helper()
	opts := policy.Options{NowFunc: clock.Now}
	if logs != nil {
		opts.Logger = logs.logger()
	}
	pol, err := policy.Load(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("load policy: %v", err)
	}
	return newServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired, Policy: pol}), pol
}

// copyExamplePolicy copies examples/policy/authz.rego into a directory of
// the test and returns its path.
func copyExamplePolicy(t *testing.T) string {
	t.Helper()
	text, err := os.ReadFile("../examples/policy/authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "authz.rego")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// decisionOf returns the policy decision an event's data records.
func decisionOf(t *testing.T, e engine.Event) *engine.PolicyDecision {
	t.Helper()
	var d engine.EventData
	if len(e.Data) > 0 {
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
	}
	return d.Policy
}

func TestPolicy_ExamplePolicy(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC)} // noon: outside the maintenance window
	path := copyExamplePolicy(t)
	ts, pol := policyServer(t, path, clock, nil)
	ctx := context.Background()
	_, ci := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "ci"})
	_, ops := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "ops"})
	_, root := ts.newKey(t, engine.KeyRequest{Role: engine.RoleAdmin, Name: "root"})
	for _, name := range []string{"ci-build", "deploy"} {
		r := ts.request(t, "POST", "/v1/workflows", `{"name":"`+name+`","tasks":[{"id":"a","type":"ext"}]}`, bearer(ops))
		if r.Status != http.StatusCreated {
			t.Fatalf("register %s: %d %s", name, r.Status, r.Body)
		}
	}

	t.Run("a registered version records its registrar and the decision", func(t *testing.T) {
		is := is.New(t)
		var v wire.DefinitionVersion
		decodeJSON(t, ts.request(t, "GET", "/v1/workflows?name=deploy", "", bearer(ops)), http.StatusOK, &v)
		is.True(strings.HasSuffix(v.CreatedBy, ":ops")) // the key that registered it
		is.True(v.Policy != nil && v.Policy.Allow)      // the decision that allowed it
		is.Equal(v.Policy.PolicyHash, pol.Info().Hash)  // of this policy
		sd, err := ts.Engine.GetDefinition(ctx, "default", "deploy", 0)
		is.NoErr(err)
		is.Equal(sd.Policy.ID, v.Policy.ID) // as stored
	})

	var run engine.Run
	t.Run("a ci key starts a ci- workflow, and run.created records the decision", func(t *testing.T) {
		is := is.New(t)
		decodeJSON(t, ts.request(t, "POST", "/v1/run", `{"workflow":"ci-build"}`, bearer(ci)), http.StatusCreated, &run)
		events, err := ts.DB.RunEvents(ctx, "default", run.ID, 0, 0)
		is.NoErr(err)
		d := decisionOf(t, events[0])
		is.True(d != nil)                                     // recorded
		is.True(d.Allow)                                      // allowed
		is.Equal(d.PolicyHash, pol.Info().Hash)               // by this policy
		is.True(d.ID != "")                                   // with its id
		is.True(decisionOf(t, events[1]) == nil)              // in the first event only
		is.NoErr(ts.Engine.VerifyRun(ctx, "default", run.ID)) // the chain holds and replay gives the projection
	})

	t.Run("a ci key may not start another workflow, and nothing is written", func(t *testing.T) {
		is := is.New(t)
		before := ts.writes(t)
		p := problemOf(t, ts.request(t, "POST", "/v1/run", `{"workflow":"deploy"}`, bearer(ci)), http.StatusForbidden, wire.CodeForbidden)
		is.True(strings.Contains(p.Detail, "key ci may start only workflows named ci-*, not deploy")) // the policy's reason
		is.Equal(p.Permission, string(api.PermRunsStart))                                             // and the action
		p = problemOf(t, ts.request(t, "POST", "/v1/run", `{"definition":{"name":"deploy","tasks":[{"id":"b","type":"ext"}]}}`, bearer(ci)),
			http.StatusForbidden, wire.CodeForbidden)
		is.True(strings.Contains(p.Detail, "not deploy"))                                                           // an inline definition by its name
		is.Equal(ts.writes(t), before)                                                                              // neither registered nor started
		is.Equal(ts.request(t, "POST", "/v1/run", `{"workflow":"deploy"}`, bearer(ops)).Status, http.StatusCreated) // another key may
	})

	t.Run("cancels only in the maintenance window", func(t *testing.T) {
		is := is.New(t)
		before := ts.writes(t)
		p := problemOf(t, ts.request(t, "POST", "/v1/runs/"+run.ID+"/cancel", "", bearer(ops)), http.StatusForbidden, wire.CodeForbidden)
		is.True(strings.Contains(p.Detail, "maintenance window")) // at noon
		is.Equal(ts.writes(t), before)                            // nothing written
		clock.Set(time.Date(2025, 6, 2, 23, 0, 0, 0, time.UTC))
		is.Equal(ts.request(t, "POST", "/v1/runs/"+run.ID+"/cancel", "", bearer(ops)).Status, http.StatusOK) // at 23:00
		events, err := ts.DB.RunEvents(ctx, "default", run.ID, 0, 0)
		is.NoErr(err)
		var cancel *engine.PolicyDecision
		for _, e := range events {
			if d := decisionOf(t, e); d != nil && e.Seq > 1 {
				is.True(cancel == nil) // one decision per call
				cancel = d
			}
		}
		is.True(cancel != nil && cancel.Allow)                // the cancel's decision is recorded
		is.NoErr(ts.Engine.VerifyRun(ctx, "default", run.ID)) // and the run still verifies
	})

	t.Run("a reload puts a new policy in force and records it", func(t *testing.T) {
		is := is.New(t)
		text, _ := os.ReadFile(path)
		text = append(text, []byte("\ndeny contains \"no builds today\" if input.resource.workflow == \"ci-build\"\n")...)
		is.NoErr(os.WriteFile(path, text, 0o644))
		old := pol.Info().Hash
		var info wire.PolicyInfo
		decodeJSON(t, ts.request(t, "POST", "/api/v1/policy/reload", "", bearer(root)), http.StatusOK, &info)
		is.True(info.Hash != old)            // another policy
		is.Equal(pol.Info().Hash, info.Hash) // in force
		p := problemOf(t, ts.request(t, "POST", "/v1/run", `{"workflow":"ci-build"}`, bearer(ci)), http.StatusForbidden, wire.CodeForbidden)
		is.True(strings.Contains(p.Detail, "no builds today")) // and deciding
		var log wire.AdminLogPage
		decodeJSON(t, ts.request(t, "GET", "/api/v1/admin/log", "", bearer(root)), http.StatusOK, &log)
		last := log.Entries[len(log.Entries)-1]
		is.Equal(last.Action, string(engine.AdminPolicyLoaded))                                                                 // the admin log records it
		is.True(strings.Contains(string(last.Data), info.Hash))                                                                 // with its hash
		is.True(strings.HasPrefix(last.Actor, "key:"))                                                                          // and who reloaded it
		problemOf(t, ts.request(t, "POST", "/api/v1/policy/reload", "", bearer(ops)), http.StatusForbidden, wire.CodeForbidden) // the admin's only
	})

	t.Run("a policy that does not compile is refused with its file and line, the old one stays", func(t *testing.T) {
		is := is.New(t)
		old := pol.Info().Hash
		is.NoErr(os.WriteFile(path, []byte("package orchestrator\n\nallow if {\n  input.action ==\n}\n"), 0o644))
		before := ts.writes(t)
		p := problemOf(t, ts.request(t, "POST", "/api/v1/policy/reload", "", bearer(root)), http.StatusUnprocessableEntity, wire.CodeInvalidPolicy)
		is.True(strings.Contains(p.Detail, "authz.rego:")) // the file and line
		is.Equal(pol.Info().Hash, old)                     // the old policy stays
		is.Equal(ts.writes(t), before)                     // nothing recorded
		p = problemOf(t, ts.request(t, "POST", "/v1/run", `{"workflow":"ci-build"}`, bearer(ci)), http.StatusForbidden, wire.CodeForbidden)
		is.True(strings.Contains(p.Detail, "no builds today")) // and still decides
	})
}

// TestPolicy_RuntimeError: a policy that fails while deciding denies, and
// the decision id in the answer is the one the log names.
func TestPolicy_RuntimeError(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	path := filepath.Join(t.TempDir(), "broken.rego")
	is.NoErr(os.WriteFile(path, []byte("package orchestrator\n\nallow if to_number(input.principal.name) > 0\n"), 0o644))
	var logs logBuffer
	ts, _ := policyServer(t, path, &testClock{now: time.Now()}, &logs)
	_, op := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "ops"})
	before := ts.writes(t)
	p := problemOf(t, ts.request(t, "POST", "/v1/workflows", quickStartDef, bearer(op)), http.StatusForbidden, wire.CodeForbidden)
	is.True(strings.Contains(p.Detail, "failed to evaluate")) // denied for the error
	is.Equal(ts.writes(t), before)                            // nothing written
	_, after, ok := strings.Cut(p.Detail, "(decision ")
	is.True(ok) // naming the decision
	id, _, _ := strings.Cut(after, ")")
	logs.waitLine(t, "policy evaluation failed", map[string]any{"decision_id": id}) // which the log names too
}
