package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
)

// The tenant API: /api/v1/tenants/{tenantId}/... acting on the client's
// tenant. Another tenant's ids and names are not found (404).

// ExecuteWorkflow starts a run (POST .../workflows) and returns it once it
// is durable. Errors: 400 invalid_request or invalid_definition (inline
// definition), 404 an unknown workflow or version, 422 an IdempotencyKey
// used before for a different request.
func (c *OrchestratorClient) ExecuteWorkflow(ctx context.Context, req ExecuteRequest) (*Execution, error) {
	return c.execute(ctx, c.tenantPath("workflows"), req)
}

// execute posts an ExecuteRequest to path.
func (c *OrchestratorClient) execute(ctx context.Context, path string, req ExecuteRequest) (*Execution, error) {
	cl := call{method: http.MethodPost, path: path}
	if req.IdempotencyKey != "" {
		cl.header = http.Header{"Idempotency-Key": {req.IdempotencyKey}}
	}
	var ex Execution
	res, err := c.doJSON(ctx, cl, req.body(), &ex)
	if err != nil {
		return nil, err
	}
	ex.Replayed = res.Header.Get("Idempotent-Replayed") == "true"
	ex.Location = res.Header.Get("Location")
	return &ex, nil
}

// ListWorkflows returns one page of the tenant's runs, newest first.
// Errors: 400 naming a bad filter (status, limit, page_token, times).
func (c *OrchestratorClient) ListWorkflows(ctx context.Context, f RunFilter) (*RunsPage, error) {
	q := runQuery(f)
	var page RunsPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("workflows"), query: q}, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// AllWorkflows calls fn for every run f selects, newest first, walking the
// pages from f.PageToken on. It stops at the first error, returning it; fn
// may return ErrStop to end the walk with nil.
func (c *OrchestratorClient) AllWorkflows(ctx context.Context, f RunFilter, fn func(wire.Run) error) error {
	return walkPages(f.PageToken, func(token string) ([]wire.Run, string, error) {
		f.PageToken = token
		page, err := c.ListWorkflows(ctx, f)
		if err != nil {
			return nil, "", err
		}
		return page.Runs, page.NextPageToken, nil
	}, fn)
}

// walkPages calls fn for every item of the pages fetch returns, from token
// on, until a page has no next token. fn may return ErrStop to end with nil.
func walkPages[T any](token string, fetch func(token string) ([]T, string, error), fn func(T) error) error {
	for {
		items, next, err := fetch(token)
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

// GetWorkflow returns a run with its progress and tasks. Errors: 404.
func (c *OrchestratorClient) GetWorkflow(ctx context.Context, id string) (*RunDetails, error) {
	var d RunDetails
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("workflows", seg(id))}, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// PauseWorkflow stops new tasks of a running run from starting and returns
// the run once the pause is durable. Errors: 404; 409 invalid_transition
// with the run's State.
func (c *OrchestratorClient) PauseWorkflow(ctx context.Context, id string) (*wire.Run, error) {
	return c.control(ctx, c.tenantPath("workflows", seg(id), "pause"), "")
}

// ResumeWorkflow lets a paused run dispatch again. Errors: 404; 409 with
// the run's State.
func (c *OrchestratorClient) ResumeWorkflow(ctx context.Context, id string) (*wire.Run, error) {
	return c.control(ctx, c.tenantPath("workflows", seg(id), "resume"), "")
}

// CancelWorkflow ends a run: its unfinished tasks end cancelled. Errors:
// 404; 409 with the run's State.
func (c *OrchestratorClient) CancelWorkflow(ctx context.Context, id string) (*wire.Run, error) {
	return c.control(ctx, c.tenantPath("workflows", seg(id), "cancel"), "")
}

// RetryWorkflow runs a failed, timed-out or cancelled run again. With
// taskID it retries only that task and what depends on it and did not
// complete (also in a running or paused run); with "" every failed,
// timed-out, skipped and cancelled task. Errors: 404 run or task; 409 with
// the run's (or task's) State.
func (c *OrchestratorClient) RetryWorkflow(ctx context.Context, id, taskID string) (*wire.Run, error) {
	return c.control(ctx, c.tenantPath("workflows", seg(id), "retry"), taskID)
}

// control posts a control verb, with {"task_id"} when taskID is set.
func (c *OrchestratorClient) control(ctx context.Context, path, taskID string) (*wire.Run, error) {
	var in any
	if taskID != "" {
		in = wire.ControlRequest{TaskID: taskID}
	}
	var run wire.Run
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: path}, in, &run); err != nil {
		return nil, err
	}
	return &run, nil
}

