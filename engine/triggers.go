package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Admin log actions of triggers.
const (
	AdminTriggerCreated AdminAction = "trigger.created"
	AdminTriggerUpdated AdminAction = "trigger.updated" // workflow, config, state changed or secret rotated
	AdminTriggerDeleted AdminAction = "trigger.deleted"
)

// Triggers keeps a tenant's triggers (checking the caller, recording every
// change in the admin log in the same write) and starts their runs. The API,
// the webhook receiver and the stream consumers all go through it. It is
// safe for concurrent use once its fields are set.
type Triggers struct {
	Store  TriggerStore
	Engine *Engine
	// StatusFunc, when set, reports a stream trigger's consumer (the
	// trigger manager's Status); nil: no status is known.
	StatusFunc func(tenantID, name string) *TriggerStatus
	// Sealer, when set, encrypts the HMAC secrets of github and stripe
	// webhooks before they are stored (a bearer secret is stored as its
	// SHA-256 either way); nil: they are stored as they are.
	Sealer *Sealer
	// ChangedFunc, when set, is called once a change is durable, so that
	// the trigger manager starts, restarts or stops consumers at once.
	ChangedFunc func()
	NowFunc     func() time.Time // default time.Now
}

func (ts *Triggers) now() time.Time {
	now := time.Now
	if ts.NowFunc != nil {
		now = ts.NowFunc
	}
	return now().UTC().Truncate(time.Microsecond)
}

func (ts *Triggers) changed() {
	if ts.ChangedFunc != nil {
		ts.ChangedFunc()
	}
}

// Status returns what the consumer of a stream trigger reports, or nil.
func (ts *Triggers) Status(tenantID, name string) *TriggerStatus {
	if ts.StatusFunc == nil {
		return nil
	}
	return ts.StatusFunc(tenantID, name)
}

// TriggerRequest asks for a new trigger.
type TriggerRequest struct {
	TenantID string
	Name     string
	Kind     TriggerKind
	Workflow string
	Config   TriggerConfig
	State    TriggerState // "" is enabled
	// Secret is a webhook's secret as the sender will use it; "" makes one.
	Secret string
}

// NewSecret returns a new random webhook secret (32 bytes, hex).
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// storedSecret is what a webhook keeps of its secret: the SHA-256 of a
// bearer secret, an HMAC key sealed (with a Sealer) or as it is.
func (ts *Triggers) storedSecret(t *Trigger, secret string) string {
	if t.Config.Webhook != nil && t.Config.Webhook.Verify == VerifyBearer {
		return HashSecret(secret)
	}
	if ts.Sealer != nil {
		return ts.Sealer.Seal(secret, t.TenantID+"/"+t.Name)
	}
	return secret
}

func validSecret(s string) error {
	if len(s) < MinTriggerSecret || len(s) > MaxTriggerSecret {
		return &FieldError{Field: "secret", Reason: fmt.Sprintf("%d bytes: want %d to %d", len(s), MinTriggerSecret, MaxTriggerSecret)}
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c > '~' {
			return &FieldError{Field: "secret", Reason: "visible ASCII only"}
		}
	}
	return nil
}

