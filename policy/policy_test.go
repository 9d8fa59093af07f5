package policy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
)

const examplePolicy = "../examples/policy/authz.rego"

// write writes files (name -> contents) under dir.
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// load loads the policy at path or fails the test.
func load(t *testing.T, path string, opts policy.Options) *policy.Engine {
	t.Helper()
	e, err := policy.Load(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return e
}

func key(name string) *engine.Principal {
	return &engine.Principal{KeyID: "0123456789abcdef", Name: name, TenantID: "acme", Role: engine.RoleOperator}
}

func at(hour, minute int) time.Time { return time.Date(2025, 6, 1, hour, minute, 0, 0, time.UTC) }

func TestExamplePolicy(t *testing.T) {
	t.Parallel()
	e := load(t, examplePolicy, policy.Options{})
	cases := []struct {
		name   string
		in     policy.Input
		allow  bool
		reason string
	}{
		{"a ci key starts a ci- workflow",
			policy.Input{Principal: key("ci"), Action: engine.ActionRunsStart, Operation: "start", Tenant: "acme",
				Resource: policy.Resource{Workflow: "ci-build"}, Now: at(12, 0)}, true, ""},
		{"a ci-nightly key starts a ci- workflow",
			policy.Input{Principal: key("ci-nightly"), Action: engine.ActionRunsStart, Tenant: "acme",
				Resource: policy.Resource{Workflow: "ci-test"}, Now: at(12, 0)}, true, ""},
		{"a ci key may not start another workflow",
			policy.Input{Principal: key("ci"), Action: engine.ActionRunsStart, Operation: "start", Tenant: "acme",
				Resource: policy.Resource{Workflow: "deploy"}, Now: at(12, 0)}, false, "key ci may start only workflows named ci-*, not deploy"},
		{"another key starts any workflow",
			policy.Input{Principal: key("ops"), Action: engine.ActionRunsStart, Tenant: "acme",
				Resource: policy.Resource{Workflow: "deploy"}, Now: at(12, 0)}, true, ""},
		{"a cancel at 23:00 is in the window",
			policy.Input{Principal: key("ops"), Action: engine.ActionRunsControl, Operation: "cancel", Tenant: "acme", Now: at(23, 0)}, true, ""},
		{"a cancel at 05:59 is in the window",
			policy.Input{Principal: key("ops"), Action: engine.ActionRunsControl, Operation: "cancel", Tenant: "acme", Now: at(5, 59)}, true, ""},
		{"a cancel at 22:00 is in the window",
			policy.Input{Principal: key("ops"), Action: engine.ActionRunsControl, Operation: "cancel", Tenant: "acme", Now: at(22, 0)}, true, ""},
		{"a cancel at 06:00 is outside it",
			policy.Input{Principal: key("ops"), Action: engine.ActionRunsControl, Operation: "cancel", Tenant: "acme", Now: at(6, 0)}, false, "maintenance window"},
		{"a cancel at noon is outside it",
			policy.Input{Principal: key("ops"), Action: engine.ActionRunsControl, Operation: "cancel", Tenant: "acme", Now: at(12, 0)}, false, "22:00-06:00 UTC"},
		{"a cancel at noon in another zone is judged in UTC",
			policy.Input{Principal: key("ops"), Action: engine.ActionRunsControl, Operation: "cancel", Tenant: "acme",
				Now: time.Date(2025, 6, 1, 23, 0, 0, 0, time.FixedZone("UTC+11", 11*3600))}, false, "maintenance window"},
		{"a pause at noon is not a cancel",
			policy.Input{Principal: key("ops"), Action: engine.ActionRunsControl, Operation: "pause", Tenant: "acme", Now: at(12, 0)}, true, ""},
		{"a ci key cancelling at noon outside ci- is told only of the cancel",
			policy.Input{Principal: key("ci"), Action: engine.ActionRunsControl, Operation: "cancel", Tenant: "acme",
				Resource: policy.Resource{Workflow: "deploy"}, Now: at(12, 0)}, false, "maintenance window"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			d := e.Decide(context.Background(), &c.in)
			is.NoErr(d.Err)                               // evaluated
			is.Equal(d.Allow, c.allow)                    // decided
			is.Equal(d.PolicyHash, e.Info().Hash)         // by the policy in force
			is.True(d.ID != "")                           // with an id
			is.True(strings.Contains(d.Reason, c.reason)) // and the reason of a denial
			if c.allow {
				is.Equal(d.Reason, "") // no reason to allow
			}
		})
	}
}