// GetWorkflowMetrics returns a run's timings computed from its events:
// durations, attempts, queue waits and the critical path. Errors: 404.
func (c *OrchestratorClient) GetWorkflowMetrics(ctx context.Context, id string) (*wire.RunMetrics, error) {
	var m wire.RunMetrics
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("workflows", seg(id), "metrics")}, nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// WorkflowEvents returns one page of a run's history in seq order. Errors:
// 400 naming a bad query field, 404.
func (c *OrchestratorClient) WorkflowEvents(ctx context.Context, id string, q EventsQuery) (*EventsPage, error) {
	return c.runEvents(ctx, c.tenantPath("workflows", seg(id), "events"), q)
}

func (c *OrchestratorClient) runEvents(ctx context.Context, path string, q EventsQuery) (*EventsPage, error) {
	v := url.Values{}
	if q.After != 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.TaskID != "" {
		v.Set("task_id", q.TaskID)
	}
	if q.Type != "" {
		v.Set("type", string(q.Type))
	}
	if q.Verify {
		v.Set("verify", "true")
	}
	var page EventsPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: path, query: v}, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// eventQuery is the query of the tenant event routes.
func eventQuery(f EventFilter) url.Values {
	q := url.Values{}
	if f.Type != "" {
		q.Set("type", string(f.Type))
	}
	if f.Run != "" {
		q.Set("run", f.Run)
	}
	if f.TaskID != "" {
		q.Set("task_id", f.TaskID)
	}
	if f.Actor != "" {
		q.Set("actor", f.Actor)
	}
	if f.OnBehalf != "" {
		q.Set("on_behalf", f.OnBehalf)
	}
	if !f.Since.IsZero() {
		q.Set("since", formatTime(f.Since))
	}
	if !f.Until.IsZero() {
		q.Set("until", formatTime(f.Until))
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.PageToken != "" {
		q.Set("page_token", f.PageToken)
	}
	return q
}

// TenantEvents returns one page of the tenant's events across runs, in log
// order: the audit query. Errors: 400 naming a bad filter.
func (c *OrchestratorClient) TenantEvents(ctx context.Context, f EventFilter) (*TenantEventsPage, error) {
	var page TenantEventsPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("events"), query: eventQuery(f)}, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// AllTenantEvents calls fn for every event f selects, walking the pages
// from f.PageToken on. It stops at the first error, returning it; fn may
// return ErrStop to end the walk with nil.
func (c *OrchestratorClient) AllTenantEvents(ctx context.Context, f EventFilter, fn func(wire.Event) error) error {
	return walkPages(f.PageToken, func(token string) ([]wire.Event, string, error) {
		f.PageToken = token
		page, err := c.TenantEvents(ctx, f)
		if err != nil {
			return nil, "", err
		}
		return page.Events, page.NextPageToken, nil
	}, fn)
}

// StreamTenantEvents asks for every event f selects as one NDJSON stream
// (Accept: application/x-ndjson) and calls fn for each as it arrives, in
// log order. f.Limit caps how many are sent. The client's timeout bounds
// the wait for the answer to begin, not the stream: ctx does. fn may return
// ErrStop to end the stream early with nil; any other error of fn is
// returned.
func (c *OrchestratorClient) StreamTenantEvents(ctx context.Context, f EventFilter, fn func(wire.Event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl := call{method: http.MethodGet, path: c.tenantPath("events"), query: eventQuery(f), accept: "application/x-ndjson"}
	var timer *time.Timer
	if c.timeout > 0 {
		timer = time.AfterFunc(c.timeout, cancel)
	}
	res, err := c.start(ctx, cl)
	if timer != nil && !timer.Stop() {
		// The answer did not begin within the timeout.
		if err == nil {
			res.Body.Close()
		}
		return fmt.Errorf("orchestrator: GET %s: %w", cl.path, context.DeadlineExceeded)
	}
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return decodeError(res, cl)
	}
	dec := json.NewDecoder(res.Body)
	for {
		var e wire.Event
		err := dec.Decode(&e)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("orchestrator: GET %s: read stream: %w", cl.path, err)
		}
		if err := fn(e); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
}

// RegisterDefinition stores a definition (its JSON, sent as is) for the
// tenant: Created true and a new version when it is new or changed, the
// existing version (Created false) when it is unchanged. Errors: 400 invalid_json, 400
// invalid_definition with every problem in Errors, 413.
func (c *OrchestratorClient) RegisterDefinition(ctx context.Context, def json.RawMessage) (*Registration, error) {
	return c.register(ctx, c.tenantPath("definitions"), def)
}

func (c *OrchestratorClient) register(ctx context.Context, path string, def json.RawMessage) (*Registration, error) {
	var d Registration
	body := []byte(def)
	if body == nil {
		body = []byte{}
	}
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: path, body: body}, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// ListDefinitions returns the latest version of each of the tenant's
// definitions, without their JSON.
func (c *OrchestratorClient) ListDefinitions(ctx context.Context) ([]DefinitionVersion, error) {
	var page wire.DefinitionsPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("definitions")}, nil, &page); err != nil {
		return nil, err
	}
	return page.Definitions, nil
}

