package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/triggers/webhook"
)

// MaxWebhookBody bounds a webhook delivery's body (GitHub sends at most
// 25 MiB, but a run's input is at most 1 MiB); MaxBodyBytes bounds it too.
const MaxWebhookBody = 1 << 20

// receiveWebhook serves POST .../webhooks/{name}/deliveries: no API key,
// the signature is the credential. In order: the webhook (404 for an
// unknown or disabled one), the body (413 past the bound), the signature
// (401, nothing written), the delivery id, the input (400 naming the field),
// then the run, answered 201 once it is durable, or 200 with the run an
// earlier delivery of the same id started.
func (s *Server) receiveWebhook(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	ts, err := s.triggers()
	if err != nil {
		return err
	}
	tenant, name := TenantFrom(r.Context()), p.ByName("name")
	t, err := ts.Lookup(r.Context(), tenant, name, engine.TriggerWebhook)
	if errors.Is(err, engine.ErrNotFound) {
		return triggerNotFound(false, name)
	}
	if err != nil {
		return err
	}
	body, err := s.readWebhookBody(r)
	if err != nil {
		return err
	}
	if err := webhook.Verify(t.Config.Webhook, t.Secret, r.Header, body, time.Now()); err != nil {
		return newProblem(http.StatusUnauthorized, wire.CodeUnauthenticated, err.Error())
	}
	msg := &engine.TriggerMessage{Body: body, Headers: r.Header, Query: r.URL.Query()}
	if h := t.Config.Webhook.DeliveryHeader; h != "" {
		id := r.Header.Get(h)
		if id == "" {
			return fieldProblem(h, "required: the delivery id this webhook dedups by")
		}
		if len(id) > engine.MaxDeliveryID || !visibleASCII(id) {
			return fieldProblem(h, fmt.Sprintf("1 to %d visible ASCII characters", engine.MaxDeliveryID))
		}
		msg.Ref = id
	}
	run, replayed, err := ts.Fire(r.Context(), t, msg)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if replayed {
		status = http.StatusOK
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", "/api/v1/tenants/"+tenant+"/workflows/"+run.ID)
	writeJSON(w, status, wire.Delivery{RunID: run.ID, Workflow: run.Workflow, Version: run.Version,
		State: wire.RunState(run.State), Replayed: replayed})
	return nil
}

// readWebhookBody reads a delivery's raw body, whatever its media type (the
// signature covers the bytes), refusing one past MaxWebhookBody or
// MaxBodyBytes with 413 before reading it whole.
func (s *Server) readWebhookBody(r *http.Request) ([]byte, error) {
	limit := min(int64(MaxWebhookBody), s.MaxBodyBytes)
	tooLarge := newProblem(http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge,
		fmt.Sprintf("the delivery's body is over the limit of %d bytes", limit))
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || int64(len(body)) > limit {
		return nil, tooLarge
	}
	if err != nil {
		return nil, newProblem(http.StatusBadRequest, wire.CodeInvalidRequest, "reading the request body: "+err.Error())
	}
	return body, nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
