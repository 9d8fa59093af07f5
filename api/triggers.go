package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// Triggers: webhooks under /api/v1/tenants/{tenantId}/webhooks, stream
// triggers (NATS, Kafka) under .../triggers, and the webhook receiver
// (webhook.go). engine.Triggers checks the caller again, makes the change
// and records it in the admin log in the same write.

func (s *Server) triggerRoutes() []route {
	const hooks, streams = "/api/v1/tenants/:tenantId/webhooks", "/api/v1/tenants/:tenantId/triggers"
	return []route{
		{"POST", hooks, PermTriggersWrite, "create", s.createTrigger(false), 0},
		{"GET", hooks, PermTriggersRead, "list", s.listTriggers(false), 0},
		{"GET", hooks + "/:name", PermTriggersRead, "get", s.getTrigger(false), 0},
		{"PATCH", hooks + "/:name", PermTriggersWrite, "update", s.updateTrigger(false), 0},
		{"DELETE", hooks + "/:name", PermTriggersWrite, "delete", s.deleteTrigger(false), 0},
		{"POST", hooks + "/:name/deliveries", PermSigned, "deliver", s.receiveWebhook, 0},
		{"POST", streams, PermTriggersWrite, "create", s.createTrigger(true), 0},
		{"GET", streams, PermTriggersRead, "list", s.listTriggers(true), 0},
		{"GET", streams + "/:name", PermTriggersRead, "get", s.getTrigger(true), 0},
		{"PATCH", streams + "/:name", PermTriggersWrite, "update", s.updateTrigger(true), 0},
		{"DELETE", streams + "/:name", PermTriggersWrite, "delete", s.deleteTrigger(true), 0},
	}
}

// triggers returns what the trigger routes act through, or a 404 on a
// server without triggers.
func (s *Server) triggers() (*engine.Triggers, error) {
	if s.Triggers == nil {
		return nil, newProblem(http.StatusNotFound, wire.CodeNotFound, "this server has no triggers")
	}
	return s.Triggers, nil
}

// collection is what a route's path calls its triggers.
func collection(stream bool) string {
	if stream {
		return "triggers"
	}
	return "webhooks"
}

// ofCollection reports whether t is served under the route's collection:
// webhooks under webhooks, stream triggers under triggers.
func ofCollection(t *engine.Trigger, stream bool) bool { return t.Kind.Stream() == stream }

func triggerNotFound(stream bool, name string) *Problem {
	what := "webhook"
	if stream {
		what = "trigger"
	}
	return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("no %s %q", what, name))
}

func (s *Server) wireTrigger(t *engine.Trigger, secret string) wire.Trigger {
	w := wire.Trigger{ID: t.ID, Name: t.Name, Kind: string(t.Kind), Workflow: t.Workflow, Input: t.Config.Input,
		State: string(t.State), Version: t.Version, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Secret: secret}
	if c := t.Config.Webhook; c != nil {
		w.Webhook = &wire.WebhookConfig{Verify: c.Verify, SignatureHeader: c.SignatureHeader, DeliveryHeader: c.DeliveryHeader}
		w.URL = "/api/v1/tenants/" + t.TenantID + "/webhooks/" + t.Name + "/deliveries"
	}
	if c := t.Config.NATS; c != nil {
		w.NATS = &wire.NATSConfig{Servers: c.Servers, Stream: c.Stream, Subject: c.Subject, Durable: c.Durable, AckWait: c.AckWait}
	}
	if c := t.Config.Kafka; c != nil {
		w.Kafka = &wire.KafkaConfig{Brokers: c.Brokers, Topic: c.Topic, Group: c.Group}
	}
	if t.Kind.Stream() {
		if st := s.Triggers.Status(t.TenantID, t.Name); st != nil {
			w.Status = &wire.TriggerStatus{Connected: st.Connected, Lag: st.Lag, LastError: st.LastError,
				LastErrorAt: st.LastErrorAt, Messages: st.Messages, RunsStarted: st.RunsStarted, Errors: st.Errors}
		}
	}
	return w
}

func engineWebhook(c *wire.WebhookConfig) *engine.WebhookConfig {
	if c == nil {
		return nil
	}
	return &engine.WebhookConfig{Verify: c.Verify, SignatureHeader: c.SignatureHeader, DeliveryHeader: c.DeliveryHeader}
}

func engineNATS(c *wire.NATSConfig) *engine.NATSConfig {
	if c == nil {
		return nil
	}
	return &engine.NATSConfig{Servers: c.Servers, Stream: c.Stream, Subject: c.Subject, Durable: c.Durable, AckWait: c.AckWait}
}

func engineKafka(c *wire.KafkaConfig) *engine.KafkaConfig {
	if c == nil {
		return nil
	}
	return &engine.KafkaConfig{Brokers: c.Brokers, Topic: c.Topic, Group: c.Group}
}

