package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Triggers start runs from outside: a webhook delivery, a NATS JetStream
// message, a Kafka record. This file holds what a trigger is and how its
// configuration is checked (no I/O); triggers.go the service that keeps
// them and starts their runs. The adapters that talk to the outside live in
// package triggers and below it.

// TriggerKind is where a trigger's messages come from. The schema repeats
// the kinds as a CHECK.
type TriggerKind string

// Trigger kinds.
const (
	TriggerWebhook TriggerKind = "webhook" // an HTTP POST to the webhook's URL, verified by its secret
	TriggerNATS    TriggerKind = "nats"    // a durable consumer of a NATS JetStream stream
	TriggerKafka   TriggerKind = "kafka"   // a consumer group member on a Kafka topic
)

// TriggerKinds lists every trigger kind.
func TriggerKinds() []TriggerKind { return []TriggerKind{TriggerWebhook, TriggerNATS, TriggerKafka} }

// Stream reports whether k consumes a message stream (NATS, Kafka) rather
// than receiving HTTP requests.
func (k TriggerKind) Stream() bool { return k == TriggerNATS || k == TriggerKafka }

// originKind is the origin a run started by a trigger of kind k records.
func (k TriggerKind) originKind() OriginKind {
	switch k {
	case TriggerNATS:
		return OriginNATS
	case TriggerKafka:
		return OriginKafka
	}
	return OriginWebhook
}

// TriggerState says whether a trigger starts runs. The owner or an
// operator moves it (trigger.updated); the schema repeats the states.
type TriggerState string

// Trigger states.
const (
	TriggerEnabled  TriggerState = "enabled"  // deliveries start runs, consumers consume
	TriggerDisabled TriggerState = "disabled" // deliveries are refused (404), consumers are stopped
)

// TriggerStates lists every trigger state.
func TriggerStates() []TriggerState { return []TriggerState{TriggerEnabled, TriggerDisabled} }

// Webhook verifications: how a delivery proves it comes from the sender.
const (
	// VerifyGitHub: HMAC-SHA256 of the raw body with the secret, hex, in
	// X-Hub-Signature-256: sha256=HEX (or SignatureHeader).
	VerifyGitHub = "github"
	// VerifyStripe: Stripe-Signature: t=UNIX,v1=HEX[,v1=HEX...], each v1
	// the HMAC-SHA256 of "t.body"; t within StripeTolerance of now.
	VerifyStripe = "stripe"
	// VerifyBearer: Authorization: Bearer SECRET.
	VerifyBearer = "bearer"
)

// Verifications lists every webhook verification.
func Verifications() []string { return []string{VerifyGitHub, VerifyStripe, VerifyBearer} }

// StripeTolerance is how far a Stripe-style signature's t may be from now:
// an older (or later) delivery is refused as a replay.
const StripeTolerance = 5 * time.Minute

// WebhookDedupWindow is how long a webhook delivery id (and a stream
// message id) dedups a repeat at least: its idempotency key is kept as long
// as its run, and nothing deletes idempotency keys before that.
const WebhookDedupWindow = 24 * time.Hour

// Bounds of a trigger's configuration.
const (
	MaxTriggerTemplate = 64 << 10 // the input template, encoded
	MaxTriggerSecret   = 256      // a secret given at create
	MinTriggerSecret   = 16       // a secret given at create
	MaxTriggerBrokers  = 16       // Kafka brokers, NATS servers
	MaxTriggerAddr     = 512      // one broker or server address
	MaxDeliveryID      = 256      // a delivery id header's value
	MaxTriggersTenant  = 1000     // triggers of one tenant
)

// WebhookConfig is how a webhook verifies and dedups its deliveries.
type WebhookConfig struct {
	Verify string `json:"verify"` // VerifyGitHub, VerifyStripe or VerifyBearer
	// SignatureHeader overrides the header a github signature is read from
	// (default X-Hub-Signature-256).
	SignatureHeader string `json:"signature_header,omitempty"`
	// DeliveryHeader names the header whose value identifies a delivery
	// (X-GitHub-Delivery): a repeat of an id returns the run the first
	// delivery started. "" : every delivery starts a run.
	DeliveryHeader string `json:"delivery_header,omitempty"`
}

// NATSConfig is what a NATS trigger consumes.
type NATSConfig struct {
	Servers []string `json:"servers"`           // nats://host:port
	Stream  string   `json:"stream"`            // the JetStream stream
	Subject string   `json:"subject,omitempty"` // a filter subject within it; "" every subject
	Durable string   `json:"durable,omitempty"` // the durable consumer's name; default orch_<tenant>_<trigger>
	// AckWait is how long JetStream waits for an ack before it delivers a
	// message again (after a crash: the messages in flight); default 30s,
	// 1s to 1h.
	AckWait string `json:"ack_wait,omitempty"`
}

// AckWaitDuration is the NATS consumer's ack wait: AckWait, or 30 s.
func (n *NATSConfig) AckWaitDuration() time.Duration {
	if d, err := time.ParseDuration(n.AckWait); err == nil && n.AckWait != "" {
		return d
	}
	return 30 * time.Second
}

