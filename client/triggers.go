package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/orchestrator/orchestrator/api/wire"
)

// Webhooks (.../webhooks) and stream triggers (.../triggers: NATS,
// Kafka) of the client's tenant, and webhook deliveries. A trigger's
// secret is in the answer of the create (or rotation) only.

// CreateWebhook creates a webhook; the answer's Secret is shown this once.
// Errors: 400 naming a bad field (an unknown workflow among them), 409 when
// the name is taken.
func (c *OrchestratorClient) CreateWebhook(ctx context.Context, req wire.CreateTriggerRequest) (*wire.Trigger, error) {
	return c.createTrigger(ctx, "webhooks", req)
}

// ListWebhooks returns the tenant's webhooks by name.
func (c *OrchestratorClient) ListWebhooks(ctx context.Context) (*wire.TriggersPage, error) {
	return c.listTriggers(ctx, "webhooks")
}

// GetWebhook reads a webhook. Errors: 404.
func (c *OrchestratorClient) GetWebhook(ctx context.Context, name string) (*wire.Trigger, error) {
	return c.getTrigger(ctx, "webhooks", name)
}

// UpdateWebhook changes a webhook; fields left out stay. With RotateSecret
// the answer's Secret is the new one, shown this once.
func (c *OrchestratorClient) UpdateWebhook(ctx context.Context, name string, req wire.UpdateTriggerRequest) (*wire.Trigger, error) {
	return c.updateTrigger(ctx, "webhooks", name, req)
}

// DeleteWebhook deletes a webhook. Errors: 404.
func (c *OrchestratorClient) DeleteWebhook(ctx context.Context, name string) error {
	return c.deleteTrigger(ctx, "webhooks", name)
}

// Deliver posts a webhook delivery as a sender would: body as is, header
// carrying the signature (X-Hub-Signature-256, Stripe-Signature or the
// webhook's Authorization: Bearer SECRET) and the delivery id. It never
// sends the client's API key: the route reads none. A repeated delivery id
// answers the first run with Replayed set. Errors: 401 for a signature that
// does not verify, 404, 413, 400 naming a missing field.
func (c *OrchestratorClient) Deliver(ctx context.Context, name string, body []byte, header http.Header) (*wire.Delivery, error) {
	var d wire.Delivery
	if body == nil {
		body = []byte{}
	}
	cl := call{method: http.MethodPost, path: c.tenantPath("webhooks", seg(name), "deliveries"), header: header, body: body,
		timeout: c.timeout, noKey: true}
	_, data, err := c.send(ctx, cl)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("orchestrator: POST %s: decode answer: %w", cl.path, err)
	}
	return &d, nil
}

// CreateTrigger creates a stream trigger (Kind nats or kafka); the server
// starts its consumer at once.
func (c *OrchestratorClient) CreateTrigger(ctx context.Context, req wire.CreateTriggerRequest) (*wire.Trigger, error) {
	return c.createTrigger(ctx, "triggers", req)
}

// ListTriggers returns the tenant's stream triggers with their consumers'
// status.
func (c *OrchestratorClient) ListTriggers(ctx context.Context) (*wire.TriggersPage, error) {
	return c.listTriggers(ctx, "triggers")
}

// GetTrigger reads a stream trigger and its consumer's status. Errors: 404.
func (c *OrchestratorClient) GetTrigger(ctx context.Context, name string) (*wire.Trigger, error) {
	return c.getTrigger(ctx, "triggers", name)
}

// UpdateTrigger changes a stream trigger; its consumer restarts.
func (c *OrchestratorClient) UpdateTrigger(ctx context.Context, name string, req wire.UpdateTriggerRequest) (*wire.Trigger, error) {
	return c.updateTrigger(ctx, "triggers", name, req)
}

// DeleteTrigger deletes a stream trigger; its consumer stops.
func (c *OrchestratorClient) DeleteTrigger(ctx context.Context, name string) error {
	return c.deleteTrigger(ctx, "triggers", name)
}

func (c *OrchestratorClient) createTrigger(ctx context.Context, coll string, req wire.CreateTriggerRequest) (*wire.Trigger, error) {
	var t wire.Trigger
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: c.tenantPath(coll)}, req, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func (c *OrchestratorClient) listTriggers(ctx context.Context, coll string) (*wire.TriggersPage, error) {
	var page wire.TriggersPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath(coll)}, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

func (c *OrchestratorClient) getTrigger(ctx context.Context, coll, name string) (*wire.Trigger, error) {
	var t wire.Trigger
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath(coll, seg(name))}, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func (c *OrchestratorClient) updateTrigger(ctx context.Context, coll, name string, req wire.UpdateTriggerRequest) (*wire.Trigger, error) {
	var t wire.Trigger
	if _, err := c.doJSON(ctx, call{method: http.MethodPatch, path: c.tenantPath(coll, seg(name))}, req, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func (c *OrchestratorClient) deleteTrigger(ctx context.Context, coll, name string) error {
	_, err := c.doJSON(ctx, call{method: http.MethodDelete, path: c.tenantPath(coll, seg(name))}, nil, nil)
	return err
}
