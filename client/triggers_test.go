package client_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
	"github.com/orchestrator/orchestrator/triggers/webhook"
)

func TestOrchestratorClient_WebhookDeliveredOnceByID(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithAPIKey("orch_ignored_by_deliveries"))
	ctx := ctxFor(t)
	plain := env.client(t)
	_, err := plain.RegisterDefinition(ctx, def("w", "noop"))
	is.NoErr(err)
	hook, err := plain.CreateWebhook(ctx, wire.CreateTriggerRequest{Name: "gh", Workflow: "w",
		Webhook: &wire.WebhookConfig{Verify: "github", DeliveryHeader: "X-GitHub-Delivery"}})
	is.NoErr(err)              // created
	is.True(hook.Secret != "") // with its secret, once
	body := []byte(`{"a":1}`)
	hdr := http.Header{"X-Hub-Signature-256": {"sha256=" + webhook.Sign(hook.Secret, body)}, "X-Github-Delivery": {"d1"}}
	d, err := c.Deliver(ctx, "gh", body, hdr)
	is.NoErr(err)        // delivered without the API key
	is.True(!d.Replayed) // a first delivery
	again, err := c.Deliver(ctx, "gh", body, hdr)
	is.NoErr(err)
	is.Equal(again.RunID, d.RunID) // the same run
	is.True(again.Replayed)        //
	got, err := plain.GetWebhook(ctx, "gh")
	is.NoErr(err)
	is.Equal(got.Secret, "") // never shown again
	hdr.Set("X-Hub-Signature-256", "sha256=00")
	_, err = c.Deliver(ctx, "gh", body, hdr)
	var ce *client.Error
	is.True(errors.As(err, &ce))                 // a refusal
	is.Equal(ce.Status, http.StatusUnauthorized) // 401
	is.Equal(ce.Code, wire.CodeUnauthenticated)  //
	is.NoErr(plain.DeleteWebhook(ctx, "gh"))     // deleted
	page, err := plain.ListWebhooks(ctx)
	is.NoErr(err)
	is.Equal(len(page.Triggers), 0) // gone
}
