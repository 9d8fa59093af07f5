package api

import (
	"context"
	"net/http"
)

// Principal is who sends a request, as the Server's Authenticator
// established it. Handlers read it with PrincipalFrom.
type Principal struct {
	// ID names the caller: Anonymous for the local caller that
	// LocalAuthenticator admits; an API key's id once keys exist.
	ID string
	// Actor is recorded as the actor of the events the request causes.
	Actor string
}

// Anonymous is the ID of the principal LocalAuthenticator admits.
const Anonymous = "anonymous"

// Authenticator says who sends a request. An error refuses the request: a
// *Problem is answered as it is (401 for credentials that do not hold),
// any other error as a 500. Implementations must be safe for concurrent use.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// LocalAuthenticator admits every request as the anonymous local caller,
// whose actor is the X-Actor header ("api" without one): the server's
// behaviour until API keys name callers. The handlers that record an actor
// refuse one that is too long or holds control characters.
type LocalAuthenticator struct{}

// Authenticate implements Authenticator; it never fails.
func (LocalAuthenticator) Authenticate(r *http.Request) (Principal, error) {
	a := r.Header.Get("X-Actor")
	if a == "" {
		a = ActorAPI
	}
	return Principal{ID: Anonymous, Actor: a}, nil
}

// Authorizer decides whether a principal may do what a route needs (its
// Permission) in a tenant ("" for routes outside any tenant: health,
// metrics, the OpenAPI document, DAG validation). An error refuses the
// request before its handler runs, like an Authenticator's. It is where role
// checks and policies plug in. Implementations must be safe for concurrent
// use.
type Authorizer interface {
	Authorize(ctx context.Context, p Principal, tenant string, perm Permission) error
}

// AllowAll is the Authorizer that allows everything: the server's behaviour
// until roles exist.
type AllowAll struct{}

// Authorize implements Authorizer; it never refuses.
func (AllowAll) Authorize(context.Context, Principal, string, Permission) error { return nil }

// Permission names what a route does, as a role check sees it:
// "<resource>.<action>". Every route of the table has one.
type Permission string

// Permissions of the routes.
const (
	PermHealthRead          Permission = "health.read"          // GET /health
	PermMetricsRead         Permission = "metrics.read"         // GET /metrics
	PermAPIDocRead          Permission = "openapi.read"         // GET /openapi.json
	PermRunsStart           Permission = "runs.start"           // start a run
	PermRunsRead            Permission = "runs.read"            // read, list runs and their metrics
	PermRunsPause           Permission = "runs.pause"           // pause a run
	PermRunsResume          Permission = "runs.resume"          // resume a run
	PermRunsCancel          Permission = "runs.cancel"          // cancel a run
	PermRunsRetry           Permission = "runs.retry"           // retry a run or one of its tasks
	PermEventsRead          Permission = "events.read"          // a run's history, the tenant's audit query
	PermDefinitionsRegister Permission = "definitions.register" // store a definition version
	PermDefinitionsRead     Permission = "definitions.read"     // read, list definitions
	PermDefinitionsValidate Permission = "definitions.validate" // validate a DAG without storing it
	PermTasksPoll           Permission = "tasks.poll"           // lease a task as an external worker
	PermTasksReport         Permission = "tasks.report"         // heartbeat, complete or fail a leased task
)

// Permissions lists every permission a route needs.
func Permissions() []Permission {
	return []Permission{PermHealthRead, PermMetricsRead, PermAPIDocRead, PermRunsStart, PermRunsRead, PermRunsPause,
		PermRunsResume, PermRunsCancel, PermRunsRetry, PermEventsRead, PermDefinitionsRegister, PermDefinitionsRead,
		PermDefinitionsValidate, PermTasksPoll, PermTasksReport}
}

// requestInfo is what the middleware learns about a request, kept once in
// its context: the request id from the start, the principal, tenant and
// permission once the route is known. Only the request's goroutine writes it.
type requestInfo struct {
	id        string
	principal Principal
	tenant    string
	perm      Permission
}

type ctxKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// RequestIDFrom returns the id of the request ctx belongs to (its
// X-Request-Id), or "".
func RequestIDFrom(ctx context.Context) string { return infoFrom(ctx).id }

// PrincipalFrom returns who sends the request ctx belongs to; the zero
// Principal before authentication.
func PrincipalFrom(ctx context.Context) Principal { return infoFrom(ctx).principal }

// TenantFrom returns the tenant the request ctx belongs to acts on: its
// {tenantId}, DefaultTenant on the short API, "" on routes outside any
// tenant.
func TenantFrom(ctx context.Context) string { return infoFrom(ctx).tenant }

// PermissionFrom returns the permission of the route the request ctx
// belongs to, or "" before routing.
func PermissionFrom(ctx context.Context) Permission { return infoFrom(ctx).perm }
