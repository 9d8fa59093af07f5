package api

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
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
	logOnBehalf  = "on_behalf"
)

// middleware wraps the router in the chain every request passes, outermost
// first. The steps that need the route (principal, tenant, permission,
// policy) are in endpoint.
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
		ri := infoFrom(r.Context())
		s.httpMetrics.observe(ri.route, sw.status, start)
		if !s.Logger.Enabled(r.Context(), slog.LevelDebug) {
			return
		}
		actor := ""
		if ri.principal != nil {
			actor = ri.principal.Actor()
		}
		s.Logger.Debug("request", logRequestID, ri.id, logMethod, r.Method, logPath, r.URL.Path, logStatus, sw.status,
			"bytes", sw.bytes, "took", time.Since(start).String(), logTenant, ri.tenant, logPerm, string(ri.perm),
			logActor, actor, logOnBehalf, ri.onBehalf)
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
	label := rt.method + " " + rt.path
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		infoFrom(r.Context()).route = label
		err := s.admit(r, p, &rt)
		if err == nil && rt.perm != PermSigned { // a delivery's query is its sender's
			err = checkQuery(r)
		}
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
// learns in the request's context. In order: the principal (a key sent is
// always checked), whether the route needs a key, the tenant in the path,
// the role check (another tenant's path is 403), X-Actor, whether the
// tenant is registered and active, and the policy, unless the route asks it
// itself once it has read its body (routeDecides).
func (s *Server) admit(r *http.Request, p httprouter.Params, rt *route) error {
	ri := infoFrom(r.Context())
	ri.perm, ri.op = rt.perm, rt.op
	if rt.perm == PermSigned {
		return s.admitSigned(r, p, ri)
	}
	principal, err := s.Authenticator.Authenticate(r)
	if err != nil {
		return err
	}
	ri.principal = principal
	perm := rt.perm
	if perm == PermServerMetrics && s.MetricsPublic {
		perm = PermPublic
	}
	if principal == nil && perm != PermPublic {
		return unauthenticated("this route needs an API key: send Authorization: Bearer KEY", false)
	}
	if r.Method == http.MethodPost {
		// No POST takes query parameters: one given is a mistake (a
		// dry_run the server does not know), not something to ignore.
		if err := onlyParams(r.URL.Query()); err != nil {
			return err
		}
	}
	if rt.scoped() {
		if ri.tenant, err = tenantOf(p); err != nil {
			return err
		}
	}
	if perm == PermPublic || perm == PermAuthenticated {
		return nil
	}
	scope := ri.tenant
	if rt.flags&routeCallerTenant != 0 {
		scope = principal.TenantID
	}
	if err := principal.Authorize(string(perm), scope); err != nil {
		return err
	}
	if r.Method != http.MethodGet {
		if err := s.onBehalf(r, ri, rt, scope); err != nil {
			return err
		}
	}
	if ri.tenant == "" {
		return nil
	}
	// A tenant key's tenant was checked when the key was (and the role
	// check made it the path's): only the admin's calls need the lookup.
	if s.Keys != nil && principal.TenantID == "" {
		check := s.Keys.CheckTenant
		if rt.flags&routeManagesTenant != 0 {
			check = s.Keys.Tenant // an admin must reach a suspended tenant to resume it
		}
		if _, err := check(r.Context(), ri.tenant); err != nil {
			return tenantNotFound(err, ri.tenant)
		}
	}
	if rt.flags&routeDecides != 0 {
		return nil
	}
	res, err := s.resourceOf(r, p, rt, principal)
	if err != nil {
		return err
	}
	return s.decide(r, res)
}

