package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
)

// Error is an answer outside 2xx, decoded from the server's
// application/problem+json. An answer that is not a problem document keeps
// its status, the status text as Title and the start of its body as Detail.
type Error struct {
	Status int    // HTTP status
	Code   string // stable machine-readable code, one of wire.Codes()
	Title  string
	Detail string
	// State is the current state of the run (invalid_transition) or of the
	// task (lease_lost) that refused the call.
	State string
	// Errors names each field or definition problem of a 400.
	Errors []wire.FieldError
	// Quota is the tenant quota a quota_exceeded refused the start with;
	// Key the concurrency key's value of a concurrency_limited.
	Quota, Key string
	// RetryAfter is the answer's Retry-After (a 429, or a 503 overloaded or storage_unavailable): how long to
	// wait before trying again; 0 when it sent none.
	RetryAfter time.Duration
}

// Error returns the status, code, detail, the refusing state and the named
// problems in one line.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "orchestrator: %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	switch {
	case e.Detail != "":
		b.WriteString(": " + e.Detail)
	case e.Title != "":
		b.WriteString(": " + e.Title)
	}
	if e.State != "" {
		b.WriteString(" (state " + e.State + ")")
	}
	if len(e.Errors) > 0 && !(len(e.Errors) == 1 && strings.Contains(e.Detail, e.Errors[0].Message)) {
		for i, p := range e.Errors {
			if i == 0 {
				b.WriteString(": ")
			} else {
				b.WriteString("; ")
			}
			if p.Task != "" {
				b.WriteString("task " + p.Task + ": ")
			}
			if p.Field != "" {
				b.WriteString(p.Field + ": ")
			}
			b.WriteString(p.Message)
		}
	}
	return b.String()
}

// Fields returns the fields the problems of a 400 name, in order.
func (e *Error) Fields() []string {
	var out []string
	for _, p := range e.Errors {
		out = append(out, p.Field)
	}
	return out
}

// decodeError reads a non-2xx answer into an *Error.
func decodeError(res *http.Response, cl call) error {
	data, err := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	e := &Error{Status: res.StatusCode, Title: http.StatusText(res.StatusCode)}
	if n, perr := strconv.Atoi(res.Header.Get("Retry-After")); perr == nil && n > 0 {
		e.RetryAfter = time.Duration(min(n, 86400)) * time.Second
	}
	if err != nil {
		e.Detail = fmt.Sprintf("%s %s: reading the error answer: %v", cl.method, pathOnly(cl.path), err)
		return e
	}
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	var p wire.Problem
	if (mt == "application/problem+json" || mt == "application/json") && json.Unmarshal(data, &p) == nil && p.Code != "" {
		e.Code, e.Detail, e.State, e.Errors, e.Quota, e.Key = p.Code, p.Detail, p.State, p.Errors, p.Quota, p.Key
		if p.Title != "" {
			e.Title = p.Title
		}
		return e
	}
	text := strings.TrimSpace(string(data))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	e.Detail = text
	return e
}

// StatusOf returns the HTTP status of an *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// CodeOf returns the problem code of an *Error in err's chain, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsNotFound reports whether the server answered 404: an unknown id, name,
// route, or another tenant's resource.
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }

// IsConflict reports whether the server answered 409: a refused transition
// (invalid_transition), a lost lease (lease_lost) or a concurrent change.
func IsConflict(err error) bool { return StatusOf(err) == http.StatusConflict }

// IsOverloaded reports whether the server refused a start because it is
// saturated (503 overloaded): try again after the error's RetryAfter.
func IsOverloaded(err error) bool { return CodeOf(err) == wire.CodeOverloaded }

// IsLeaseLost reports whether a worker call was refused because its lease
// token no longer holds the attempt; the worker should drop the task.
func IsLeaseLost(err error) bool { return CodeOf(err) == wire.CodeLeaseLost }
