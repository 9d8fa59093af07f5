package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/triggers/webhook"
)

const hookDef = `{"name":"onpush","tasks":[{"id":"t1","type":"noop"}]}`

// newHookServer is a server with the definition onpush registered.
func newHookServer(t *testing.T, opts serverOptions) *testServer {
	t.Helper()
	ts := newServer(t, opts)
	if _, _, err := ts.Engine.RegisterDefinition(context.Background(), "default", []byte(hookDef)); err != nil {
		t.Fatal(err)
	}
	return ts
}

// createHook creates a webhook through the API and returns it with its secret.
func (ts *testServer) createHook(t *testing.T, body string) wire.Trigger {
	t.Helper()
	var tr wire.Trigger
	decodeJSON(t, ts.postJSON(t, "/api/v1/tenants/default/webhooks", body), http.StatusCreated, &tr)
	return tr
}

// deliver posts a delivery with the given headers.
func (ts *testServer) deliver(t *testing.T, path, body string, hdr map[string]string) *response {
	t.Helper()
	return ts.request(t, "POST", path, body, hdr)
}

func githubHeaders(secret, body, delivery string) map[string]string {
	return map[string]string{"Content-Type": typeJSON, "X-Hub-Signature-256": "sha256=" + webhook.Sign(secret, []byte(body)),
		"X-GitHub-Delivery": delivery, "X-GitHub-Event": "push"}
}

func TestWebhooks_CreateShowsTheSecretOnceAndAuditsEveryChange(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newHookServer(t, serverOptions{Access: true})
	tr := ts.createHook(t, `{"name":"gh","workflow":"onpush","webhook":{"verify":"github","delivery_header":"X-GitHub-Delivery"},
		"input":{"repo":"${/body/repository/full_name}","event":"${/headers/X-GitHub-Event}"}}`)
	is.Equal(len(tr.Secret), 64)                                                           // a random secret, shown at create
	is.Equal(tr.Kind, "webhook")                                                           // kind defaults to webhook
	is.Equal(tr.State, "enabled")                                                          // and state to enabled
	is.Equal(tr.URL, "/api/v1/tenants/default/webhooks/gh/deliveries")                     // where to deliver
	is.Equal(tr.Version, int64(1))                                                         //
	r := ts.get(t, "/api/v1/tenants/default/webhooks/gh")                                  //
	is.Equal(r.Status, http.StatusOK)                                                      //
	is.True(!strings.Contains(string(r.Body), tr.Secret))                                  // never shown again
	is.True(!strings.Contains(string(r.Body), `"secret"`))                                 //
	var page wire.TriggersPage                                                             //
	ts.getJSON(t, "/api/v1/tenants/default/webhooks", &page)                               //
	is.Equal(len(page.Triggers), 1)                                                        // listed
	is.Equal(page.Triggers[0].Secret, "")                                                  // without the secret
	ts.getJSON(t, "/api/v1/tenants/default/triggers", &page)                               //
	is.Equal(len(page.Triggers), 0)                                                        // webhooks are not stream triggers
	problemOf(t, ts.get(t, "/api/v1/tenants/default/triggers/gh"), 404, wire.CodeNotFound) // nor found there

	var up wire.Trigger
	decodeJSON(t, ts.request(t, "PATCH", "/api/v1/tenants/default/webhooks/gh", `{"state":"disabled","rotate_secret":true}`,
		map[string]string{"Content-Type": typeJSON}), http.StatusOK, &up)
	is.Equal(up.State, "disabled")  // changed
	is.Equal(up.Version, int64(2))  // as the next version
	is.True(up.Secret != tr.Secret) // a new secret, shown once
	is.Equal(len(up.Secret), 64)    //
	problemOf(t, ts.request(t, "POST", "/api/v1/tenants/default/webhooks", `{"name":"gh","workflow":"onpush","webhook":{"verify":"github"}}`,
		map[string]string{"Content-Type": typeJSON}), http.StatusConflict, wire.CodeConflict) // the name is taken
	r = ts.request(t, "DELETE", "/api/v1/tenants/default/webhooks/gh", "", nil)
	is.Equal(r.Status, http.StatusNoContent)                                               // deleted
	problemOf(t, ts.get(t, "/api/v1/tenants/default/webhooks/gh"), 404, wire.CodeNotFound) // gone

	log, err := ts.DB.ListAdmin(context.Background(), engine.AdminFilter{TenantID: "default"})
	is.NoErr(err)
	var actions []string
	for _, e := range log {
		actions = append(actions, string(e.Action))
		is.True(!strings.Contains(string(e.Data), tr.Secret) && !strings.Contains(string(e.Data), up.Secret)) // no secret in the log
		is.Equal(e.Actor, "local")                                                                            // the caller
	}
	is.Equal(actions, []string{"trigger.created", "trigger.updated", "trigger.deleted"}) // every change, once
	var data struct{ Changed []string }
	is.NoErr(json.Unmarshal(log[1].Data, &data))
	is.Equal(data.Changed, []string{"state", "secret"}) // the update names what changed
}

