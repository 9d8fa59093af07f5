// Package api serves the orchestrator over HTTP: the tenant API under
// /api/v1/tenants/{tenantId}/, the short /v1 API of the tenant "default",
// the external worker protocol, health, metrics and the OpenAPI document.
//
// Every request passes one middleware chain (middleware.go): a request id,
// the request log, panic recovery, the body limit, then, per route, the
// principal (Authenticator), the tenant and the route's Permission
// (Authorizer). Handlers are grouped by resource: runs.go, events.go,
// definitions.go, workers.go, health.go. They decode and check a request,
// call the engine or the store, and answer JSON (the types of package
// api/wire) or a problem document.
package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// DefaultTenant is the tenant the short /v1 API acts on.
const DefaultTenant = "default"

// DefaultMaxBodyBytes caps request bodies; a definition may be up to 1 MiB.
const DefaultMaxBodyBytes = 2 << 20

// ActorAPI is recorded on events caused by an API call.
const ActorAPI = "api"

// Server is the HTTP API. Set the fields, then serve Handler().
type Server struct {
	Engine       *engine.Engine
	Metrics      *metrics.Set // written by GET /metrics with the process metrics
	Logger       *slog.Logger
	MaxBodyBytes int64 // default DefaultMaxBodyBytes
	// WriteTimeout is the http.Server's: the time an answer may take. A
	// long poll gets its wait on top of it and an event stream gets it
	// anew for each batch it sends. 0: no deadline is set.
	WriteTimeout time.Duration
	// MaxPageBytes bounds the encoded items of one page of a list: a page
	// ends early, with its token, once it would pass the bound (it always
	// holds at least one item). Default DefaultMaxPageBytes.
	MaxPageBytes int
	// Authenticator says who sends each request; default
	// LocalAuthenticator, which admits everyone as today.
	Authenticator Authenticator
	// Authorizer decides whether a principal may do a route's Permission
	// in a tenant; default AllowAll.
	Authorizer Authorizer
}

// Handler returns the router with every route and the middleware.
func (s *Server) Handler() http.Handler {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.MaxBodyBytes <= 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if s.MaxPageBytes <= 0 {
		s.MaxPageBytes = DefaultMaxPageBytes
	}
	if s.Authenticator == nil {
		s.Authenticator = LocalAuthenticator{}
	}
	if s.Authorizer == nil {
		s.Authorizer = AllowAll{}
	}
	r := httprouter.New()
	r.HandleMethodNotAllowed = true
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusNotFound, wire.CodeNotFound, "no route for "+r.Method+" "+r.URL.Path))
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path))
	})
	for _, rt := range s.routes() {
		r.Handle(rt.method, rt.path, s.endpoint(rt))
	}
	return s.middleware(r)
}

// route is one entry of the route table: what it serves, the permission a
// caller needs for it, and its handler.
type route struct {
	method, path string
	perm         Permission
	h            handlerFunc
}

// handlerFunc is a handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error

func (s *Server) routes() []route {
	return []route{
		{"GET", "/health", PermHealthRead, s.health},
		{"GET", "/metrics", PermMetricsRead, s.metrics},
		{"GET", "/openapi.json", PermAPIDocRead, s.openapi},
		{"POST", "/v1/workflows", PermDefinitionsRegister, s.registerDefinition},
		{"GET", "/v1/workflows", PermDefinitionsRead, s.getWorkflow},
		{"POST", "/v1/run", PermRunsStart, s.executeWorkflow},
		{"GET", "/v1/runs/:id", PermRunsRead, s.getRun},
		{"GET", "/v1/runs/:id/events", PermEventsRead, s.runEvents},
		{"POST", "/v1/runs/:id/pause", PermRunsPause, s.control(engine.EventRunPaused)},
		{"POST", "/v1/runs/:id/resume", PermRunsResume, s.control(engine.EventRunResumed)},
		{"POST", "/v1/runs/:id/cancel", PermRunsCancel, s.control(engine.EventRunCancelled)},
		{"POST", "/v1/runs/:id/retry", PermRunsRetry, s.control(engine.EventRunRetried)},
		{"POST", "/api/v1/tenants/:tenantId/workflows", PermRunsStart, s.executeWorkflow},
		{"GET", "/api/v1/tenants/:tenantId/workflows", PermRunsRead, s.listRuns},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId", PermRunsRead, s.getRun},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/pause", PermRunsPause, s.control(engine.EventRunPaused)},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/resume", PermRunsResume, s.control(engine.EventRunResumed)},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/cancel", PermRunsCancel, s.control(engine.EventRunCancelled)},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/retry", PermRunsRetry, s.control(engine.EventRunRetried)},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId/metrics", PermRunsRead, s.runMetrics},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId/events", PermEventsRead, s.runEvents},
		{"GET", "/api/v1/tenants/:tenantId/events", PermEventsRead, s.tenantEvents},
		{"POST", "/api/v1/tenants/:tenantId/definitions", PermDefinitionsRegister, s.registerDefinition},
		{"GET", "/api/v1/tenants/:tenantId/definitions", PermDefinitionsRead, s.listDefinitions},
		{"GET", "/api/v1/tenants/:tenantId/definitions/:name/versions/:version", PermDefinitionsRead, s.getDefinitionVersion},
		{"POST", "/api/v1/dag/validate", PermDefinitionsValidate, s.validateDAG},
		{"POST", "/v1/tasks/:id", PermTasksPoll, s.taskPost},
		{"POST", "/v1/tasks/:id/:verb", PermTasksReport, s.taskVerb},
		{"POST", "/api/v1/tenants/:tenantId/tasks/:id", PermTasksPoll, s.taskPost},
		{"POST", "/api/v1/tenants/:tenantId/tasks/:id/:verb", PermTasksReport, s.taskVerb},
	}
}

// extendWrite gives an answer that waits (a long poll) or runs long (a
// stream) d more than WriteTimeout from now to be written.
func (s *Server) extendWrite(w http.ResponseWriter, d time.Duration) {
	if s.WriteTimeout > 0 {
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d + s.WriteTimeout))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
