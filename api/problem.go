package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// Problem is a problem document (wire.Problem) as an error a handler
// returns; RetryAfter, when set, is sent as the Retry-After header.
type Problem struct {
	wire.Problem
	RetryAfter time.Duration `json:"-"`
	// Authenticate, when set, is sent as the WWW-Authenticate header of a
	// 401.
	Authenticate string `json:"-"`
}

// StorageRetryAfter is the Retry-After of a storage_unavailable answer: about
// the longest the engine waits between attempts on a failing store.
const StorageRetryAfter = 5 * time.Second

func newProblem(status int, code, detail string) *Problem {
	return &Problem{Problem: wire.Problem{Type: wire.ProblemType(code), Title: wire.Title(code), Status: status, Detail: detail, Code: code}}
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

// fieldProblem is a 400 naming one field of the request.
func fieldProblem(field, msg string) *Problem {
	p := newProblem(http.StatusBadRequest, wire.CodeInvalidRequest, field+": "+msg)
	p.Errors = []wire.FieldError{{Field: field, Message: msg}}
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
	var fe *engine.ForbiddenError
	var fld *engine.FieldError
	var qe *engine.QuotaError
	var cle *engine.ConcurrencyLimitedError
	var ov *engine.OverloadError
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &qe):
		if qe.Quota == engine.QuotaMaxInputBytes {
			q := newProblem(http.StatusRequestEntityTooLarge, wire.CodeQuotaExceeded, qe.Message)
			q.Errors = []wire.FieldError{{Field: "input", Message: qe.Message}}
			q.Quota = qe.Quota
			return q
		}
		q := newProblem(http.StatusTooManyRequests, wire.CodeQuotaExceeded, qe.Message+"; nothing was recorded")
		q.Quota, q.RetryAfter = qe.Quota, max(qe.RetryAfter, time.Millisecond)
		return q
	case errors.As(err, &cle):
		q := newProblem(http.StatusConflict, wire.CodeConcurrencyLimited, cle.Error()+"; nothing was recorded")
		q.Key = cle.Key
		return q
	case errors.Is(err, engine.ErrUnauthenticated):
		return unauthenticated("invalid API key", true)
	case errors.Is(err, engine.ErrTenantSuspended):
		return newProblem(http.StatusForbidden, wire.CodeTenantSuspended, "the tenant is suspended; an admin resumes it")
	case errors.As(err, &fe):
		detail := fe.Reason
		if !strings.Contains(detail, fe.Action) {
			detail = fe.Action + " refused: " + detail
		}
		q := newProblem(http.StatusForbidden, wire.CodeForbidden, detail)
		q.Permission = fe.Action
		return q
	case errors.As(err, &fld):
		return fieldProblem(fld.Field, fld.Reason)
	case errors.Is(err, engine.ErrTenantNotFound):
		return newProblem(http.StatusNotFound, wire.CodeTenantNotFound, "no tenant has this id")
	case errors.As(err, &oe):
		// A worker's output the engine refused: nothing was recorded and
		// the lease still holds, so the worker can fail the task.
		msg := oe.Message + "; nothing was recorded and the lease still holds: complete with a valid output or fail the task"
		q := fieldProblem("output", msg)
		if oe.Code == engine.CodeOutputTooLarge {
			q = newProblem(http.StatusRequestEntityTooLarge, wire.CodeOutputTooLarge, "output: "+msg)
			q.Errors = []wire.FieldError{{Field: "output", Message: msg}}
		}
		return q
	case errors.As(err, &ve):
		q := newProblem(http.StatusBadRequest, wire.CodeInvalidDefinition, fmt.Sprintf("%d problems in the definition", len(ve.Problems)))
		if len(ve.Problems) == 1 {
			q.Detail = "1 problem in the definition"
		}
		q.Errors = wireFieldErrors(ve.Problems)
		return q
	case errors.As(err, &te):
		q := newProblem(http.StatusConflict, wire.CodeInvalidTransition, fmt.Sprintf("%s is not allowed while the %s is %s", te.Event, te.Subject, te.From))
		q.State = te.From
		return q
	case errors.As(err, &le):
		q := newProblem(http.StatusConflict, wire.CodeLeaseLost, le.Error())
		q.State = string(le.State)
		return q
	case errors.Is(err, engine.ErrNotFound):
		return newProblem(http.StatusNotFound, wire.CodeNotFound, "no such resource")
	case errors.Is(err, engine.ErrConflict):
		return newProblem(http.StatusConflict, wire.CodeConflict, "the resource changed concurrently; try again")
	case errors.Is(err, engine.ErrStorageUnavailable):
		q := newProblem(http.StatusServiceUnavailable, wire.CodeStorageUnavailable,
			"the database cannot write now (for example the disk is full); nothing was written; try again later")
		q.RetryAfter = StorageRetryAfter
		return q
	case errors.As(err, &ov):
		q := newProblem(http.StatusServiceUnavailable, wire.CodeOverloaded, ov.Error()+"; reads, control calls and workers' reports still work; retry after the Retry-After seconds")
		q.RetryAfter = max(ov.RetryAfter, time.Second)
		return q
	case errors.Is(err, engine.ErrClosed):
		return newProblem(http.StatusServiceUnavailable, wire.CodeUnavailable, "the server is shutting down")
	}
	return newProblem(http.StatusInternalServerError, wire.CodeInternal, "internal error; see the server log")
}

// ceilSeconds is d in whole seconds, rounded up; it does not overflow for
// the longest Duration (a start rate near 0 waits that long).
func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}

// writeProblem sends p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if p.Authenticate != "" {
		w.Header().Set("WWW-Authenticate", p.Authenticate)
	}
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(p.RetryAfter), 10))
	}
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(&p.Problem)
}