func TestWebhooks_BadConfigurationIsRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	ts := newHookServer(t, serverOptions{})
	for _, c := range []struct{ name, body, field string }{
		{"unknown kind", `{"name":"a","kind":"smtp","workflow":"onpush","webhook":{"verify":"github"}}`, "kind"},
		{"a stream kind", `{"name":"a","kind":"nats","workflow":"onpush","webhook":{"verify":"github"}}`, "kind"},
		{"no name", `{"workflow":"onpush","webhook":{"verify":"github"}}`, "name"},
		{"a bad name", `{"name":"a b","workflow":"onpush","webhook":{"verify":"github"}}`, "name"},
		{"no workflow", `{"name":"a","webhook":{"verify":"github"}}`, "workflow"},
		{"an unknown workflow", `{"name":"a","workflow":"nope","webhook":{"verify":"github"}}`, "workflow"},
		{"an unknown version", `{"name":"a","workflow":"onpush@7","webhook":{"verify":"github"}}`, "workflow"},
		{"a bad reference", `{"name":"a","workflow":"on push@","webhook":{"verify":"github"}}`, "workflow"},
		{"no webhook block", `{"name":"a","workflow":"onpush"}`, "webhook"},
		{"another kind's block", `{"name":"a","workflow":"onpush","webhook":{"verify":"github"},"kafka":{"brokers":["h:1"],"topic":"t"}}`, "kafka"},
		{"an unknown verification", `{"name":"a","workflow":"onpush","webhook":{"verify":"md5"}}`, "webhook.verify"},
		{"a bad delivery header", `{"name":"a","workflow":"onpush","webhook":{"verify":"github","delivery_header":"X Id"}}`, "webhook.delivery_header"},
		{"a template pointing nowhere", `{"name":"a","workflow":"onpush","webhook":{"verify":"github"},"input":{"x":"${/nowhere}"}}`, "input.x"},
		{"a bad pointer escape", `{"name":"a","workflow":"onpush","webhook":{"verify":"github"},"input":{"x":["${/body/a~2}"]}}`, "input.x[0]"},
		{"a short secret", `{"name":"a","workflow":"onpush","webhook":{"verify":"github"},"secret":"short"}`, "secret"},
		{"an unknown field", `{"name":"a","workflow":"onpush","webhook":{"verify":"github","tolerance":"1h"}}`, "webhook.tolerance"},
		{"a bad state", `{"name":"a","workflow":"onpush","webhook":{"verify":"github"},"state":"paused"}`, "state"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			before := ts.writes(t)
			p := problemOf(t, ts.postJSON(t, "/api/v1/tenants/default/webhooks", c.body), http.StatusBadRequest, wire.CodeInvalidRequest)
			is.Equal(fieldOf(t, p), c.field) // names the field
			is.Equal(ts.writes(t), before)   // and writes nothing
		})
	}
}