// admitSigned admits a request whose credential is its signature (a
// webhook delivery): no key is read, query parameters are the sender's, and
// the tenant must be registered and active; the handler verifies the
// signature before it writes anything.
func (s *Server) admitSigned(r *http.Request, p httprouter.Params, ri *requestInfo) error {
	var err error
	if ri.tenant, err = tenantOf(p); err != nil {
		return err
	}
	if s.Keys != nil {
		if _, err := s.Keys.CheckTenant(r.Context(), ri.tenant); err != nil {
			return tenantNotFound(err, ri.tenant)
		}
	}
	return nil
}

// onBehalf takes the X-Actor header of a request that records events:
// whom the caller acts for, recorded beside it. Only a role that holds
// actor.on_behalf may name one. The admin log records the key alone, so an
// administrative call refuses one rather than drop it.
func (s *Server) onBehalf(r *http.Request, ri *requestInfo, rt *route, scope string) error {
	a := r.Header.Get("X-Actor")
	if a == "" {
		return nil
	}
	if err := validActor(a); err != nil {
		return err
	}
	if rt.flags&routeManagesTenant != 0 || (!rt.scoped() && rt.flags&routeCallerTenant == 0) {
		return fieldProblem("X-Actor", "administrative calls record the key alone; send no X-Actor")
	}
	if err := ri.principal.Authorize(engine.ActionActOnBehalf, scope); err != nil {
		return err
	}
	ri.onBehalf = a
	return nil
}

// resourceOf is what a route's path says of the resource it acts on: the
// run, the definition, and for a worker's report the attempt's run and task
// type (which a worker key that names its types must hold).
func (s *Server) resourceOf(r *http.Request, p httprouter.Params, rt *route, principal *engine.Principal) (policy.Resource, error) {
	res := policy.Resource{RunID: runIDOf(p), Workflow: p.ByName("name")}
	if v, err := strconv.Atoi(p.ByName("version")); err == nil {
		res.Version = v
	}
	if rt.flags&routeLease == 0 {
		return res, nil
	}
	verb := p.ByName("verb")
	if verb != "heartbeat" && verb != "complete" && verb != "fail" {
		return res, nil // the handler answers 404
	}
	infoFrom(r.Context()).op = verb
	id := p.ByName("id")
	runID, _, _, err := engine.ParseLeaseID(id)
	if err != nil {
		return res, leaseErr(err, id)
	}
	res.RunID = runID
	if res.TaskType, err = s.Engine.LeaseTaskType(r.Context(), infoFrom(r.Context()).tenant, id); err != nil {
		return res, leaseErr(err, id)
	}
	return res, principal.AuthorizeTaskType(res.TaskType)
}

// decide asks the Authorizer (the policy) about the request's resource and
// keeps its decision for the events the request causes. Routes marked
// routeDecides call it once they have read what their body says, before
// they write anything.
func (s *Server) decide(r *http.Request, res policy.Resource) error {
	if s.allowAll {
		return nil
	}
	ri := infoFrom(r.Context())
	d, err := s.Authorizer.Authorize(r.Context(), &policy.Input{Principal: ri.principal, Action: string(ri.perm),
		Operation: ri.op, Tenant: ri.tenant, Resource: res})
	if err != nil {
		return err
	}
	ri.decision = d
	return nil
}

// decideTypes checks a poll's task types: each must be one the worker's key
// may lease and one the policy allows. It returns the policy's decision for
// each type, recorded on the attempt a poll leases.
func (s *Server) decideTypes(r *http.Request, types []string) (map[string]*engine.PolicyDecision, error) {
	ri := infoFrom(r.Context())
	if ri.principal == nil {
		return nil, nil
	}
	var out map[string]*engine.PolicyDecision
	for _, t := range types {
		if err := ri.principal.AuthorizeTaskType(t); err != nil {
			return nil, err
		}
		if err := s.decide(r, policy.Resource{TaskType: t}); err != nil {
			return nil, err
		}
		if ri.decision != nil {
			if out == nil {
				out = map[string]*engine.PolicyDecision{}
			}
			out[t] = ri.decision
		}
	}
	ri.decision = nil
	return out, nil
}
