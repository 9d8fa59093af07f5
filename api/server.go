// Package api serves the orchestrator over HTTP: the tenant API under
// /api/v1/tenants/{tenantId}/, the short /v1 API of the tenant "default",
// the external worker protocol, health, metrics and the OpenAPI document.
//
// Every request passes one middleware chain (middleware.go): a request id,
// the request log, panic recovery, the body limit, then, per route, the
// principal (Authenticator: API keys, AuthMode), the tenant, the role check
// of the route's Permission, whether the tenant is registered and active,
// and the policy (Authorizer). Handlers are grouped by resource: runs.go,
// events.go, definitions.go, workers.go, health.go, and the admin API in
// tenants.go and admin.go. They decode and check a request, call the engine
// or the store, and answer JSON (the types of package api/wire) or a problem
// document.
package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
)

// DefaultTenant is the tenant the short /v1 API acts on.
const DefaultTenant = "default"

// DefaultMaxBodyBytes caps request bodies; a definition may be up to 1 MiB.
const DefaultMaxBodyBytes = 2 << 20

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
	// Keys authenticates API keys and knows the registered tenants; nil:
	// no key is valid and tenants are not checked (an embedded API
	// without an access store).
	Keys *engine.Keys
	// Admin performs the administrative actions of the admin API; nil:
	// those routes answer 404.
	Admin *engine.Admin
	// Policy, when set, is asked after the role check on every request
	// that acts on a tenant (PolicyAuthorizer), and POST
	// /api/v1/policy/reload reloads it.
	Policy *policy.Engine
	// Triggers keeps webhooks and stream triggers and starts their runs;
	// nil: the trigger routes answer 404.
	Triggers *engine.Triggers
	// AuthMode says which requests need a key; default AuthLocal.
	AuthMode AuthMode
	// MetricsPublic serves GET /metrics without a key; otherwise it needs
	// an admin's (server.metrics).
	MetricsPublic bool
	// Authenticator says who sends each request; default a
	// KeyAuthenticator over Keys in AuthMode.
	Authenticator Authenticator
	// Authorizer is the policy step after the role check; default a
	// PolicyAuthorizer over Policy.
	Authorizer Authorizer

	// Backups copies the live database for POST /api/v1/admin/backup, into
	// BackupDir under a name the server chooses; either unset: that route
	// answers 404.
	Backups   engine.Backuper
	BackupDir string
	// Checkpointer signs checkpoints on demand (POST
	// /api/v1/admin/checkpoints) and lists each tenant's latest;
	// Checkpoints exports them all. nil: those routes answer 409
	// checkpoints_off.
	Checkpointer *engine.Checkpointer
	Checkpoints  engine.CheckpointLog
	// MaxStreams and MaxStreamsPerTenant bound the event streams open at
	// once (defaults DefaultMaxStreams, DefaultMaxStreamsPerTenant); one
	// more is refused with 429. StreamKeepAlive is the interval of a
	// stream's keepalive comments (default DefaultStreamKeepAlive).
	MaxStreams          int
	MaxStreamsPerTenant int
	StreamKeepAlive     time.Duration

	allowAll    bool        // no Authorizer and no Policy: decide asks nothing
	backingUp   atomic.Bool // a backup is being taken
	httpMetrics httpMetrics // answers by route and status
	streams     streamSlots // the open event streams
	// replayMax overrides maxTenantReplay (tests).
	replayMax int
}