func TestWebhooks_GitHubDeliveryStartsOneDurableRunPerDeliveryID(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newHookServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired})
	tr := ts.createHookAs(t, `{"name":"gh","workflow":"onpush@1","webhook":{"verify":"github","delivery_header":"X-GitHub-Delivery"},
		"input":{"repo":"${/body/repository/full_name}","event":"${/headers/X-GitHub-Event}","ref":"${/query/ref}","n":"${/body/n}"}}`)
	body := `{"repository":{"full_name":"acme/app"},"n":12345678901234567890}`
	// No API key: the signature is the credential.
	r := ts.deliver(t, tr.URL+"?ref=main", body, githubHeaders(tr.Secret, body, "d-1"))
	var d wire.Delivery
	decodeJSON(t, r, http.StatusCreated, &d)
	is.Equal(d.Workflow, "onpush") // the webhook's workflow
	is.Equal(d.Version, 1)         // at the version it names
	is.True(!d.Replayed)           // a first delivery
	run, _, err := ts.DB.LoadRun(context.Background(), "default", d.RunID)
	is.NoErr(err)                                                                                           // durable once answered
	is.Equal(string(run.Input), `{"event":"push","n":12345678901234567890,"ref":"main","repo":"acme/app"}`) // built by the template, numbers exact
	is.Equal(*run.Origin, engine.Origin{Kind: engine.OriginWebhook, ID: "gh", Ref: "d-1"})                  // the origin names webhook and delivery

	// A repeat of the delivery id (GitHub's redelivery) returns the same run.
	r = ts.deliver(t, tr.URL+"?ref=main", body, githubHeaders(tr.Secret, body, "d-1"))
	var again wire.Delivery
	decodeJSON(t, r, http.StatusOK, &again)
	is.Equal(again.RunID, d.RunID)                        // the same run
	is.True(again.Replayed)                               //
	is.Equal(r.Header.Get("Idempotent-Replayed"), "true") //
	r = ts.deliver(t, tr.URL+"?ref=main", body, githubHeaders(tr.Secret, body, "d-2"))
	decodeJSON(t, r, http.StatusCreated, &again)
	is.True(again.RunID != d.RunID) // another delivery, another run

	var page struct {
		Runs []struct {
			ID     string         `json:"id"`
			Origin *engine.Origin `json:"origin"`
		} `json:"runs"`
	}
	decodeJSON(t, ts.request(t, "GET", "/api/v1/tenants/default/workflows?origin_kind=webhook&origin_id=gh", "", bearer(ts.ownerKey(t))), http.StatusOK, &page)
	is.Equal(len(page.Runs), 2) // the runs list finds both by origin
}

// createHookAs creates a webhook with an owner key (for servers that
// require keys).
func (ts *testServer) createHookAs(t *testing.T, body string) wire.Trigger {
	t.Helper()
	var tr wire.Trigger
	decodeJSON(t, ts.request(t, "POST", "/api/v1/tenants/default/webhooks", body, bearer(ts.ownerKey(t))), http.StatusCreated, &tr)
	return tr
}

func (ts *testServer) ownerKey(t *testing.T) string {
	t.Helper()
	_, token := ts.newKey(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleOwner, Name: fmt.Sprintf("o%d", time.Now().UnixNano())})
	return token
}