// KafkaConfig is what a Kafka trigger consumes.
type KafkaConfig struct {
	Brokers []string `json:"brokers"`         // host:port
	Topic   string   `json:"topic"`           //
	Group   string   `json:"group,omitempty"` // the consumer group; default orch.<tenant>.<trigger>
}

// TriggerConfig is a trigger's configuration besides its workflow: exactly
// the block of its kind is set.
type TriggerConfig struct {
	// Input is the template of a run's input: any JSON in which a string
	// "${/body/POINTER}", "${/headers/NAME}" or "${/query/NAME}" is replaced
	// by what it names (a header's or query parameter's first value, as a
	// string). nil: the run's input is the body (the message payload) itself.
	Input   json.RawMessage `json:"input,omitempty"`
	Webhook *WebhookConfig  `json:"webhook,omitempty"`
	NATS    *NATSConfig     `json:"nats,omitempty"`
	Kafka   *KafkaConfig    `json:"kafka,omitempty"`
}

// Trigger is a stored trigger. ID, unlike the name, is never reused: the
// idempotency keys of its runs carry it, so that a trigger deleted and made
// again under the same name dedups nothing of the old one's.
type Trigger struct {
	ID       string        `json:"id"`
	TenantID string        `json:"tenant_id"`
	Name     string        `json:"name"`
	Kind     TriggerKind   `json:"kind"`
	Workflow string        `json:"workflow"` // name, name@VERSION or name@ALIAS
	Config   TriggerConfig `json:"config"`
	// Secret is a webhook's secret as stored: for github and stripe the
	// HMAC key, sealed when Triggers has a Sealer (Lookup opens it); for
	// bearer the SHA-256 (hex) of the token. The API never shows it.
	Secret    string       `json:"-"`
	State     TriggerState `json:"state"`
	Version   int64        `json:"version"` // compare-and-set: 1 when created, +1 on each update
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
}

// TriggerStatus is what a stream trigger's consumer reports of itself; it
// lives in memory, in the process that consumes.
type TriggerStatus struct {
	Connected   bool      `json:"connected"`
	Lag         int64     `json:"lag"`                  // messages in the stream not yet consumed
	LastError   string    `json:"last_error,omitempty"` //
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Messages    int64     `json:"messages"`     // messages consumed since the process started
	RunsStarted int64     `json:"runs_started"` // of which started a run (not a repeat)
	Errors      int64     `json:"errors"`       // failures: of the connection, and messages refused
}

// TriggerStore keeps triggers. Every change takes the AdminEvent that
// records it and writes both in one transaction, or neither. Every method is
// safe for concurrent use.
type TriggerStore interface {
	// CreateTrigger stores a new trigger (Version 1). ErrConflict when the
	// tenant has a trigger of that name; ErrTenantNotFound when the tenant
	// is not registered (with a tenant registry).
	CreateTrigger(ctx context.Context, t *Trigger, ev *AdminEvent) error
	// GetTrigger returns a tenant's trigger, or an error wrapping ErrNotFound.
	GetTrigger(ctx context.Context, tenantID, name string) (*Trigger, error)
	// ListTriggers returns a tenant's triggers (AllTenants: every tenant's)
	// by tenant and name.
	ListTriggers(ctx context.Context, tenantID string) ([]Trigger, error)
	// UpdateTrigger writes t's workflow, config, secret and state as
	// version t.Version+1 if the stored version is still t.Version:
	// ErrConflict when it is not, ErrNotFound when there is no such trigger.
	UpdateTrigger(ctx context.Context, t *Trigger, ev *AdminEvent) error
	// DeleteTrigger removes a tenant's trigger. ErrNotFound when there is
	// none of that name.
	DeleteTrigger(ctx context.Context, tenantID, name string, ev *AdminEvent) error
}

// validate checks a trigger's kind, name, state and configuration; the
// fields named are those of the API's body (config.nats.stream...).
func (t *Trigger) validate() error {
	if !slices.Contains(TriggerKinds(), t.Kind) {
		return &FieldError{Field: "kind", Reason: fmt.Sprintf("%q: want one of webhook, nats, kafka", t.Kind)}
	}
	if !definition.ValidName(t.Name) {
		return &FieldError{Field: "name", Reason: fmt.Sprintf("%q: must match [A-Za-z0-9_.-]{1,64} and not be . or ..", t.Name)}
	}
	if !slices.Contains(TriggerStates(), t.State) {
		return &FieldError{Field: "state", Reason: fmt.Sprintf("%q: want enabled or disabled", t.State)}
	}
	c := &t.Config
	blocks := map[TriggerKind]bool{TriggerWebhook: c.Webhook != nil, TriggerNATS: c.NATS != nil, TriggerKafka: c.Kafka != nil}
	for k, set := range blocks {
		if set && k != t.Kind {
			return &FieldError{Field: string(k), Reason: fmt.Sprintf("a %s trigger takes %s only", t.Kind, t.Kind)}
		}
		if !set && k == t.Kind {
			return &FieldError{Field: string(k), Reason: "required for a " + string(k) + " trigger"}
		}
	}
	if err := validateTemplate(c.Input, t.Kind); err != nil {
		return err
	}
	switch t.Kind {
	case TriggerWebhook:
		return c.Webhook.validate()
	case TriggerNATS:
		return c.NATS.validate()
	}
	return c.Kafka.validate()
}