func TestLoad_Refuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
		want  []string // in the error
	}{
		{"a parse error names file and line",
			map[string]string{"authz.rego": "package orchestrator\n\nallow if {\n  input.x ==\n}\n"},
			[]string{"authz.rego:", "rego_parse_error"}},
		{"a compile error names file and line",
			map[string]string{"authz.rego": "package orchestrator\n\nallow if {\n  no_such_function(input.x)\n}\n"},
			[]string{"authz.rego:4", "no_such_function"}},
		{"an unsafe variable names file and line",
			map[string]string{"authz.rego": "package orchestrator\n\nallow if {\n  x > 1\n}\n"},
			[]string{"authz.rego:4", "unsafe"}},
		{"http.send is refused",
			map[string]string{"authz.rego": "package orchestrator\n\nallow if {\n  http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"}).status_code == 200\n}\n"},
			[]string{"authz.rego:4", "http.send"}},
		{"opa.runtime is refused",
			map[string]string{"authz.rego": "package orchestrator\n\nallow if opa.runtime().env.HOME != \"\"\n"},
			[]string{"authz.rego:3", "opa.runtime"}},
		{"a policy without allow is refused",
			map[string]string{"authz.rego": "package orchestrator\n\npermit := true\n"},
			[]string{"no rule allow in package orchestrator"}},
		{"allow in another package does not count",
			map[string]string{"authz.rego": "package other\n\nallow := true\n"},
			[]string{"no rule allow in package orchestrator"}},
		{"v0 syntax is refused",
			map[string]string{"authz.rego": "package orchestrator\n\nallow { true }\n"},
			[]string{"authz.rego:3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			dir := t.TempDir()
			write(t, dir, c.files)
			_, err := policy.Load(context.Background(), filepath.Join(dir, "authz.rego"), policy.Options{})
			is.True(err != nil) // refused
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	t.Run("a missing file", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := policy.Load(context.Background(), filepath.Join(t.TempDir(), "nope.rego"), policy.Options{})
		is.True(err != nil)                                 // refused
		is.True(strings.Contains(err.Error(), "nope.rego")) // naming it
	})
	t.Run("a directory without policy files", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		dir := t.TempDir()
		write(t, dir, map[string]string{"README": "nothing", "x_test.rego": "package orchestrator\nallow := true\n"})
		_, err := policy.Load(context.Background(), dir, policy.Options{})
		is.True(err != nil)                                      // refused
		is.True(strings.Contains(err.Error(), "no .rego files")) // saying why
	})
}

func TestLoad_Directory(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"authz.rego":         "package orchestrator\n\nimport data.lib\n\nallow if lib.trusted(input.principal.name)\n",
		"lib/names.rego":     "package lib\n\ntrusted(name) if name in {\"ops\", \"ci\"}\n",
		"authz_test.rego":    "this is not rego: tests are left out",
		".git/broken.rego":   "neither is this: hidden directories are left out",
		"notes/.draft.rego":  "nor a hidden file",
		"data/settings.json": `{"not": "read"}`,
	})
	e := load(t, dir, policy.Options{})
	info := e.Info()
	is.Equal(info.Files, []string{"authz.rego", "lib/names.rego"}) // the policy files, in order
	is.Equal(len(info.Hash), 64)                                   // a SHA-256
	d := e.Decide(context.Background(), &policy.Input{Principal: key("ops"), Action: engine.ActionRunsRead})
	is.True(d.Allow) // the rule in one file calls the other
	d = e.Decide(context.Background(), &policy.Input{Principal: key("eve"), Action: engine.ActionRunsRead})
	is.True(!d.Allow)                                               // and denies others
	is.True(strings.Contains(d.Reason, "does not allow runs.read")) // saying so
}