func TestWebhooks_RefusedDeliveriesWriteNothing(t *testing.T) {
	t.Parallel()
	ts := newHookServer(t, serverOptions{MaxBodyBytes: 4 << 20})
	tr := ts.createHook(t, `{"name":"gh","workflow":"onpush","webhook":{"verify":"github","delivery_header":"X-GitHub-Delivery"},
		"input":{"repo":"${/body/repository/full_name}"}}`)
	off := ts.createHook(t, `{"name":"off","workflow":"onpush","state":"disabled","webhook":{"verify":"github"}}`)
	body := `{"repository":{"full_name":"acme/app"}}`
	big := `{"x":"` + strings.Repeat("a", api.MaxWebhookBody) + `"}`
	noRepo := `{"repository":{}}`
	for _, c := range []struct {
		name, path, body string
		hdr              map[string]string
		status           int
		code, field      string
	}{
		{"a wrong signature", tr.URL, body, githubHeaders("not-the-secret-at-all", body, "d"), 401, wire.CodeUnauthenticated, ""},
		{"a signature of another body", tr.URL, body, githubHeaders(tr.Secret, body+" ", "d"), 401, wire.CodeUnauthenticated, ""},
		{"no signature", tr.URL, body, map[string]string{"X-GitHub-Delivery": "d"}, 401, wire.CodeUnauthenticated, ""},
		{"a malformed signature", tr.URL, body, map[string]string{"X-Hub-Signature-256": "md5=00", "X-GitHub-Delivery": "d"}, 401, wire.CodeUnauthenticated, ""},
		{"an oversized body", tr.URL, big, githubHeaders(tr.Secret, big, "d"), 413, wire.CodeBodyTooLarge, ""},
		{"a missing template field", tr.URL, noRepo, githubHeaders(tr.Secret, noRepo, "d"), 400, wire.CodeInvalidRequest, "input.repo"},
		{"a body that is not JSON", tr.URL, "a=b", githubHeaders(tr.Secret, "a=b", "d"), 400, wire.CodeInvalidRequest, "body"},
		{"no delivery id", tr.URL, body, githubHeaders(tr.Secret, body, ""), 400, wire.CodeInvalidRequest, "X-GitHub-Delivery"},
		{"an unknown webhook", "/api/v1/tenants/default/webhooks/nope/deliveries", body, githubHeaders(tr.Secret, body, "d"), 404, wire.CodeNotFound, ""},
		{"a disabled webhook", off.URL, body, githubHeaders(off.Secret, body, "d"), 404, wire.CodeNotFound, ""},
		{"an unregistered tenant", "/api/v1/tenants/nobody/webhooks/gh/deliveries", body, githubHeaders(tr.Secret, body, "d"), 404, wire.CodeNotFound, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			before := ts.writes(t)
			p := problemOf(t, ts.deliver(t, c.path, c.body, c.hdr), c.status, c.code)
			if c.field != "" {
				is.Equal(fieldOf(t, p), c.field) // names the field
			}
			is.Equal(ts.writes(t), before) // nothing written, nothing started
		})
	}
}

func TestWebhooks_StripeSignatureHoldsWithinTheTolerance(t *testing.T) {
	t.Parallel()
	ts := newHookServer(t, serverOptions{})
	tr := ts.createHook(t, `{"name":"st","workflow":"onpush","secret":"whsec_0123456789abcdef","webhook":{"verify":"stripe"}}`)
	body := `{"id":"evt_1","type":"charge.succeeded"}`
	sign := func(at time.Time, secret string) map[string]string {
		return map[string]string{"Stripe-Signature": "t=" + strconv.FormatInt(at.Unix(), 10) + ",v1=00ff,v1=" +
			webhook.SignStripe(secret, at.Unix(), []byte(body))}
	}
	is := is.New(t)
	is.Equal(tr.Secret, "whsec_0123456789abcdef") // the secret given is kept
	var d wire.Delivery
	decodeJSON(t, ts.deliver(t, tr.URL, body, sign(time.Now(), tr.Secret)), http.StatusCreated, &d) // a fresh signature, one of two v1
	run, _, err := ts.DB.LoadRun(context.Background(), "default", d.RunID)
	is.NoErr(err)
	is.Equal(string(run.Input), body) // without a template the body is the input
	_, err = ts.Engine.Wait(context.Background(), "default", d.RunID)
	is.NoErr(err) // the run is done writing
	before := ts.writes(t)
	for name, hdr := range map[string]map[string]string{
		"six minutes old":   sign(time.Now().Add(-6*time.Minute), tr.Secret),
		"six minutes ahead": sign(time.Now().Add(6*time.Minute), tr.Secret),
		"another secret":    sign(time.Now(), "whsec_another_secret_x"),
		"no t":              {"Stripe-Signature": "v1=" + webhook.SignStripe(tr.Secret, time.Now().Unix(), []byte(body))},
	} {
		p := problemOf(t, ts.deliver(t, tr.URL, body, hdr), http.StatusUnauthorized, wire.CodeUnauthenticated)
		is.True(strings.Contains(p.Detail, "Stripe-Signature")) // names the header
		_ = name
	}
	is.Equal(ts.writes(t), before) // a replay writes nothing
}