// GetDefinitionVersion returns a stored version of a definition with its
// JSON; version 0 asks for the latest. Errors: 404.
func (c *OrchestratorClient) GetDefinitionVersion(ctx context.Context, name string, version int) (*DefinitionVersion, error) {
	v := "latest"
	if version != 0 {
		v = strconv.Itoa(version)
	}
	var d DefinitionVersion
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("definitions", seg(name), "versions", v)}, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// ValidateDAG checks a definition (its JSON, sent as is) without storing
// it: every problem, or the topological levels. Errors: 400 invalid_json
// only; an invalid DAG is a Validation with Valid false.
func (c *OrchestratorClient) ValidateDAG(ctx context.Context, def json.RawMessage) (*Validation, error) {
	var v Validation
	body := []byte(def)
	if body == nil {
		body = []byte{}
	}
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: "/api/v1/dag/validate", body: body}, nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// RunCounts counts the tenant's runs by state (GET .../run-counts), with
// the runs list's filters but its status. Errors: 400 naming a bad filter.
func (c *OrchestratorClient) RunCounts(ctx context.Context, f RunFilter) (*wire.RunCounts, error) {
	q := runQuery(f)
	q.Del("status")
	q.Del("limit")
	q.Del("page_token")
	var out wire.RunCounts
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("run-counts"), query: q}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// runQuery is the query of the runs f selects.
func runQuery(f RunFilter) url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("status", string(f.Status))
	set("workflow", f.Workflow)
	set("origin_kind", f.OriginKind)
	set("origin_id", f.OriginID)
	if !f.CreatedAfter.IsZero() {
		q.Set("created_after", formatTime(f.CreatedAfter))
	}
	if !f.CreatedBefore.IsZero() {
		q.Set("created_before", formatTime(f.CreatedBefore))
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	set("page_token", f.PageToken)
	return q
}