// triggerData is what the admin log records of a trigger: everything but
// its secret.
func triggerData(t *Trigger, extra map[string]any) map[string]any {
	d := map[string]any{"trigger_id": t.ID, "name": t.Name, "kind": t.Kind, "workflow": t.Workflow,
		"config": t.Config, "state": t.State, "version": t.Version}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// Create stores a trigger and returns it with its secret (a webhook's;
// shown this once). Errors: *ForbiddenError, *FieldError (naming the
// field: kind, name, workflow, config..., secret), ErrConflict (the name is
// taken), ErrTenantNotFound.
func (ts *Triggers) Create(ctx context.Context, by *Principal, r TriggerRequest) (*Trigger, string, error) {
	if err := by.Authorize(ActionTriggersWrite, r.TenantID); err != nil {
		return nil, "", err
	}
	if r.State == "" {
		r.State = TriggerEnabled
	}
	now := ts.now()
	t := &Trigger{ID: NewRunID(now), TenantID: r.TenantID, Name: r.Name, Kind: r.Kind, Workflow: r.Workflow,
		Config: r.Config, State: r.State, Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := t.validate(); err != nil {
		return nil, "", err
	}
	secret := ""
	if t.Kind == TriggerWebhook {
		secret = r.Secret
		if secret == "" {
			secret = NewSecret()
		} else if err := validSecret(secret); err != nil {
			return nil, "", err
		}
		t.Secret = ts.storedSecret(t, secret)
	} else if r.Secret != "" {
		return nil, "", &FieldError{Field: "secret", Reason: "only webhooks have a secret"}
	}
	if err := ts.checkWorkflow(ctx, t.TenantID, t.Workflow); err != nil {
		return nil, "", err
	}
	if list, err := ts.Store.ListTriggers(ctx, t.TenantID); err != nil {
		return nil, "", err
	} else if len(list) >= MaxTriggersTenant {
		return nil, "", &FieldError{Field: "name", Reason: fmt.Sprintf("the tenant has %d triggers, the most it may have", len(list))}
	}
	ev, err := (&Admin{}).event(by, AdminTriggerCreated, t.TenantID, triggerData(t, nil), now)
	if err != nil {
		return nil, "", err
	}
	if err := ts.Store.CreateTrigger(ctx, t, ev); err != nil {
		return nil, "", err
	}
	ts.changed()
	return t, secret, nil
}

// Get returns a tenant's trigger. Errors: *ForbiddenError, ErrNotFound.
func (ts *Triggers) Get(ctx context.Context, by *Principal, tenantID, name string) (*Trigger, error) {
	if err := by.Authorize(ActionTriggersRead, tenantID); err != nil {
		return nil, err
	}
	return ts.Store.GetTrigger(ctx, tenantID, name)
}

// List returns a tenant's triggers, by name. Errors: *ForbiddenError.
func (ts *Triggers) List(ctx context.Context, by *Principal, tenantID string) ([]Trigger, error) {
	if err := by.Authorize(ActionTriggersRead, tenantID); err != nil {
		return nil, err
	}
	return ts.Store.ListTriggers(ctx, tenantID)
}

// TriggerChange is an update of a trigger; nil fields stay as they are. A
// config block replaces the stored one whole.
type TriggerChange struct {
	Workflow *string
	Input    *json.RawMessage // an empty one removes the template
	Webhook  *WebhookConfig
	NATS     *NATSConfig
	Kafka    *KafkaConfig
	State    TriggerState // "" stays
	// RotateSecret makes a webhook a new secret (Secret, or a random one),
	// returned this once.
	RotateSecret bool
	Secret       string
}

// Update changes a trigger and records it (trigger.updated, naming what
// changed) in one write; it returns the trigger and, when rotated, the new
// secret. Errors: *ForbiddenError, *FieldError, ErrNotFound, ErrConflict (a
// concurrent change won, a few times in a row).
func (ts *Triggers) Update(ctx context.Context, by *Principal, tenantID, name string, c TriggerChange) (*Trigger, string, error) {
	if err := by.Authorize(ActionTriggersWrite, tenantID); err != nil {
		return nil, "", err
	}
	if c.Secret != "" && !c.RotateSecret {
		return nil, "", &FieldError{Field: "secret", Reason: "a secret changes only with rotate_secret: true"}
	}
	for try := 0; ; try++ {
		t, err := ts.Store.GetTrigger(ctx, tenantID, name)
		if err != nil {
			return nil, "", err
		}
		next := *t
		changed := []string{}
		if c.Workflow != nil && *c.Workflow != t.Workflow {
			next.Workflow = *c.Workflow
			if err := ts.checkWorkflow(ctx, tenantID, next.Workflow); err != nil {
				return nil, "", err
			}
			changed = append(changed, "workflow")
		}
		if c.Input != nil && string(*c.Input) != string(t.Config.Input) {
			next.Config.Input = *c.Input
			if len(next.Config.Input) == 0 || string(next.Config.Input) == "null" {
				next.Config.Input = nil
			}
			changed = append(changed, "input")
		}
		if c.Webhook != nil {
			next.Config.Webhook, changed = c.Webhook, append(changed, "webhook")
		}
		if c.NATS != nil {
			next.Config.NATS, changed = c.NATS, append(changed, "nats")
		}
		if c.Kafka != nil {
			next.Config.Kafka, changed = c.Kafka, append(changed, "kafka")
		}
		if c.State != "" && c.State != t.State {
			next.State, changed = c.State, append(changed, "state")
		}
		if err := next.validate(); err != nil {
			return nil, "", err
		}
		secret := ""
		bearerWas := t.Config.Webhook != nil && t.Config.Webhook.Verify == VerifyBearer
		bearerIs := next.Config.Webhook != nil && next.Config.Webhook.Verify == VerifyBearer
		if c.RotateSecret || bearerWas != bearerIs {
			// A secret kept as a hash cannot serve as an HMAC key, nor the
			// other way round: changing to or from bearer makes a new one.
			if next.Kind != TriggerWebhook {
				return nil, "", &FieldError{Field: "rotate_secret", Reason: "only webhooks have a secret"}
			}
			secret = c.Secret
			if secret == "" {
				secret = NewSecret()
			} else if err := validSecret(secret); err != nil {
				return nil, "", err
			}
			next.Secret = ts.storedSecret(&next, secret)
			changed = append(changed, "secret")
		}
		if len(changed) == 0 {
			return t, "", nil // nothing changes, nothing to record
		}
		next.UpdatedAt = ts.now()
		next.Version = t.Version + 1
		ev, err := (&Admin{}).event(by, AdminTriggerUpdated, tenantID, triggerData(&next, map[string]any{"changed": changed}), next.UpdatedAt)
		if err != nil {
			return nil, "", err
		}
		cas := next
		cas.Version = t.Version
		err = ts.Store.UpdateTrigger(ctx, &cas, ev)
		if errors.Is(err, ErrConflict) && try < 3 {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		ts.changed()
		return &next, secret, nil
	}
}

// Delete removes a trigger and records it. Errors: *ForbiddenError,
// ErrNotFound.
func (ts *Triggers) Delete(ctx context.Context, by *Principal, tenantID, name string) error {
	if err := by.Authorize(ActionTriggersWrite, tenantID); err != nil {
		return err
	}
	t, err := ts.Store.GetTrigger(ctx, tenantID, name)
	if err != nil {
		return err
	}
	ev, err := (&Admin{}).event(by, AdminTriggerDeleted, tenantID, triggerData(t, nil), ts.now())
	if err != nil {
		return err
	}
	if err := ts.Store.DeleteTrigger(ctx, tenantID, name, ev); err != nil {
		return err
	}
	ts.changed()
	return nil
}

// Lookup returns an enabled trigger for a receiver, which has no principal
// (a webhook's signature is its credential): ErrNotFound for a trigger that
// does not exist, is disabled, or is of another kind, alike.
func (ts *Triggers) Lookup(ctx context.Context, tenantID, name string, kind TriggerKind) (*Trigger, error) {
	t, err := ts.Store.GetTrigger(ctx, tenantID, name)
	if err != nil {
		return nil, err
	}
	if t.Kind != kind || t.State != TriggerEnabled {
		return nil, fmt.Errorf("%s %s: %w", kind, name, ErrNotFound)
	}
	if t.Secret, err = ts.Sealer.Open(t.Secret, t.TenantID+"/"+t.Name); err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	return t, nil
}

// unknownWorkflow is the refusal of a reference to a workflow (version)
// that is not stored.
func unknownWorkflow(ref, name string, version int) error {
	what := "no workflow " + name
	if version > 0 {
		what = fmt.Sprintf("workflow %s has no version %d", name, version)
	}
	return &FieldError{Field: "workflow", Reason: fmt.Sprintf("%q: %s", ref, what)}
}

// checkWorkflow refuses a reference of a trigger being made or changed
// to a workflow, version or alias that is not stored. Errors: *FieldError
// naming workflow.
func (ts *Triggers) checkWorkflow(ctx context.Context, tenantID, ref string) error {
	r, err := ParseWorkflowRef("workflow", ref)
	if err != nil {
		return err
	}
	if r.Alias != "" {
		if _, err := ts.Engine.lookupAlias(ctx, tenantID, r.Name, r.Alias); errors.Is(err, ErrNotFound) {
			return &FieldError{Field: "workflow", Reason: fmt.Sprintf("%q: workflow %s has no alias %s", ref, r.Name, r.Alias)}
		} else if err != nil {
			return err
		}
		return nil
	}
	if _, err := ts.Engine.store.GetDefinition(ctx, tenantID, r.Name, r.Version); errors.Is(err, ErrNotFound) {
		return unknownWorkflow(ref, r.Name, r.Version)
	} else if err != nil {
		return err
	}
	return nil
}

// IdempotencyKey is the key a trigger's run for the message ref is
// started with: a repeat of ref (a redelivery, a retried webhook) returns
// the first run.
func (t *Trigger) IdempotencyKey(ref string) string {
	return "trigger:" + t.ID + ":" + ref
}

// Fire starts the run of a message that t received, once: the run's input
// is built by t's template, its origin names t and msg.Ref, and a message
// whose Ref was seen before returns the run the first one started
// (replayed true). It returns once the run is durable. Errors: *FieldError
// (the body, a template field), *FieldError workflow (the definition is
// gone), and StartRunIdempotent's.
func (ts *Triggers) Fire(ctx context.Context, t *Trigger, msg *TriggerMessage) (*Run, bool, error) {
	if len(msg.Ref) > MaxOriginRef {
		return nil, false, &FieldError{Field: "ref", Reason: fmt.Sprintf("%d bytes, at most %d", len(msg.Ref), MaxOriginRef)}
	}
	input, err := t.BuildInput(msg)
	if err != nil {
		return nil, false, err
	}
	r, err := ParseWorkflowRef("workflow", t.Workflow)
	if err != nil {
		return nil, false, err
	}
	name := r.Name
	if r.Alias != "" {
		// The start picks the alias's version, by the run's id or the
		// alias's sticky key over the input.
		name = t.Workflow
	}
	req := StartRequest{TenantID: t.TenantID, Workflow: name, Version: r.Version, Input: input,
		By:     By("trigger:" + string(t.Kind) + ":" + t.Name),
		Origin: &Origin{Kind: t.Kind.originKind(), ID: t.Name, Ref: msg.Ref}}
	if msg.Ref != "" {
		// The key alone identifies the message: a repeat with another body
		// (a sender that re-signs) is still a repeat.
		req.IdempotencyKey = t.IdempotencyKey(msg.Ref)
		req.RequestHash = req.IdempotencyKey
	}
	run, replayed, err := ts.Engine.StartRunIdempotent(ctx, req)
	if errors.Is(err, ErrNotFound) {
		// The start reads the definition anyway: a workflow gone since the
		// trigger was made is found out there, without a read of its own.
		return nil, false, unknownWorkflow(t.Workflow, name, r.Version)
	}
	return run, replayed, err
}