func TestWebhooks_BearerSecretIsStoredHashedAndChecked(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newHookServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired})
	tr := ts.createHookAs(t, `{"name":"b","workflow":"onpush","webhook":{"verify":"bearer"}}`)
	stored, err := ts.DB.GetTrigger(context.Background(), "default", "b")
	is.NoErr(err)
	is.Equal(stored.Secret, engine.HashSecret(tr.Secret)) // only the hash is kept
	// The webhook's bearer secret is not an API key: the route reads none.
	var d wire.Delivery
	decodeJSON(t, ts.deliver(t, tr.URL, `{"a":1}`, map[string]string{"Authorization": "Bearer " + tr.Secret}), http.StatusCreated, &d) // accepted
	_, err = ts.Engine.Wait(context.Background(), "default", d.RunID)
	is.NoErr(err) // the run is done writing
	before := ts.writes(t)
	problemOf(t, ts.deliver(t, tr.URL, `{"a":1}`, map[string]string{"Authorization": "Bearer " + tr.Secret + "x"}), 401, wire.CodeUnauthenticated) // a wrong secret
	problemOf(t, ts.deliver(t, tr.URL, `{"a":1}`, bearer(ts.ownerKey(t))), 401, wire.CodeUnauthenticated)                                          // an API key is no webhook secret
	is.Equal(ts.writes(t)-1, before)                                                                                                               // nothing but the key made for the test
}

