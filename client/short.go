package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/orchestrator/orchestrator/api/wire"
)

// The short /v1 API: the same operations on the tenant "default", whatever
// tenant the client names.

// RegisterWorkflow stores a definition (its JSON, sent as is) for the
// tenant "default" (POST /v1/workflows). Created is true for a new version.
// Errors: 400 invalid_json, 400
// invalid_definition with every problem in Errors, 413, 415.
func (c *OrchestratorClient) RegisterWorkflow(ctx context.Context, def json.RawMessage) (*Registration, error) {
	return c.register(ctx, "/v1/workflows", def)
}

// GetWorkflowDefinition returns a version of a workflow of the tenant
// "default" with its JSON; version 0 asks for the latest. Errors: 400 a
// missing name, 404.
func (c *OrchestratorClient) GetWorkflowDefinition(ctx context.Context, name string, version int) (*DefinitionVersion, error) {
	q := url.Values{"name": {name}}
	if version != 0 {
		q.Set("version", strconv.Itoa(version))
	}
	var d DefinitionVersion
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: "/v1/workflows", query: q}, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Run starts a run on the tenant "default" (POST /v1/run) and returns it
// once it is durable: of a registered workflow by name (and version), or of
// an inline definition, with an optional IdempotencyKey, like
// ExecuteWorkflow. Location is the run's path on the short API. Errors: 400
// naming the field, 404 an unknown workflow or version, 422 a reused
// IdempotencyKey.
func (c *OrchestratorClient) Run(ctx context.Context, req ExecuteRequest) (*Execution, error) {
	return c.execute(ctx, "/v1/run", req)
}

// GetRun returns a run of the tenant "default" with its progress and
// tasks. Errors: 404.
func (c *OrchestratorClient) GetRun(ctx context.Context, id string) (*RunDetails, error) {
	var d RunDetails
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: "/v1/runs/" + seg(id)}, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// RunEvents returns one page of the history of a run of the tenant
// "default". Errors: 400 naming a bad query field, 404.
func (c *OrchestratorClient) RunEvents(ctx context.Context, id string, q EventsQuery) (*EventsPage, error) {
	return c.runEvents(ctx, "/v1/runs/"+seg(id)+"/events", q)
}

// PauseRun pauses a run of the tenant "default"; see PauseWorkflow.
func (c *OrchestratorClient) PauseRun(ctx context.Context, id string) (*wire.Run, error) {
	return c.control(ctx, "/v1/runs/"+seg(id)+"/pause", "")
}

// ResumeRun resumes a run of the tenant "default"; see ResumeWorkflow.
func (c *OrchestratorClient) ResumeRun(ctx context.Context, id string) (*wire.Run, error) {
	return c.control(ctx, "/v1/runs/"+seg(id)+"/resume", "")
}

// CancelRun cancels a run of the tenant "default"; see CancelWorkflow.
func (c *OrchestratorClient) CancelRun(ctx context.Context, id string) (*wire.Run, error) {
	return c.control(ctx, "/v1/runs/"+seg(id)+"/cancel", "")
}

// RetryRun retries a run of the tenant "default", or with taskID one task
// and its dependents; see RetryWorkflow.
func (c *OrchestratorClient) RetryRun(ctx context.Context, id, taskID string) (*wire.Run, error) {
	return c.control(ctx, "/v1/runs/"+seg(id)+"/retry", taskID)
}

// Health reports whether the server and its database answer (GET
// /health). Errors: a *Error with Status 503 when the database does not.
func (c *OrchestratorClient) Health(ctx context.Context) (*Health, error) {
	var h Health
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: "/health"}, nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// OpenAPI returns the OpenAPI 3.1 document of every route the server
// serves (GET /openapi.json).
func (c *OrchestratorClient) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	_, data, err := c.send(ctx, call{method: http.MethodGet, path: "/openapi.json", timeout: c.timeout})
	if err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("orchestrator: GET /openapi.json: the answer is not JSON")
	}
	return json.RawMessage(data), nil
}

// Metrics returns the server's metrics in the Prometheus text format (GET
// /metrics).
func (c *OrchestratorClient) Metrics(ctx context.Context) (string, error) {
	_, data, err := c.send(ctx, call{method: http.MethodGet, path: "/metrics", accept: "text/plain", timeout: c.timeout})
	if err != nil {
		return "", err
	}
	return string(data), nil
}
