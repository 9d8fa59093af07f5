package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
)

// notAStream accepts the error of a stream method against the stub, which
// answers JSON: the request was sent, which is what the test records.
func notAStream(err error) error {
	if errors.Is(err, client.ErrNotAStream) {
		return nil
	}
	return err
}

// TestOrchestratorClient_Routes holds the client to the server's OpenAPI
// document: every documented operation is called by some client method,
// and every method calls a documented operation (but the web UI's files
// under /ui/). A route added to the server without a client method fails
// here.
func TestOrchestratorClient_Routes(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	doc, err := env.client(t).OpenAPI(ctxFor(t))
	is.NoErr(err) // GET /openapi.json
	var spec struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	is.NoErr(json.Unmarshal(doc, &spec))            // an OpenAPI document
	is.True(strings.HasPrefix(spec.OpenAPI, "3.1")) // version 3.1
	type op struct {
		method, template string
		re               *regexp.Regexp
	}
	var ops []op
	for path, item := range spec.Paths {
		if strings.HasPrefix(path, "/ui/") {
			continue // the web UI's files are for a browser, not for the client
		}
		for method := range item {
			switch method {
			case "get", "post", "put", "patch", "delete":
			default:
				continue // parameters, summary
			}
			re := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(path), "[^/]+") + "$")
			ops = append(ops, op{strings.ToUpper(method), path, re})
		}
	}
	is.True(len(ops) > 0) // operations documented

	// Every method against a stub that records what it was asked.
	var mu sync.Mutex
	var calls []string
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.EscapedPath())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(stub.Close)
	ctx := ctxFor(t)
	for _, tenant := range []string{"default", "acme"} {
		c, err := client.New(stub.URL, client.WithTenant(tenant))
		is.NoErr(err) // client
		for name, call := range map[string]func() error{
			"ExecuteWorkflow":    func() error { _, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "w"}); return err },
			"ListWorkflows":      func() error { _, err := c.ListWorkflows(ctx, client.RunFilter{}); return err },
			"RunCounts":          func() error { _, err := c.RunCounts(ctx, client.RunFilter{}); return err },
			"AllWorkflows":       func() error { return c.AllWorkflows(ctx, client.RunFilter{}, func(wire.Run) error { return nil }) },
			"GetWorkflow":        func() error { _, err := c.GetWorkflow(ctx, "r1"); return err },
			"PauseWorkflow":      func() error { _, err := c.PauseWorkflow(ctx, "r1"); return err },
			"ResumeWorkflow":     func() error { _, err := c.ResumeWorkflow(ctx, "r1"); return err },
			"CancelWorkflow":     func() error { _, err := c.CancelWorkflow(ctx, "r1"); return err },
			"RetryWorkflow":      func() error { _, err := c.RetryWorkflow(ctx, "r1", "t1"); return err },
			"GetWorkflowMetrics": func() error { _, err := c.GetWorkflowMetrics(ctx, "r1"); return err },
			"WorkflowEvents":     func() error { _, err := c.WorkflowEvents(ctx, "r1", client.EventsQuery{}); return err },
			"TenantEvents":       func() error { _, err := c.TenantEvents(ctx, client.EventFilter{}); return err },
			"AllTenantEvents": func() error {
				return c.AllTenantEvents(ctx, client.EventFilter{}, func(wire.Event) error { return nil })
			},
			"StreamTenantEvents": func() error {
				return c.StreamTenantEvents(ctx, client.EventFilter{}, func(wire.Event) error { return nil })
			},
			"FollowWorkflow": func() error {
				return notAStream(c.FollowWorkflow(ctx, "r1", 0, func(client.StreamEvent) error { return nil }))
			},
			"FollowRun": func() error {
				return notAStream(c.FollowRun(ctx, "r1", 0, func(client.StreamEvent) error { return nil }))
			},
			"FollowTenantRuns": func() error {
				return notAStream(c.FollowTenantRuns(ctx, "", func(client.StreamEvent) error { return nil }))
			},
			"ExplainWorkflow":       func() error { _, err := c.ExplainWorkflow(ctx, "r1"); return err },
			"RegisterDefinition":    func() error { _, err := c.RegisterDefinition(ctx, def("w", "noop")); return err },
			"ListDefinitions":       func() error { _, err := c.ListDefinitions(ctx); return err },
			"GetDefinitionVersion":  func() error { _, err := c.GetDefinitionVersion(ctx, "w", 1); return err },
			"ValidateDAG":           func() error { _, err := c.ValidateDAG(ctx, def("w", "noop")); return err },
			"RegisterWorkflow":      func() error { _, err := c.RegisterWorkflow(ctx, def("w", "noop")); return err },
			"GetWorkflowDefinition": func() error { _, err := c.GetWorkflowDefinition(ctx, "w", 0); return err },
			"Run":                   func() error { _, err := c.Run(ctx, client.ExecuteRequest{Workflow: "w"}); return err },
			"GetRun":                func() error { _, err := c.GetRun(ctx, "r1"); return err },
			"RunEvents":             func() error { _, err := c.RunEvents(ctx, "r1", client.EventsQuery{}); return err },
			"PauseRun":              func() error { _, err := c.PauseRun(ctx, "r1"); return err },
			"ResumeRun":             func() error { _, err := c.ResumeRun(ctx, "r1"); return err },
			"CancelRun":             func() error { _, err := c.CancelRun(ctx, "r1"); return err },
			"RetryRun":              func() error { _, err := c.RetryRun(ctx, "r1", ""); return err },
			"Poll": func() error {
				_, err := c.Poll(ctx, client.PollRequest{Types: []string{"ext"}, WorkerID: "w"})
				return err
			},
			"Heartbeat": func() error { _, err := c.Heartbeat(ctx, "r1~t1~1", "tok", 0); return err },
			"Complete":  func() error { _, err := c.Complete(ctx, "r1~t1~1", "tok", nil); return err },
			"Fail": func() error {
				_, err := c.Fail(ctx, "r1~t1~1", "tok", wire.TaskError{Code: "x"}, true)
				return err
			},
			"Health":       func() error { _, err := c.Health(ctx); return err },
			"Metrics":      func() error { _, err := c.Metrics(ctx); return err },
			"OpenAPI":      func() error { _, err := c.OpenAPI(ctx); return err },
			"ListTenants":  func() error { _, err := c.ListTenants(ctx); return err },
			"CreateTenant": func() error { _, err := c.CreateTenant(ctx, wire.CreateTenantRequest{ID: "t1"}); return err },
			"GetTenant":    func() error { _, err := c.GetTenant(ctx, tenant); return err },
			"UpdateTenant": func() error {
				name := "n"
				_, err := c.UpdateTenant(ctx, tenant, wire.UpdateTenantRequest{Name: &name})
				return err
			},
			"SuspendTenant": func() error { _, err := c.SuspendTenant(ctx, tenant); return err },
			"ResumeTenant":  func() error { _, err := c.ResumeTenant(ctx, tenant); return err },
			"CreateKey": func() error {
				_, err := c.CreateKey(ctx, tenant, wire.CreateKeyRequest{Name: "k", Role: wire.RoleViewer})
				return err
			},
			"ListKeys":          func() error { _, err := c.ListKeys(ctx, tenant); return err },
			"RevokeKey":         func() error { _, err := c.RevokeKey(ctx, tenant, "0123456789abcdef"); return err },
			"AdminLog":          func() error { _, err := c.AdminLog(ctx, client.AdminLogQuery{Verify: true}); return err },
			"TenantAdminLog":    func() error { _, err := c.TenantAdminLog(ctx, tenant, client.AdminLogQuery{}); return err },
			"ReloadPolicy":      func() error { _, err := c.ReloadPolicy(ctx); return err },
			"Backup":            func() error { _, err := c.Backup(ctx); return err },
			"Checkpoints":       func() error { _, err := c.Checkpoints(ctx); return err },
			"CreateCheckpoints": func() error { _, err := c.CreateCheckpoints(ctx); return err },
			"ExportCheckpoints": func() error { _, err := c.ExportCheckpoints(ctx, io.Discard); return err },
			"CreateSchedule": func() error {
				_, err := c.CreateSchedule(ctx, wire.CreateScheduleRequest{ID: "s1"})
				return err
			},
			"ListSchedules": func() error { _, err := c.ListSchedules(ctx, 0, ""); return err },
			"GetSchedule":   func() error { _, err := c.GetSchedule(ctx, "s1", 3); return err },
			"UpdateSchedule": func() error {
				_, err := c.UpdateSchedule(ctx, "s1", wire.UpdateScheduleRequest{Version: 1})
				return err
			},
			"DeleteSchedule":  func() error { return c.DeleteSchedule(ctx, "s1") },
			"PauseSchedule":   func() error { _, err := c.PauseSchedule(ctx, "s1"); return err },
			"UnpauseSchedule": func() error { _, err := c.UnpauseSchedule(ctx, "s1"); return err },
			"TriggerSchedule": func() error { _, err := c.TriggerSchedule(ctx, "s1", "k"); return err },
			"BackfillSchedule": func() error {
				_, err := c.BackfillSchedule(ctx, "s1", time.Now().Add(-time.Hour), time.Now())
				return err
			},
			"ScheduleEvents": func() error { _, err := c.ScheduleEvents(ctx, "s1", "", 0, ""); return err },
			"ListVersions":   func() error { _, err := c.ListVersions(ctx, "w", 1, 10); return err },
			"DiffVersions":   func() error { _, err := c.DiffVersions(ctx, "w", 1, 2); return err },
			"SetAlias": func() error {
				_, err := c.SetAlias(ctx, "w", "live", client.SetAliasRequest{Version: 1})
				return err
			},
			"GetAlias":    func() error { _, err := c.GetAlias(ctx, "w", "live"); return err },
			"ListAliases": func() error { _, err := c.ListAliases(ctx, "w"); return err },
			"DeleteAlias": func() error { return c.DeleteAlias(ctx, "w", "live", 1) },
			"CreateWebhook": func() error {
				_, err := c.CreateWebhook(ctx, wire.CreateTriggerRequest{Name: "h", Workflow: "w"})
				return err
			},
			"ListWebhooks": func() error { _, err := c.ListWebhooks(ctx); return err },
			"GetWebhook":   func() error { _, err := c.GetWebhook(ctx, "h"); return err },
			"UpdateWebhook": func() error {
				_, err := c.UpdateWebhook(ctx, "h", wire.UpdateTriggerRequest{State: "disabled"})
				return err
			},
			"DeleteWebhook": func() error { return c.DeleteWebhook(ctx, "h") },
			"Deliver":       func() error { _, err := c.Deliver(ctx, "h", []byte(`{}`), nil); return err },
			"CreateTrigger": func() error {
				_, err := c.CreateTrigger(ctx, wire.CreateTriggerRequest{Name: "s", Kind: "nats", Workflow: "w"})
				return err
			},
			"ListTriggers": func() error { _, err := c.ListTriggers(ctx); return err },
			"GetTrigger":   func() error { _, err := c.GetTrigger(ctx, "s"); return err },
			"UpdateTrigger": func() error {
				_, err := c.UpdateTrigger(ctx, "s", wire.UpdateTriggerRequest{State: "enabled"})
				return err
			},
			"DeleteTrigger": func() error { return c.DeleteTrigger(ctx, "s") },
		} {
			if err := call(); err != nil {
				t.Errorf("%s (tenant %s): %v", name, tenant, err)
			}
		}
	}

	covered := map[string]bool{}
	for _, call := range calls {
		method, path, _ := strings.Cut(call, " ")
		found := false
		for _, o := range ops {
			if o.method == method && o.re.MatchString(path) {
				covered[o.method+" "+o.template] = true
				found = true
			}
		}
		if !found {
			t.Errorf("the client calls %s, which the OpenAPI document does not describe", call)
		}
	}
	var missing []string
	for _, o := range ops {
		if !covered[o.method+" "+o.template] {
			missing = append(missing, o.method+" "+o.template)
		}
	}
	sort.Strings(missing)
	is.Equal(missing, []string(nil)) // every documented operation has a client method
}
