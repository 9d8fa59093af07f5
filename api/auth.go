package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
)

// AuthMode says which requests need an API key.
type AuthMode string

const (
	// AuthLocal (the default): a request from a loopback address that
	// carries no key acts as the built-in admin "local", unless it carries
	// Forwarded, X-Forwarded-For or X-Real-Ip (a reverse proxy on the same
	// host forwards other hosts' requests); any other request needs a key.
	AuthLocal AuthMode = "local"
	// AuthRequired: every request needs a key but GET /health (and GET
	// /metrics with Server.MetricsPublic).
	AuthRequired AuthMode = "required"
)

// AuthModes lists every mode.
func AuthModes() []AuthMode { return []AuthMode{AuthLocal, AuthRequired} }

// Authenticator says who sends a request. It returns the principal; nil
// with a nil error for a request that carries no key and is not admitted
// without one (routes that need no key still serve it); or an error that
// refuses the request: a *Problem is answered as it is (401 for credentials
// that do not hold), any other error through problemFor. Implementations
// must be safe for concurrent use.
type Authenticator interface {
	Authenticate(r *http.Request) (*engine.Principal, error)
}

// KeyAuthenticator authenticates the API keys of Keys sent as
// Authorization: Bearer KEY. A key, when sent, is always checked, whatever
// the mode; without one, Mode decides.
type KeyAuthenticator struct {
	Keys *engine.Keys // nil: no key is valid (a server without an access store)
	Mode AuthMode     // "" is AuthLocal
}

// localAdmin is the principal of local callers in AuthLocal; principals are
// immutable, so every request shares it.
var localAdmin = engine.LocalAdmin()

// Authenticate implements Authenticator. Errors: 401 unauthenticated for a
// malformed Authorization header and for an unknown, revoked or expired key
// (the detail says which, once the secret matched); 403 tenant_suspended
// for a key of a suspended tenant; the store's errors otherwise.
func (a *KeyAuthenticator) Authenticate(r *http.Request) (*engine.Principal, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		if a.Mode != AuthRequired && IsLocal(r) {
			return localAdmin, nil
		}
		return nil, nil
	}
	if len(h) > 1 {
		return nil, unauthenticated("send one Authorization header, not "+fmt.Sprint(len(h)), true)
	}
	scheme, token, ok := strings.Cut(h[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return nil, unauthenticated("Authorization: want Bearer orch_<id>_<secret>", true)
	}
	if a.Keys == nil {
		return nil, unauthenticated("invalid API key: this server has no keys", true)
	}
	p, err := a.Keys.Authenticate(r.Context(), token)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, engine.ErrMalformedKey):
		return nil, unauthenticated(err.Error(), true)
	case errors.Is(err, engine.ErrKeyRevoked):
		return nil, unauthenticated("the API key was revoked", true)
	case errors.Is(err, engine.ErrKeyExpired):
		return nil, unauthenticated("the API key expired", true)
	case errors.Is(err, engine.ErrUnauthenticated):
		return nil, unauthenticated("invalid API key", true)
	}
	return nil, err
}

