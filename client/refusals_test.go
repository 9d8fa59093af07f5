package client_test

import (
	"net/http"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
)

// Requests the server refuses, seen through the client: each is refused with
// the right status and code, and writes nothing.

// TestOrchestratorClient_RefusedExecuteWritesNothing: an ExecuteWorkflow
// refused with 422 (Idempotency-Key reused for a different request) must not
// register its inline definition as a new version: "a refused request
// writes nothing". The API (executeWorkflow in api/runs.go) looks the key up
// before registering.
func TestOrchestratorClient_RefusedExecuteWritesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("idem"))
	ctx := ctxFor(t)
	first, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: def("inline", "noop"), IdempotencyKey: "k"})
	is.NoErr(err)              // first request
	is.Equal(first.Version, 1) // registers version 1
	_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: def("inline", typeHold), IdempotencyKey: "k"})
	wantProblem(t, err, http.StatusUnprocessableEntity, wire.CodeIdempotencyMismatch)
	latest, err := c.GetDefinitionVersion(ctx, "inline", 0)
	is.NoErr(err)               // latest version
	is.Equal(latest.Version, 1) // the refused request stored no version 2
}

// TestOrchestratorClient_DotSegmentTenants: "." and ".." passed the tenant
// id check, but as path segments they are dot-segments that URL
// normalization removes (RFC 3986 5.2.4; curl, browsers and proxies do it):
// /api/v1/tenants/../workflows reaches /api/v1/workflows, so such a tenant
// is unreachable for most clients and its Location headers point elsewhere.
// definition.ValidName, which tenantOf and definition validation share,
// refuses both.
func TestOrchestratorClient_DotSegmentTenants(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	ctx := ctxFor(t)
	for _, tenant := range []string{".", ".."} {
		c := env.client(t, client.WithTenant(tenant))
		_, err := c.ExecuteWorkflow(ctx, client.ExecuteRequest{Definition: def("x", "noop")})
		if s := client.StatusOf(err); s != http.StatusBadRequest && s != http.StatusNotFound {
			t.Errorf("tenant %q: want 400 or 404, got %v", tenant, err)
		}
	}
	c := env.client(t)
	_, err := c.RegisterDefinition(ctx, def("..", "noop"))
	wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidDefinition) // nor a definition named ..
}

// TestOrchestratorClient_UnknownQueryParametersRefused: every GET refuses
// query parameters it does not know ("so that a misspelt filter is not
// silently ignored"), the run metrics and definition version routes too.
func TestOrchestratorClient_UnknownQueryParametersRefused(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("params"))
	ctx := ctxFor(t)
	mustRegister(t, c, def("wf", "noop"))
	id := mustExecute(t, c, "wf").ID
	waitState(t, c, id, wire.RunCompleted)
	for _, path := range []string{
		"/api/v1/tenants/params/workflows/" + id + "/metrics?verbose=1",
		"/api/v1/tenants/params/definitions/wf/versions/1?verbose=1",
	} {
		_, err := c.Do(ctx, http.MethodGet, path, nil, nil)
		if client.StatusOf(err) != http.StatusBadRequest {
			t.Errorf("GET %s: want 400 naming verbose, got %v", path, err)
		}
	}
}

// TestOrchestratorClient_MalformedJSONAfterBadKey: a body that is not JSON
// is answered 400 invalid_json even when a key before the syntax error is
// unknown or repeated, so that a client switching on the code does not take
// a truncated body for a wrong field. decodeStrict (api/request.go) checks
// the body is JSON before it checks its keys.
func TestOrchestratorClient_MalformedJSONAfterBadKey(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t)
	ctx := ctxFor(t)
	for _, body := range []string{`{"bogus":`, `{"types":["ext"],"worker_id":"w","types":`} {
		_, err := c.Do(ctx, http.MethodPost, "/v1/tasks/poll", nil, []byte(body))
		if client.CodeOf(err) != wire.CodeInvalidJSON {
			t.Errorf("POST /v1/tasks/poll %s: want 400 invalid_json, got %v", body, err)
		}
	}
}