// Handler returns the router with every route and the middleware.
func (s *Server) Handler() http.Handler {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.MaxBodyBytes <= 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s.httpMetrics.set = s.Metrics
	// TYPE lines in /metrics: Prometheus then knows its histograms as
	// histograms (the setting is the metrics package's, process-wide).
	metrics.ExposeMetadata(true)
	if s.MaxPageBytes <= 0 {
		s.MaxPageBytes = DefaultMaxPageBytes
	}
	if s.Authenticator == nil {
		s.Authenticator = &KeyAuthenticator{Keys: s.Keys, Mode: s.AuthMode}
	}
	if s.Authorizer == nil {
		s.Authorizer = PolicyAuthorizer{Policy: s.Policy}
		s.allowAll = s.Policy == nil // nothing to ask, nothing to record
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
// caller needs for it, the operation a policy sees, its handler and how the
// middleware treats it.
type route struct {
	method, path string
	perm         Permission
	op           string // input.operation of the policy, e.g. cancel
	h            handlerFunc
	flags        routeFlags
}

// routeFlags say how the middleware treats a route.
type routeFlags uint8

const (
	// routeDecides: the policy needs what only the body says (the workflow
	// started, the task types polled): the handler asks it (Server.decide)
	// once it has decoded the request and before it writes anything.
	routeDecides routeFlags = 1 << iota
	// routeManagesTenant: the route manages the tenant itself (its record,
	// keys, admin log), so it serves a suspended tenant too: an admin must
	// be able to resume it.
	routeManagesTenant
	// routeCallerTenant: the route acts outside any path tenant but for the
	// caller's own (DAG validation), so a tenant key may call it.
	routeCallerTenant
	// routeLease: a worker's report; the attempt's run and task type come
	// from the lease id in the path.
	routeLease
)

// scoped reports whether the route acts on a tenant: its {tenantId}, or
// the tenant default on the short /v1 API.
func (rt *route) scoped() bool {
	return strings.Contains(rt.path+"/", "/:tenantId/") || strings.HasPrefix(rt.path, "/v1/")
}

// handlerFunc is a handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error

// routes is the route table: the core routes here, each further resource's
// in its own file (adminRoutes in tenants.go...).
func (s *Server) routes() []route {
	return slices.Concat(s.coreRoutes(), s.adminRoutes(), s.operationsRoutes(), s.streamRoutes(), s.scheduleRoutes(),
		s.aliasRoutes(), s.triggerRoutes(), s.uiRoutes(), s.countRoutes())
}

func (s *Server) coreRoutes() []route {
	return []route{
		{"GET", "/health", PermPublic, "", s.health, 0},
		{"GET", "/metrics", PermServerMetrics, "", s.metrics, 0},
		{"GET", "/openapi.json", PermAuthenticated, "", s.openapi, 0},
		{"POST", "/v1/workflows", PermDefinitionsWrite, "register", s.registerDefinition, routeDecides},
		{"GET", "/v1/workflows", PermDefinitionsRead, "get", s.getWorkflow, 0},
		{"POST", "/v1/run", PermRunsStart, "start", s.executeWorkflow, routeDecides},
		{"GET", "/v1/runs/:id", PermRunsRead, "get", s.getRun, 0},
		{"GET", "/v1/runs/:id/events", PermEventsRead, "history", s.runEvents, 0},
		{"POST", "/v1/runs/:id/pause", PermRunsControl, "pause", s.control(engine.EventRunPaused), 0},
		{"POST", "/v1/runs/:id/resume", PermRunsControl, "resume", s.control(engine.EventRunResumed), 0},
		{"POST", "/v1/runs/:id/cancel", PermRunsControl, "cancel", s.control(engine.EventRunCancelled), 0},
		{"POST", "/v1/runs/:id/retry", PermRunsControl, "retry", s.control(engine.EventRunRetried), 0},
		{"POST", "/api/v1/tenants/:tenantId/workflows", PermRunsStart, "start", s.executeWorkflow, routeDecides},
		{"GET", "/api/v1/tenants/:tenantId/workflows", PermRunsRead, "list", s.listRuns, 0},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId", PermRunsRead, "get", s.getRun, 0},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/pause", PermRunsControl, "pause", s.control(engine.EventRunPaused), 0},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/resume", PermRunsControl, "resume", s.control(engine.EventRunResumed), 0},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/cancel", PermRunsControl, "cancel", s.control(engine.EventRunCancelled), 0},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/retry", PermRunsControl, "retry", s.control(engine.EventRunRetried), 0},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId/metrics", PermMetricsRead, "metrics", s.runMetrics, 0},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId/events", PermEventsRead, "history", s.runEvents, 0},
		{"GET", "/api/v1/tenants/:tenantId/events", PermEventsRead, "audit", s.tenantEvents, 0},
		{"POST", "/api/v1/tenants/:tenantId/definitions", PermDefinitionsWrite, "register", s.registerDefinition, routeDecides},
		{"GET", "/api/v1/tenants/:tenantId/definitions", PermDefinitionsRead, "list", s.listDefinitions, 0},
		{"GET", "/api/v1/tenants/:tenantId/definitions/:name/versions/:version", PermDefinitionsRead, "get", s.getDefinitionVersion, 0},
		{"POST", "/api/v1/dag/validate", PermDefinitionsRead, "validate", s.validateDAG, routeCallerTenant},
		{"POST", "/v1/tasks/:id", PermWorkersPoll, "poll", s.taskPost, routeDecides},
		{"POST", "/v1/tasks/:id/:verb", PermWorkersPoll, "report", s.taskVerb, routeLease},
		{"POST", "/api/v1/tenants/:tenantId/tasks/:id", PermWorkersPoll, "poll", s.taskPost, routeDecides},
		{"POST", "/api/v1/tenants/:tenantId/tasks/:id/:verb", PermWorkersPoll, "report", s.taskVerb, routeLease},
	}
}

// extendWrite gives an answer that waits (a long poll) or runs long (a
// stream) d more than WriteTimeout from now to be written. An answer that
// extends its deadline again and again (a stream, an export) keeps one
// controller for it.
func (s *Server) extendWrite(rc *http.ResponseController, d time.Duration) {
	if s.WriteTimeout > 0 {
		rc.SetWriteDeadline(time.Now().Add(d + s.WriteTimeout))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