// IsLocal reports whether r comes from a loopback address and was not
// forwarded: a proxy on the same host that forwards other hosts' requests
// says so with Forwarded, X-Forwarded-For or X-Real-Ip.
func IsLocal(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
		if _, ok := r.Header[h]; ok {
			return false
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// unauthenticated is a 401 asking for a bearer token; invalid says that the
// token sent does not hold (RFC 6750's invalid_token).
func unauthenticated(detail string, invalid bool) *Problem {
	p := newProblem(http.StatusUnauthorized, wire.CodeUnauthenticated, detail)
	p.Authenticate = `Bearer realm="orchestrator"`
	if invalid {
		p.Authenticate += `, error="invalid_token"`
	}
	return p
}

// Authorizer is the policy step of authorization. It is asked, after the
// role check, on every request that acts on a tenant, with the caller, the
// route's action and operation, the tenant and what the route knows of the
// resource. It returns the decision to record in the events the request
// causes (nil: nothing to record), or an error refusing the request (a
// *Problem, 403 forbidden with the policy's reason). Implementations must be
// safe for concurrent use.
type Authorizer interface {
	Authorize(ctx context.Context, in *policy.Input) (*engine.PolicyDecision, error)
}

// PolicyAuthorizer asks an OPA policy. With a nil Policy it allows every
// request and records nothing.
type PolicyAuthorizer struct {
	Policy *policy.Engine
}

// Authorize implements Authorizer: a denial is 403 forbidden naming the
// action and the policy's reason (or why it failed, with the decision id,
// which the server's log names too).
func (a PolicyAuthorizer) Authorize(ctx context.Context, in *policy.Input) (*engine.PolicyDecision, error) {
	if a.Policy == nil {
		return nil, nil
	}
	d := a.Policy.Decide(ctx, in)
	if !d.Allow {
		p := newProblem(http.StatusForbidden, wire.CodeForbidden,
			fmt.Sprintf("the policy does not allow %s: %s (decision %s)", in.Action, d.Reason, d.ID))
		p.Permission = in.Action
		return nil, p
	}
	return &engine.PolicyDecision{ID: d.ID, Allow: true, Reason: d.Reason, PolicyHash: d.PolicyHash}, nil
}

// Permission names what a route does, as the role check sees it: an action
// of the engine's role table (engine.Actions), or PermPublic or
// PermAuthenticated for routes the role table does not cover.
type Permission string

// Permissions of the routes.
const (
	PermPublic        Permission = "public"        // no key needed: GET /health
	PermAuthenticated Permission = "authenticated" // any valid key, any role: the OpenAPI document
	// PermSigned: no key is asked for or read (an Authorization header is
	// the webhook's own bearer secret); the webhook's signature is the
	// credential, which the handler verifies before it writes anything.
	PermSigned Permission = "signed"

	PermServerMetrics    = Permission(engine.ActionServerMetrics)    // GET /metrics (public with MetricsPublic)
	PermServerBackup     = Permission(engine.ActionServerBackup)     // POST /api/v1/admin/backup
	PermServerCheckpoint = Permission(engine.ActionServerCheckpoint) // sign, list, export checkpoints
	PermTenantsManage    = Permission(engine.ActionTenantsManage)    // create, list, update, suspend, resume tenants
	PermTenantsRead      = Permission(engine.ActionTenantsRead)      // read one's own tenant
	PermKeysManage       = Permission(engine.ActionKeysManage)       // create, list, revoke a tenant's keys
	PermAdminLogRead     = Permission(engine.ActionAdminLogRead)     // read the admin log
	PermPolicyReload     = Permission(engine.ActionPolicyReload)     // reload the policy
	PermDefinitionsWrite = Permission(engine.ActionDefinitionsWrite) // register a definition
	PermDefinitionsRead  = Permission(engine.ActionDefinitionsRead)  // read, list definitions; validate a DAG
	PermRunsStart        = Permission(engine.ActionRunsStart)        // start a run
	PermRunsControl      = Permission(engine.ActionRunsControl)      // pause, resume, cancel, retry a run
	PermRunsRead         = Permission(engine.ActionRunsRead)         // read, list runs
	PermEventsRead       = Permission(engine.ActionEventsRead)       // a run's history, the tenant's audit query
	PermMetricsRead      = Permission(engine.ActionMetricsRead)      // a run's metrics
	PermWorkersPoll      = Permission(engine.ActionWorkersPoll)      // poll, heartbeat, complete, fail as an external worker
	PermSchedulesWrite   = Permission(engine.ActionSchedulesWrite)   // create, change, pause, trigger, backfill, delete schedules
	PermSchedulesRead    = Permission(engine.ActionSchedulesRead)    // list and read schedules and their logs
	PermTriggersWrite    = Permission(engine.ActionTriggersWrite)    // create, change, delete webhooks and stream triggers
	PermTriggersRead     = Permission(engine.ActionTriggersRead)     // read webhooks and stream triggers
)

// Permissions lists every permission a route may need: PermPublic,
// PermAuthenticated and every action of the role table.
func Permissions() []Permission {
	out := []Permission{PermPublic, PermAuthenticated, PermSigned}
	for _, a := range engine.Actions() {
		out = append(out, Permission(a))
	}
	return out
}

// requestInfo is what the middleware learns about a request, kept once in
// its context: the request id from the start, the principal, tenant and
// permission once the route is known, whom the caller acts for and the
// policy's decision once authorized. Only the request's goroutine writes it.
type requestInfo struct {
	id        string
	route     string // the route table's method and path, once routed
	principal *engine.Principal
	tenant    string
	perm      Permission
	op        string
	onBehalf  string
	decision  *engine.PolicyDecision
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

// PrincipalFrom returns who sends the request ctx belongs to: nil before
// authentication and on a route that needs no key when none was sent.
func PrincipalFrom(ctx context.Context) *engine.Principal { return infoFrom(ctx).principal }

// TenantFrom returns the tenant the request ctx belongs to acts on: its
// {tenantId}, DefaultTenant on the short API, "" on routes outside any
// tenant.
func TenantFrom(ctx context.Context) string { return infoFrom(ctx).tenant }

// PermissionFrom returns the permission of the route the request ctx
// belongs to, or "" before routing.
func PermissionFrom(ctx context.Context) Permission { return infoFrom(ctx).perm }

// CallerFrom returns who the events the request causes record: the
// principal's actor, whom it acts for (X-Actor) and the policy's decision.
func CallerFrom(ctx context.Context) engine.Caller {
	ri := infoFrom(ctx)
	c := engine.Caller{OnBehalf: ri.onBehalf, Policy: ri.decision}
	if ri.principal != nil {
		c.Actor = ri.principal.Actor()
	}
	return c
}
