package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// Problem is an RFC 9457 problem document. Code is stable: clients switch on
// it, never on Title or Detail.
type Problem struct {
	Type   string               `json:"type"`
	Title  string               `json:"title"`
	Status int                  `json:"status"`
	Detail string               `json:"detail,omitempty"`
	Code   string               `json:"code"`
	State  string               `json:"state,omitempty"` // invalid_transition: the current state
	Errors []definition.Problem `json:"errors,omitempty"`
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter time.Duration `json:"-"`
}

// Error codes.
const (
	CodeInvalidJSON         = "invalid_json"
	CodeInvalidRequest      = "invalid_request"
	CodeInvalidDefinition   = "invalid_definition"
	CodeNotFound            = "not_found"
	CodeInvalidTransition   = "invalid_transition"
	CodeConflict            = "conflict"
	CodeLeaseLost           = "lease_lost"
	CodeIdempotencyMismatch = "idempotency_key_reused"
	CodeBodyTooLarge        = "body_too_large"
	CodeOutputTooLarge      = "output_too_large"
	CodeUnsupportedMedia    = "unsupported_media_type"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeUnavailable         = "unavailable"
	CodeStorageUnavailable  = "storage_unavailable"
	CodeInternal            = "internal"
)

// StorageRetryAfter is the Retry-After of a storage_unavailable answer: about
// the longest the engine waits between attempts on a failing store.
const StorageRetryAfter = 5 * time.Second

var titles = map[string]string{
	CodeInvalidJSON:         "Malformed JSON",
	CodeInvalidRequest:      "Invalid request",
	CodeInvalidDefinition:   "Invalid workflow definition",
	CodeNotFound:            "Not found",
	CodeInvalidTransition:   "State does not allow this",
	CodeConflict:            "Conflict",
	CodeLeaseLost:           "The lease does not hold this attempt",
	CodeIdempotencyMismatch: "Idempotency key reused",
	CodeBodyTooLarge:        "Request body too large",
	CodeOutputTooLarge:      "Task output too large",
	CodeUnsupportedMedia:    "Unsupported media type",
	CodeMethodNotAllowed:    "Method not allowed",
	CodeUnavailable:         "Service unavailable",
	CodeStorageUnavailable:  "Storage unavailable",
	CodeInternal:            "Internal error",
}

func newProblem(status int, code, detail string) *Problem {
	return &Problem{Type: "https://orchestrator.dev/problems/" + strings.ReplaceAll(code, "_", "-"),
		Title: titles[code], Status: status, Detail: detail, Code: code}
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

// fieldProblem is a 400 naming one field of the request.
func fieldProblem(field, msg string) *Problem {
	p := newProblem(http.StatusBadRequest, CodeInvalidRequest, field+": "+msg)
	p.Errors = []definition.Problem{{Field: field, Message: msg}}
	return p
}

// problemFor maps an error from the engine or store to a problem: the one
// table from errors to statuses. Storage text never reaches the client.
func problemFor(err error) *Problem {
	var p *Problem
	var te *engine.TransitionError
	var ve *definition.ValidationError
	var le *engine.LeaseError
	var oe *engine.OutputError
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &oe):
		// A worker's output the engine refused: nothing was recorded and
		// the lease still holds, so the worker can fail the task.
		msg := oe.Message + "; nothing was recorded and the lease still holds: complete with a valid output or fail the task"
		q := fieldProblem("output", msg)
		if oe.Code == engine.CodeOutputTooLarge {
			q = newProblem(http.StatusRequestEntityTooLarge, CodeOutputTooLarge, "output: "+msg)
			q.Errors = []definition.Problem{{Field: "output", Message: msg}}
		}
		return q
	case errors.As(err, &ve):
		q := newProblem(http.StatusBadRequest, CodeInvalidDefinition, fmt.Sprintf("%d problems in the definition", len(ve.Problems)))
		if len(ve.Problems) == 1 {
			q.Detail = "1 problem in the definition"
		}
		q.Errors = ve.Problems
		return q
	case errors.As(err, &te):
		q := newProblem(http.StatusConflict, CodeInvalidTransition, fmt.Sprintf("%s is not allowed while the %s is %s", te.Event, te.Subject, te.From))
		q.State = te.From
		return q
	case errors.As(err, &le):
		q := newProblem(http.StatusConflict, CodeLeaseLost, le.Error())
		q.State = string(le.State)
		return q
	case errors.Is(err, engine.ErrNotFound):
		return newProblem(http.StatusNotFound, CodeNotFound, "no such resource")
	case errors.Is(err, engine.ErrConflict):
		return newProblem(http.StatusConflict, CodeConflict, "the resource changed concurrently; try again")
	case errors.Is(err, engine.ErrStorageUnavailable):
		q := newProblem(http.StatusServiceUnavailable, CodeStorageUnavailable,
			"the database cannot write now (for example the disk is full); nothing was written; try again later")
		q.RetryAfter = StorageRetryAfter
		return q
	case errors.Is(err, engine.ErrClosed):
		return newProblem(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	}
	return newProblem(http.StatusInternalServerError, CodeInternal, "internal error; see the server log")
}

// writeProblem sends p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((p.RetryAfter+time.Second-1)/time.Second)))
	}
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}