// createTrigger serves POST .../webhooks and .../triggers: 201 with the
// trigger (and a webhook's secret, this once), 409 when the name is taken.
func (s *Server) createTrigger(stream bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
		ts, err := s.triggers()
		if err != nil {
			return err
		}
		body, err := s.readBody(r)
		if err != nil {
			return err
		}
		var req wire.CreateTriggerRequest
		if err := decodeStrict(body, &req); err != nil {
			return err
		}
		kind := engine.TriggerKind(req.Kind)
		switch {
		case !stream && req.Kind == "":
			kind = engine.TriggerWebhook
		case !stream && kind != engine.TriggerWebhook:
			return fieldProblem("kind", fmt.Sprintf("%q: webhooks are of kind webhook; stream triggers (nats, kafka) are made under .../triggers", req.Kind))
		case stream && req.Kind == "":
			return fieldProblem("kind", "required: nats or kafka")
		case stream && !kind.Stream():
			return fieldProblem("kind", fmt.Sprintf("%q: want nats or kafka (webhooks are made under .../webhooks)", req.Kind))
		}
		if req.Name == "" {
			return fieldProblem("name", "required: [A-Za-z0-9_.-]{1,64}")
		}
		if req.Workflow == "" {
			return fieldProblem("workflow", "required: name, name@VERSION or name@ALIAS")
		}
		tenant := TenantFrom(r.Context())
		t, secret, err := ts.Create(r.Context(), principalOf(r), engine.TriggerRequest{TenantID: tenant, Name: req.Name,
			Kind: kind, Workflow: req.Workflow, State: engine.TriggerState(req.State), Secret: req.Secret,
			Config: engine.TriggerConfig{Input: nullIsNone(req.Input), Webhook: engineWebhook(req.Webhook),
				NATS: engineNATS(req.NATS), Kafka: engineKafka(req.Kafka)}})
		if errors.Is(err, engine.ErrConflict) {
			return newProblem(http.StatusConflict, wire.CodeConflict, fmt.Sprintf("tenant %s has a trigger named %q already", tenant, req.Name))
		}
		if err != nil {
			return tenantNotFound(err, tenant)
		}
		w.Header().Set("Location", "/api/v1/tenants/"+tenant+"/"+collection(stream)+"/"+t.Name)
		writeJSON(w, http.StatusCreated, s.wireTrigger(t, secret))
		return nil
	}
}

func nullIsNone(b []byte) []byte {
	if string(b) == "null" {
		return nil
	}
	return b
}

// listTriggers serves GET .../webhooks and .../triggers: the collection's
// triggers by name.
func (s *Server) listTriggers(stream bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
		ts, err := s.triggers()
		if err != nil {
			return err
		}
		if err := onlyParams(r.URL.Query()); err != nil {
			return err
		}
		list, err := ts.List(r.Context(), principalOf(r), TenantFrom(r.Context()))
		if err != nil {
			return err
		}
		page := wire.TriggersPage{Triggers: []wire.Trigger{}}
		for i := range list {
			if ofCollection(&list[i], stream) {
				page.Triggers = append(page.Triggers, s.wireTrigger(&list[i], ""))
			}
		}
		writeJSON(w, http.StatusOK, page)
		return nil
	}
}

// findTrigger reads the trigger a path names, 404 when there is none in the
// route's collection.
func (s *Server) findTrigger(r *http.Request, p httprouter.Params, stream bool) (*engine.Triggers, *engine.Trigger, error) {
	ts, err := s.triggers()
	if err != nil {
		return nil, nil, err
	}
	name := p.ByName("name")
	t, err := ts.Get(r.Context(), principalOf(r), TenantFrom(r.Context()), name)
	if errors.Is(err, engine.ErrNotFound) || (err == nil && !ofCollection(t, stream)) {
		return nil, nil, triggerNotFound(stream, name)
	}
	return ts, t, err
}

// getTrigger serves GET .../webhooks/{name} and .../triggers/{name}, with
// a stream trigger's status.
func (s *Server) getTrigger(stream bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
		if err := onlyParams(r.URL.Query()); err != nil {
			return err
		}
		_, t, err := s.findTrigger(r, p, stream)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.wireTrigger(t, ""))
		return nil
	}
}

// updateTrigger serves PATCH .../webhooks/{name} and .../triggers/{name}.
func (s *Server) updateTrigger(stream bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
		body, err := s.readBody(r)
		if err != nil {
			return err
		}
		var req wire.UpdateTriggerRequest
		if err := decodeStrict(body, &req); err != nil {
			return err
		}
		ts, t, err := s.findTrigger(r, p, stream)
		if err != nil {
			return err
		}
		c := engine.TriggerChange{Workflow: req.Workflow, State: engine.TriggerState(req.State), RotateSecret: req.RotateSecret,
			Secret: req.Secret, Webhook: engineWebhook(req.Webhook), NATS: engineNATS(req.NATS), Kafka: engineKafka(req.Kafka)}
		if req.Input != nil {
			in := json.RawMessage(nullIsNone(req.Input))
			c.Input = &in
		}
		next, secret, err := ts.Update(r.Context(), principalOf(r), t.TenantID, t.Name, c)
		if errors.Is(err, engine.ErrNotFound) {
			return triggerNotFound(stream, t.Name)
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.wireTrigger(next, secret))
		return nil
	}
}

// deleteTrigger serves DELETE .../webhooks/{name} and .../triggers/{name}:
// 204; a stream trigger's consumer stops.
func (s *Server) deleteTrigger(stream bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
		ts, t, err := s.findTrigger(r, p, stream)
		if err != nil {
			return err
		}
		if err := ts.Delete(r.Context(), principalOf(r), t.TenantID, t.Name); errors.Is(err, engine.ErrNotFound) {
			return triggerNotFound(stream, t.Name)
		} else if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}