func TestEngine_Reload(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "authz.rego")
	write(t, dir, map[string]string{"authz.rego": "package orchestrator\n\nallow := true\n"})
	loaded := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	e := load(t, path, policy.Options{NowFunc: func() time.Time { return loaded }})
	first := e.Info()
	is.Equal(first.LoadedAt, loaded) // when
	in := &policy.Input{Principal: key("ops"), Action: engine.ActionRunsStart, Now: at(12, 0)}
	is.True(e.Decide(ctx, in).Allow) // allows

	same, err := e.Reload(ctx)
	is.NoErr(err)                   // reload the same files
	is.Equal(same.Hash, first.Hash) // the same policy, the same hash

	write(t, dir, map[string]string{"authz.rego": "package orchestrator\n\nallow := true\n\ndeny if {\n"})
	_, err = e.Reload(ctx)
	is.True(err != nil)                                // a broken file is refused
	is.True(strings.Contains(err.Error(), path+":"))   // naming the file
	is.Equal(e.Info().Hash, first.Hash)                // the old policy stays in force
	is.True(e.Decide(ctx, in).Allow)                   // and decides
	is.Equal(e.Decide(ctx, in).PolicyHash, first.Hash) // as itself

	write(t, dir, map[string]string{"authz.rego": "package orchestrator\n\nallow := false\n\nreason := \"closed for the night\"\n"})
	next, err := e.Reload(ctx)
	is.NoErr(err)                    // a good file loads
	is.True(next.Hash != first.Hash) // a new hash
	d := e.Decide(ctx, in)
	is.True(!d.Allow)                          // the new policy decides
	is.Equal(d.Reason, "closed for the night") // with its reason
	is.Equal(d.PolicyHash, next.Hash)          // and its hash
}

func TestEngine_ReloadWhileDeciding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	write(t, dir, map[string]string{"authz.rego": "package orchestrator\n\nallow := true\n"})
	e := load(t, filepath.Join(dir, "authz.rego"), policy.Options{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if d := e.Decide(ctx, &policy.Input{Principal: key("ops"), Action: engine.ActionRunsRead}); !d.Allow {
					t.Errorf("denied while reloading: %+v", d)
					return
				}
			}
		})
	}
	for range 5 {
		if _, err := e.Reload(ctx); err != nil {
			t.Errorf("reload: %v", err)
		}
	}
	wg.Wait()
}

func TestEngine_DecideDenies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name, rego, reason string
		logged             bool
	}{
		{"allow undefined", "package orchestrator\n\nallow if input.action == \"runs.read\"\n", "is undefined", false},
		{"allow not a boolean", "package orchestrator\n\nallow := \"yes\"\n", "does not allow runs.start", false},
		{"a builtin error", "package orchestrator\n\nallow if to_number(input.principal.name) > 0\n", "failed to evaluate", true},
		{"a rule with two values", "package orchestrator\n\nallow := true if input.action\nallow := false if input.tenant\n", "failed to evaluate", true},
		{"a reason that is a set", "package orchestrator\n\nallow := false\n\nreason contains \"b\"\nreason contains \"a\"\n", "a; b", false},
		{"a reason that fails", "package orchestrator\n\nallow := false\n\nreason := sprintf(\"%d\", [to_number(input.principal.name)])\n", "does not allow runs.start", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			dir := t.TempDir()
			write(t, dir, map[string]string{"authz.rego": c.rego})
			var logs bytes.Buffer
			e := load(t, filepath.Join(dir, "authz.rego"), policy.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			d := e.Decide(ctx, &policy.Input{Principal: key("ops"), Action: engine.ActionRunsStart, Tenant: "acme"})
			is.True(!d.Allow)                             // denied
			is.True(strings.Contains(d.Reason, c.reason)) // saying why
			is.Equal(d.Err != nil, c.logged)              // an evaluation error is kept
			if c.logged {
				is.True(strings.Contains(logs.String(), "decision_id="+d.ID)) // and logged with the decision's id
				is.True(strings.Contains(d.Reason, d.ID))                     // which the reason names
			}
		})
	}
}