func (w *WebhookConfig) validate() error {
	if !slices.Contains(Verifications(), w.Verify) {
		return &FieldError{Field: "webhook.verify", Reason: fmt.Sprintf("%q: want one of github, stripe, bearer", w.Verify)}
	}
	if w.SignatureHeader != "" && w.Verify != VerifyGitHub {
		return &FieldError{Field: "webhook.signature_header", Reason: "only github verification reads a signature header of its choice"}
	}
	for f, h := range map[string]string{"signature_header": w.SignatureHeader, "delivery_header": w.DeliveryHeader} {
		if h != "" && !validHeaderName(h) {
			return &FieldError{Field: "webhook." + f, Reason: fmt.Sprintf("%q is not a header name", h)}
		}
	}
	return nil
}

func (n *NATSConfig) validate() error {
	if err := validAddrs("nats.servers", n.Servers, true); err != nil {
		return err
	}
	if !validNATSName(n.Stream) {
		return &FieldError{Field: "nats.stream", Reason: fmt.Sprintf("%q: required, 1 to 256 of [A-Za-z0-9_-]", n.Stream)}
	}
	if n.Subject != "" && !validSubject(n.Subject) {
		return &FieldError{Field: "nats.subject", Reason: fmt.Sprintf("%q: tokens of visible ASCII separated by dots, * and > as wildcards", n.Subject)}
	}
	if n.AckWait != "" {
		if d, err := time.ParseDuration(n.AckWait); err != nil || d < time.Second || d > time.Hour {
			return &FieldError{Field: "nats.ack_wait", Reason: fmt.Sprintf("%q: a duration from 1s to 1h", n.AckWait)}
		}
	}
	if n.Durable != "" && !validNATSName(n.Durable) {
		return &FieldError{Field: "nats.durable", Reason: fmt.Sprintf("%q: 1 to 256 of [A-Za-z0-9_-]", n.Durable)}
	}
	return nil
}

func (k *KafkaConfig) validate() error {
	if err := validAddrs("kafka.brokers", k.Brokers, false); err != nil {
		return err
	}
	if !validKafkaName(k.Topic) {
		return &FieldError{Field: "kafka.topic", Reason: fmt.Sprintf("%q: required, 1 to 249 of [A-Za-z0-9._-]", k.Topic)}
	}
	if k.Group != "" && !validKafkaName(k.Group) {
		return &FieldError{Field: "kafka.group", Reason: fmt.Sprintf("%q: 1 to 249 of [A-Za-z0-9._-]", k.Group)}
	}
	return nil
}

// DurableName is the NATS durable consumer a trigger uses.
func (t *Trigger) DurableName() string {
	if t.Config.NATS != nil && t.Config.NATS.Durable != "" {
		return t.Config.NATS.Durable
	}
	return "orch_" + strings.ReplaceAll(t.TenantID+"_"+t.Name, ".", "-")
}

// GroupName is the Kafka consumer group a trigger joins.
func (t *Trigger) GroupName() string {
	if t.Config.Kafka != nil && t.Config.Kafka.Group != "" {
		return t.Config.Kafka.Group
	}
	return "orch." + t.TenantID + "." + t.Name
}

func validAddrs(field string, addrs []string, natsURL bool) error {
	if len(addrs) == 0 || len(addrs) > MaxTriggerBrokers {
		return &FieldError{Field: field, Reason: fmt.Sprintf("1 to %d addresses", MaxTriggerBrokers)}
	}
	for i, a := range addrs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if a == "" || len(a) > MaxTriggerAddr {
			return &FieldError{Field: f, Reason: fmt.Sprintf("1 to %d bytes", MaxTriggerAddr)}
		}
		host := a
		if natsURL {
			u, err := url.Parse(a)
			if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" || u.Path != "" {
				return &FieldError{Field: f, Reason: fmt.Sprintf("%q: want nats://host:port or tls://host:port", a)}
			}
			host = u.Host
		}
		if h, p, ok := strings.Cut(host, ":"); !ok || h == "" || p == "" || strings.ContainsAny(host, " /?#@") {
			return &FieldError{Field: f, Reason: fmt.Sprintf("%q: want host:port", a)}
		}
	}
	return nil
}

func validNATSName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validSubject(s string) bool {
	if len(s) > 256 {
		return false
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		if tok == "" || (tok == ">" && i != len(toks)-1) {
			return false
		}
		for _, c := range tok {
			if c <= ' ' || c > '~' || (len(tok) > 1 && (c == '*' || c == '>')) {
				return false
			}
		}
	}
	return true
}

func validKafkaName(s string) bool {
	if s == "" || len(s) > 249 || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validHeaderName reports whether s is an HTTP header name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}
