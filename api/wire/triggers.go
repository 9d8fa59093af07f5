package wire

import (
	"encoding/json"
	"time"
)

// Triggers: webhooks (/api/v1/tenants/{tenantId}/webhooks) and stream
// triggers (.../triggers: NATS JetStream, Kafka) that start runs, and the
// answer of a webhook delivery.

// WebhookConfig is how a webhook verifies and dedups deliveries.
type WebhookConfig struct {
	Verify          string `json:"verify"`                     // github, stripe or bearer
	SignatureHeader string `json:"signature_header,omitempty"` // github: default X-Hub-Signature-256
	DeliveryHeader  string `json:"delivery_header,omitempty"`  // e.g. X-GitHub-Delivery: a repeated id returns the first run
}

// NATSConfig is what a NATS trigger consumes.
type NATSConfig struct {
	Servers []string `json:"servers"`            // nats://host:port
	Stream  string   `json:"stream"`             // the JetStream stream
	Subject string   `json:"subject,omitempty"`  // a filter subject; "" every subject of the stream
	Durable string   `json:"durable,omitempty"`  // default orch_<tenant>_<name>
	AckWait string   `json:"ack_wait,omitempty"` // before an unacknowledged message is delivered again; default 30s
}

// KafkaConfig is what a Kafka trigger consumes.
type KafkaConfig struct {
	Brokers []string `json:"brokers"`         // host:port
	Topic   string   `json:"topic"`           //
	Group   string   `json:"group,omitempty"` // default orch.<tenant>.<name>
}

// TriggerStatus is what a stream trigger's consumer reports of itself.
type TriggerStatus struct {
	Connected   bool      `json:"connected"`
	Lag         int64     `json:"lag"` // messages not yet consumed
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Messages    int64     `json:"messages"`     // consumed since the server started
	RunsStarted int64     `json:"runs_started"` // of which started a run (not a repeat)
	Errors      int64     `json:"errors"`       // failures of the connection, and messages refused
}

// Trigger is a webhook or stream trigger as the API shows it. Its secret
// is shown once, in the answer of the create (or the rotation) that made
// it, and never again.
type Trigger struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`     // webhook, nats or kafka
	Workflow  string          `json:"workflow"` // name, name@VERSION (name@ALIAS once aliases are served)
	Input     json.RawMessage `json:"input,omitempty"`
	Webhook   *WebhookConfig  `json:"webhook,omitempty"`
	NATS      *NATSConfig     `json:"nats,omitempty"`
	Kafka     *KafkaConfig    `json:"kafka,omitempty"`
	State     string          `json:"state"` // enabled or disabled
	Version   int64           `json:"version"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	// URL is a webhook's delivery path on this server.
	URL string `json:"url,omitempty"`
	// Secret is the webhook's secret, in the answer that made it only.
	Secret string `json:"secret,omitempty"`
	// Status is a stream trigger's consumer, when this server runs it.
	Status *TriggerStatus `json:"status,omitempty"`
}

// TriggersPage is the answer of GET .../webhooks and GET .../triggers.
type TriggersPage struct {
	Triggers []Trigger `json:"triggers"`
}

// CreateTriggerRequest is the body of POST .../webhooks (kind webhook,
// which may be left out) and POST .../triggers (kind nats or kafka).
type CreateTriggerRequest struct {
	Name     string          `json:"name"`
	Kind     string          `json:"kind,omitempty"`
	Workflow string          `json:"workflow"`
	Input    json.RawMessage `json:"input,omitempty"`  // a template; default the body itself
	State    string          `json:"state,omitempty"`  // default enabled
	Secret   string          `json:"secret,omitempty"` // webhooks: 16 to 256 visible ASCII; default a random one
	Webhook  *WebhookConfig  `json:"webhook,omitempty"`
	NATS     *NATSConfig     `json:"nats,omitempty"`
	Kafka    *KafkaConfig    `json:"kafka,omitempty"`
}

// UpdateTriggerRequest is the body of PATCH .../webhooks/{name} and
// .../triggers/{name}: fields left out stay; a config block replaces the
// stored one whole; input null removes the template.
type UpdateTriggerRequest struct {
	Workflow     *string         `json:"workflow,omitempty"`
	Input        json.RawMessage `json:"input,omitempty"`
	State        string          `json:"state,omitempty"`
	Webhook      *WebhookConfig  `json:"webhook,omitempty"`
	NATS         *NATSConfig     `json:"nats,omitempty"`
	Kafka        *KafkaConfig    `json:"kafka,omitempty"`
	RotateSecret bool            `json:"rotate_secret,omitempty"` // webhooks: a new secret, answered once
	Secret       string          `json:"secret,omitempty"`        // with rotate_secret: the new secret; default a random one
}

// Delivery is the answer of a webhook delivery: 201 with the run it
// started once the run is durable, or 200 with the run a delivery of the
// same id started before (Replayed, and Idempotent-Replayed: true).
type Delivery struct {
	RunID    string   `json:"run_id"`
	Workflow string   `json:"workflow"`
	Version  int      `json:"version"`
	State    RunState `json:"state"`
	Replayed bool     `json:"replayed"`
}