func TestEngine_DecideWithoutPolicy(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var e *policy.Engine
	d := e.Decide(context.Background(), &policy.Input{Principal: key("ops"), Action: engine.ActionRunsStart})
	is.True(d.Allow)           // no policy configured: the role check alone decides
	is.Equal(d.PolicyHash, "") // no policy hash
}

func TestEngine_DecisionIDs(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	e := load(t, examplePolicy, policy.Options{})
	seen := map[string]bool{}
	for range 100 {
		d := e.Decide(context.Background(), &policy.Input{Principal: key("ops"), Action: engine.ActionRunsRead})
		is.True(!seen[d.ID]) // every decision has its own id
		seen[d.ID] = true
	}
}

// A reason is evaluated only for a denial: one that would fail does not
// stand in the way of an allowed call.
func TestEngine_ReasonNotEvaluatedWhenAllowed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := t.TempDir()
	write(t, dir, map[string]string{"authz.rego": "package orchestrator\n\nallow if input.action == \"runs.read\"\n\nreason := sprintf(\"%d\", [to_number(input.principal.name)])\n"})
	e := load(t, filepath.Join(dir, "authz.rego"), policy.Options{})
	d := e.Decide(context.Background(), &policy.Input{Principal: key("ops"), Action: engine.ActionRunsRead, Tenant: "acme"})
	is.True(d.Allow)       // allowed
	is.NoErr(d.Err)        // without an error
	is.Equal(d.Reason, "") // and without a reason
}

// TestEngine_DecisionsShareNoInput checks that each decision sees its own
// input, whole, while the documents they are built in are reused: a policy
// echoes its input, and decisions with different inputs, some fields left
// empty, run after each other and at once.
func TestEngine_DecisionsShareNoInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	write(t, dir, map[string]string{"authz.rego": "package orchestrator\n\nallow := false\n\nreason := json.marshal(input)\n"})
	e := load(t, filepath.Join(dir, "authz.rego"), policy.Options{})
	input := func(g, i int) policy.Input {
		in := policy.Input{Principal: key(fmt.Sprintf("key-%d", g)), Action: engine.ActionRunsStart, Tenant: "acme",
			Now: at(g%24, i%60)}
		if i%2 == 0 { // every other decision leaves the resource and operation empty
			in.Operation = "start"
			in.Resource = policy.Resource{Workflow: fmt.Sprintf("wf-%d-%d", g, i), Version: i, RunID: fmt.Sprintf("run-%d", i),
				TaskType: "http", InputSize: int64(1000 + i)}
		}
		if i%3 == 0 {
			in.Principal = nil
		}
		return in
	}
	want := func(in policy.Input) string {
		p := in.Principal
		if p == nil {
			p = &engine.Principal{}
		}
		b, err := json.Marshal(map[string]any{
			"principal": map[string]any{"key_id": p.KeyID, "name": p.Name, "tenant": p.TenantID, "role": string(p.Role)},
			"action":    in.Action, "operation": in.Operation, "tenant": in.Tenant,
			"resource": map[string]any{"workflow": in.Resource.Workflow, "version": in.Resource.Version,
				"run_id": in.Resource.RunID, "task_type": in.Resource.TaskType, "input_size": in.Resource.InputSize},
			"now": in.Now.Format(time.RFC3339Nano),
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				in := input(g, i)
				d := e.Decide(ctx, &in)
				if w := want(in); d.Allow || d.Reason != w {
					t.Errorf("decision %d/%d: got %+v, want the reason %s", g, i, d, w)
					return
				}
			}
		})
	}
	wg.Wait()
}
