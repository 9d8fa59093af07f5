package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// The external worker protocol: workers poll for ready tasks of their types,
// heartbeat to keep the lease, and report completion or failure with the
// lease token. Served on the short API (tenant "default") and per tenant.

// MaxPollTypes is the most task types one poll may ask for.
const MaxPollTypes = 64

// taskPost serves POST .../tasks/{id}: "poll" is the only id httprouter lets
// share the segment with the task ids of .../tasks/{id}/{verb}.
func (s *Server) taskPost(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	if p.ByName("id") != "poll" {
		return newProblem(http.StatusNotFound, wire.CodeNotFound, "no route for POST "+r.URL.Path)
	}
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req wire.PollRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if len(req.Types) == 0 {
		return fieldProblem("types", "required: the task types this worker runs, e.g. [\"python\"]")
	}
	if len(req.Types) > MaxPollTypes {
		return fieldProblem("types", fmt.Sprintf("%d types, over the limit of %d", len(req.Types), MaxPollTypes))
	}
	for i, t := range req.Types {
		if !definition.ValidName(t) {
			return fieldProblem(fmt.Sprintf("types[%d]", i), "must match [A-Za-z0-9_.-]{1,64}")
		}
	}
	if req.WorkerID == "" || len(req.WorkerID) > 128 {
		return fieldProblem("worker_id", "required: 1..128 characters naming this worker")
	}
	lease, err := parseDuration("lease", req.Lease, engine.DefaultLease, engine.MaxLease)
	if err != nil {
		return err
	}
	if lease == 0 {
		return fieldProblem("lease", "must be positive")
	}
	wait, err := parseDuration("wait", req.Wait, 0, engine.MaxPollWait)
	if err != nil {
		return err
	}
	decisions, err := s.decideTypes(r, req.Types)
	if err != nil {
		return err
	}
	s.extendWrite(http.NewResponseController(w), wait)
	got, err := s.Engine.Poll(r.Context(), engine.PollRequest{TenantID: tenant, Types: req.Types,
		WorkerID: req.WorkerID, Lease: lease, Wait: wait, By: CallerFrom(r.Context()), Policies: decisions})
	if err != nil {
		if r.Context().Err() != nil {
			return nil // the worker went away
		}
		return err
	}
	if got == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, http.StatusOK, wireLease(got))
	return nil
}

func (s *Server) taskVerb(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	id := p.ByName("id")
	verb := p.ByName("verb")
	if verb != "heartbeat" && verb != "complete" && verb != "fail" {
		return newProblem(http.StatusNotFound, wire.CodeNotFound, "no route for POST "+r.URL.Path)
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var answer wire.LeaseStatus
	switch verb {
	case "heartbeat":
		var req wire.HeartbeatRequest
		if err := decodeStrict(body, &req); err != nil {
			return err
		}
		if req.LeaseToken == "" {
			return fieldProblem("lease_token", "required: the token poll answered")
		}
		lease, err := parseDuration("lease", req.Lease, engine.DefaultLease, engine.MaxLease)
		if err != nil {
			return err
		}
		if lease == 0 {
			return fieldProblem("lease", "must be positive")
		}
		exp, err := s.Engine.Heartbeat(r.Context(), tenant, id, req.LeaseToken, lease, CallerFrom(r.Context()))
		if err != nil {
			return leaseErr(err, id)
		}
		answer = wire.LeaseStatus{ID: id, Status: "extended", LeaseExpiresAt: exp}
	case "complete":
		var req wire.CompleteRequest
		if err := decodeStrict(body, &req); err != nil {
			return err
		}
		if req.LeaseToken == "" {
			return fieldProblem("lease_token", "required: the token poll answered")
		}
		if err := s.Engine.Complete(r.Context(), tenant, id, req.LeaseToken, req.Output, CallerFrom(r.Context())); err != nil {
			return leaseErr(err, id)
		}
		answer = wire.LeaseStatus{ID: id, Status: "completed"}
	case "fail":
		var req wire.FailRequest
		if err := decodeStrict(body, &req); err != nil {
			return err
		}
		if req.LeaseToken == "" {
			return fieldProblem("lease_token", "required: the token poll answered")
		}
		if req.Error == nil || req.Error.Code == "" {
			return fieldProblem("error", `required: {"code": "...", "message": "..."}`)
		}
		retryable := req.Retryable == nil || *req.Retryable
		terr := &engine.TaskError{Code: req.Error.Code, Message: req.Error.Message}
		if err := s.Engine.Fail(r.Context(), tenant, id, req.LeaseToken, terr, retryable, CallerFrom(r.Context())); err != nil {
			return leaseErr(err, id)
		}
		answer = wire.LeaseStatus{ID: id, Status: "failed"}
	default:
		return newProblem(http.StatusNotFound, wire.CodeNotFound, "no route for POST "+r.URL.Path)
	}
	writeJSON(w, http.StatusOK, answer)
	return nil
}

// leaseErr names the task in a not-found answer.
func leaseErr(err error, id string) error {
	if errors.Is(err, engine.ErrNotFound) {
		return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("task %q does not exist", id))
	}
	return err
}
