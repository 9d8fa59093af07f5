package api

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
)

// HeaderRequestID carries a request's id: taken from the request when it
// has a usable one, made up otherwise, and sent back on every answer.
const HeaderRequestID = "X-Request-Id"

// maxRequestID is the longest X-Request-Id taken from a request.
const maxRequestID = 128

// Slog keys of the request log.
const (
	logRequestID = "request_id"
	logMethod    = "method"
	logPath      = "path"
	logStatus    = "status"
	logTenant    = "tenant_id"
	logPerm      = "permission"
	logActor     = "actor"
)

// middleware wraps the router in the chain every request passes, outermost
// first. The steps that need the route (principal, tenant, permission) are
// in endpoint.
func (s *Server) middleware(h http.Handler) http.Handler {
	chain := []func(http.Handler) http.Handler{
		s.requestID,     // every answer and log line carries the request's id
		s.logRequests,   // one line per request, with the status it got
		s.recoverPanics, // a panic answers 500 and is logged, not a dropped connection
		s.limitBody,     // no body is read past MaxBodyBytes
	}
	for i := len(chain) - 1; i >= 0; i-- {
		h = chain[i](h)
	}
	return h
}

// requestID gives the request an id, from its X-Request-Id when that is 1
// to 128 visible ASCII characters, and sends it back.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = rand.Text()
		}
		w.Header().Set(HeaderRequestID, id)
		ctx := context.WithValue(r.Context(), ctxKey{}, &requestInfo{id: id})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := range len(id) {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// statusWriter records the status and size of an answer for the request
// log and for panic recovery.
type statusWriter struct {
	http.ResponseWriter
	status int // 0 until the header is written
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush sends what is buffered, for handlers that flush through the
// http.Flusher interface.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection (flushes and
// write deadlines of long polls and streams).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs every request at debug level once it is answered; the
// failures of 5xx answers are logged at error level where they happen.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if !s.Logger.Enabled(r.Context(), slog.LevelDebug) {
			return
		}
		ri := infoFrom(r.Context())
		s.Logger.Debug("request", logRequestID, ri.id, logMethod, r.Method, logPath, r.URL.Path, logStatus, sw.status,
			"bytes", sw.bytes, "took", time.Since(start).String(), logTenant, ri.tenant, logPerm, string(ri.perm),
			logActor, ri.principal.Actor)
	})
}

// recoverPanics answers a handler's panic with a 500 problem and logs it
// with its stack. An answer already begun cannot be replaced: its
// connection is cut instead. http.ErrAbortHandler passes through.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.Logger.Error("handler panicked", logRequestID, RequestIDFrom(r.Context()), logMethod, r.Method, logPath, r.URL.Path,
				"panic", v, "stack", string(debug.Stack()))
			if sw, ok := w.(*statusWriter); ok && sw.status != 0 {
				panic(http.ErrAbortHandler)
			}
			writeProblem(w, newProblem(http.StatusInternalServerError, wire.CodeInternal, "internal error; see the server log"))
		}()
		next.ServeHTTP(w, r)
	})
}

// limitBody makes reading a request body fail past MaxBodyBytes; readBody
// answers 413.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(nil, r.Body, s.MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// endpoint serves one route: it authenticates the request, reads the
// tenant, authorizes the route's permission, runs the handler, and turns a
// returned error into a problem answer, logging server errors.
func (s *Server) endpoint(rt route) httprouter.Handle {
	scoped := strings.Contains(rt.path, "/:tenantId/") || strings.HasPrefix(rt.path, "/v1/")
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		err := s.admit(r, p, rt, scoped)
		if err == nil {
			err = rt.h(w, r, p)
		}
		if err != nil {
			prob := problemFor(err)
			switch {
			case prob.Code == wire.CodeStorageUnavailable:
				// The store logs when its storage fails and when it is back.
				s.Logger.Debug("request failed", logRequestID, RequestIDFrom(r.Context()), logMethod, r.Method, logPath, r.URL.Path, "err", err)
			case prob.Status >= 500:
				s.Logger.Error("request failed", logRequestID, RequestIDFrom(r.Context()), logMethod, r.Method, logPath, r.URL.Path, "err", err)
			}
			writeProblem(w, prob)
		}
	}
}

// admit decides whether the request reaches its handler, recording what it
// learns in the request's context.
func (s *Server) admit(r *http.Request, p httprouter.Params, rt route, scoped bool) error {
	ri := infoFrom(r.Context())
	ri.perm = rt.perm
	principal, err := s.Authenticator.Authenticate(r)
	if err != nil {
		return err
	}
	ri.principal = principal
	if r.Method == http.MethodPost {
		// No POST takes query parameters: one given is a mistake (a
		// dry_run the server does not know), not something to ignore.
		if err := onlyParams(r.URL.Query()); err != nil {
			return err
		}
	}
	if scoped {
		if ri.tenant, err = tenantOf(p); err != nil {
			return err
		}
	}
	return s.Authorizer.Authorize(r.Context(), principal, ri.tenant, rt.perm)
}
