package client_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
	"github.com/orchestrator/orchestrator/engine"
)

func TestOrchestratorClient_QuotaRefusals(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{Quotas: engine.TenantQuotas{StartRate: 0.01, StartBurst: 1}})
	c := env.client(t)
	ctx := ctxFor(t)
	_, err := c.RegisterDefinition(ctx, def("held", typeExt))
	is.NoErr(err)
	_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "held"})
	is.NoErr(err) // the burst
	_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "held"})
	e := wantProblem(t, err, http.StatusTooManyRequests, wire.CodeQuotaExceeded)
	is.Equal(e.Quota, "start_rate")
	is.True(e.RetryAfter > 90*time.Second) // a start every 100 s
}

func TestOrchestratorClient_ConcurrencyLimited(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t)
	ctx := ctxFor(t)
	_, err := c.RegisterDefinition(ctx, json.RawMessage(`{"name":"keyed","concurrency":{"key":"${workflow.input.c}","strategy":"cancel_newest"},
		"tasks":[{"id":"x","type":"ext"}]}`))
	is.NoErr(err)
	_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "keyed", Input: json.RawMessage(`{"c":"k1"}`)})
	is.NoErr(err)
	_, err = c.ExecuteWorkflow(ctx, client.ExecuteRequest{Workflow: "keyed", Input: json.RawMessage(`{"c":"k1"}`)})
	e := wantProblem(t, err, http.StatusConflict, wire.CodeConcurrencyLimited)
	is.Equal(e.Key, "k1") // the key taken
}