func TestTriggers_StreamTriggersAreCheckedAndListedApartFromWebhooks(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newHookServer(t, serverOptions{})
	ts.Triggers.StatusFunc = func(tenant, name string) *engine.TriggerStatus {
		return &engine.TriggerStatus{Connected: true, Lag: 7, Messages: 3, RunsStarted: 2, Errors: 1, LastError: "body: must be JSON"}
	}
	var tr wire.Trigger
	decodeJSON(t, ts.postJSON(t, "/api/v1/tenants/default/triggers", `{"name":"orders","kind":"nats","workflow":"onpush",
		"nats":{"servers":["nats://127.0.0.1:4222"],"stream":"ORDERS","subject":"orders.*","ack_wait":"5s"}}`), http.StatusCreated, &tr)
	is.Equal(tr.Secret, "")                                                                                                                    // streams have no secret
	is.Equal(tr.NATS.AckWait, "5s")                                                                                                            //
	is.Equal(*tr.Status, wire.TriggerStatus{Connected: true, Lag: 7, Messages: 3, RunsStarted: 2, Errors: 1, LastError: "body: must be JSON"}) // the consumer's state
	decodeJSON(t, ts.postJSON(t, "/api/v1/tenants/default/triggers", `{"name":"clicks","kind":"kafka","workflow":"onpush",
		"kafka":{"brokers":["127.0.0.1:9092"],"topic":"clicks"}}`), http.StatusCreated, &tr)
	var page wire.TriggersPage
	ts.getJSON(t, "/api/v1/tenants/default/triggers", &page)
	is.Equal(len(page.Triggers), 2)                                                                                      // both
	is.Equal(page.Triggers[0].Name, "clicks")                                                                            // by name
	ts.getJSON(t, "/api/v1/tenants/default/webhooks", &page)                                                             //
	is.Equal(len(page.Triggers), 0)                                                                                      // no webhook among them
	problemOf(t, ts.get(t, "/api/v1/tenants/default/webhooks/orders"), 404, wire.CodeNotFound)                           // nor under webhooks
	problemOf(t, ts.deliver(t, "/api/v1/tenants/default/webhooks/orders/deliveries", `{}`, nil), 404, wire.CodeNotFound) // nor deliverable

	for _, c := range []struct{ name, body, field string }{
		{"no kind", `{"name":"a","workflow":"onpush","nats":{"servers":["nats://h:1"],"stream":"S"}}`, "kind"},
		{"the webhook kind", `{"name":"a","kind":"webhook","workflow":"onpush","webhook":{"verify":"github"}}`, "kind"},
		{"an unknown kind", `{"name":"a","kind":"sqs","workflow":"onpush"}`, "kind"},
		{"no servers", `{"name":"a","kind":"nats","workflow":"onpush","nats":{"servers":[],"stream":"S"}}`, "nats.servers"},
		{"an http server", `{"name":"a","kind":"nats","workflow":"onpush","nats":{"servers":["http://h:1"],"stream":"S"}}`, "nats.servers[0]"},
		{"no stream", `{"name":"a","kind":"nats","workflow":"onpush","nats":{"servers":["nats://h:1"]}}`, "nats.stream"},
		{"a bad subject", `{"name":"a","kind":"nats","workflow":"onpush","nats":{"servers":["nats://h:1"],"stream":"S","subject":"a..b"}}`, "nats.subject"},
		{"a bad ack wait", `{"name":"a","kind":"nats","workflow":"onpush","nats":{"servers":["nats://h:1"],"stream":"S","ack_wait":"2h"}}`, "nats.ack_wait"},
		{"a broker without port", `{"name":"a","kind":"kafka","workflow":"onpush","kafka":{"brokers":["h"],"topic":"t"}}`, "kafka.brokers[0]"},
		{"a bad topic", `{"name":"a","kind":"kafka","workflow":"onpush","kafka":{"brokers":["h:1"],"topic":"a b"}}`, "kafka.topic"},
		{"a query reference", `{"name":"a","kind":"kafka","workflow":"onpush","input":{"q":"${/query/x}"},"kafka":{"brokers":["h:1"],"topic":"t"}}`, "input.q"},
		{"a secret", `{"name":"a","kind":"kafka","workflow":"onpush","secret":"0123456789abcdef0","kafka":{"brokers":["h:1"],"topic":"t"}}`, "secret"},
		{"an unknown workflow", `{"name":"a","kind":"kafka","workflow":"nope@2","kafka":{"brokers":["h:1"],"topic":"t"}}`, "workflow"},
		{"an alias (not served yet)", `{"name":"a","kind":"kafka","workflow":"onpush@blue","kafka":{"brokers":["h:1"],"topic":"t"}}`, "workflow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			before := ts.writes(t)
			p := problemOf(t, ts.postJSON(t, "/api/v1/tenants/default/triggers", c.body), http.StatusBadRequest, wire.CodeInvalidRequest)
			is.Equal(fieldOf(t, p), c.field) // names the field
			is.Equal(ts.writes(t), before)   // and writes nothing
		})
	}
	p := problemOf(t, ts.request(t, "PATCH", "/api/v1/tenants/default/triggers/clicks", `{"rotate_secret":true}`,
		map[string]string{"Content-Type": typeJSON}), http.StatusBadRequest, wire.CodeInvalidRequest)
	is.Equal(fieldOf(t, p), "rotate_secret") // a stream trigger has no secret to rotate
	decodeJSON(t, ts.request(t, "PATCH", "/api/v1/tenants/default/triggers/clicks", `{"kafka":{"brokers":["h:2"],"topic":"t2"}}`,
		map[string]string{"Content-Type": typeJSON}), http.StatusOK, &tr)
	is.Equal(tr.Kafka.Topic, "t2") // the block replaced
	is.Equal(tr.Version, int64(2)) //
}

func TestWebhooks_DeliveryToAWorkflowNotStoredIsRefusedNamingIt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newHookServer(t, serverOptions{})
	// A trigger as an older server could have left it: its version is not stored.
	now := time.Now().UTC().Truncate(time.Microsecond)
	is.NoErr(ts.DB.CreateTrigger(context.Background(), &engine.Trigger{ID: "x1", TenantID: "default", Name: "old", Kind: engine.TriggerWebhook,
		Workflow: "onpush@9", Config: engine.TriggerConfig{Webhook: &engine.WebhookConfig{Verify: engine.VerifyBearer}},
		Secret: engine.HashSecret("0123456789abcdef"), State: engine.TriggerEnabled, Version: 1, CreatedAt: now, UpdatedAt: now},
		&engine.AdminEvent{At: now, Actor: "test", TenantID: "default", Action: engine.AdminTriggerCreated}))
	before := ts.writes(t)
	p := problemOf(t, ts.deliver(t, "/api/v1/tenants/default/webhooks/old/deliveries", `{}`,
		map[string]string{"Authorization": "Bearer 0123456789abcdef"}), http.StatusBadRequest, wire.CodeInvalidRequest)
	is.Equal(fieldOf(t, p), "workflow")                 // names the workflow
	is.True(strings.Contains(p.Detail, "no version 9")) // and what is missing
	is.Equal(ts.writes(t), before)                      // nothing started
}

// A webhook may name workflow@alias: it is checked when the webhook is
// made, and each delivery's run gets the version the alias picks, with the
// alias recorded.
func TestWebhooks_WorkflowByAlias(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newHookServer(t, serverOptions{})
	ctx := context.Background()
	_, _, err := ts.Engine.RegisterDefinition(ctx, "default", []byte(`{"name":"onpush","tasks":[{"id":"t2","type":"noop"}]}`))
	is.NoErr(err) // onpush v2
	p := problemOf(t, ts.postJSON(t, "/api/v1/tenants/default/webhooks", `{"name":"al","workflow":"onpush@live","webhook":{"verify":"bearer"}}`),
		http.StatusBadRequest, wire.CodeInvalidRequest)
	is.Equal(p.Errors[0].Field, "workflow") // an alias that does not exist is refused
	_, err = ts.Engine.SetAlias(ctx, engine.Caller{}, "default", "onpush", "live",
		engine.AliasSpec{Versions: []engine.AliasTarget{{Version: 1, Weight: 100}}})
	is.NoErr(err)
	tr := ts.createHook(t, `{"name":"al","workflow":"onpush@live","webhook":{"verify":"bearer"}}`)
	var d wire.Delivery
	decodeJSON(t, ts.deliver(t, tr.URL, `{"a":1}`, map[string]string{"Authorization": "Bearer " + tr.Secret, "Content-Type": typeJSON}),
		http.StatusCreated, &d)
	run, err := ts.Engine.GetRunRow(ctx, "default", d.RunID)
	is.NoErr(err)
	is.Equal(run.Version, 1)      // the alias's version, not the latest
	is.Equal(run.Alias, "live")   // recorded on the run
	is.Equal(run.Origin.ID, "al") // started by the webhook
}

// A delivery whose body is not UTF-8 or repeats a key is refused naming
// the body, and starts nothing: the body becomes the run's input as it is,
// and a run input is UTF-8 JSON that repeats no key (an answer holding it
// would not be JSON; encoding/json would read only the last of the keys).
func TestWebhooks_BodyThatIsNotStrictJSONIsRefused(t *testing.T) {
	t.Parallel()
	ts := newHookServer(t, serverOptions{})
	raw := ts.createHook(t, `{"name":"raw","workflow":"onpush","webhook":{"verify":"github"}}`)
	tpl := ts.createHook(t, `{"name":"tpl","workflow":"onpush","webhook":{"verify":"github"},"input":{"all":"${/body}"}}`)
	for _, c := range []struct{ name, body, field string }{
		{"not UTF-8", "{\"a\":\"\xff\xfe\"}", "body"},
		{"a key not UTF-8", "{\"\xff\":1}", "body"},
		{"a repeated key", `{"a":1,"a":2}`, "body.a"},
		{"a repeated key deeper", `{"x":[{"b":1},{"c":{"d":1,"d":2}}]}`, "body.x[1].c.d"},
	} {
		for _, tr := range []wire.Trigger{raw, tpl} {
			t.Run(tr.Name+"/"+c.name, func(t *testing.T) {
				is := is.New(t)
				before := ts.writes(t)
				p := problemOf(t, ts.deliver(t, tr.URL, c.body, githubHeaders(tr.Secret, c.body, "")), http.StatusBadRequest, wire.CodeInvalidRequest)
				is.Equal(fieldOf(t, p), c.field) // names the field
				is.Equal(ts.writes(t), before)   // and starts nothing
			})
		}
	}
	r := ts.deliver(t, raw.URL, `{"a":{"b":1},"c":[{"b":2}]}`, githubHeaders(raw.Secret, `{"a":{"b":1},"c":[{"b":2}]}`, ""))
	is.New(t).Equal(r.Status, http.StatusCreated) // the same key in different objects is fine
}
