// Package client is the typed Go client of the orchestrator's HTTP API: the
// tenant API under /api/v1/tenants/{tenantId}/, the short /v1 API of the
// tenant "default", the external worker protocol, health and metrics.
//
// Every method takes a context first and answers either a typed value or an
// error: a *Error for any answer outside 2xx (decoded from
// application/problem+json), or a wrapped transport error. The request and
// answer types, the states and the error codes are those of package
// api/wire; the client depends on nothing else but the standard library.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of a client made by New.
const (
	// DefaultTimeout bounds each request; long polls get their wait plus
	// LongPollSlack instead.
	DefaultTimeout = 30 * time.Second
	// DefaultTenant is the tenant the tenant API acts on unless WithTenant
	// says otherwise; it is also the tenant of the short /v1 API.
	DefaultTenant = "default"
	// LongPollSlack is added to a poll's wait to bound the whole request.
	LongPollSlack = 10 * time.Second
	// maxErrorBody caps how much of an error answer is read.
	maxErrorBody = 1 << 20
)

// OrchestratorClient calls one orchestrator server as one tenant. It holds
// no mutable state after New, so it is safe for concurrent use.
type OrchestratorClient struct {
	base    string // scheme://host[/prefix], without a trailing slash
	hc      *http.Client
	timeout time.Duration // per request; <= 0: none
	tenant  string
	actor   string // sent as X-Actor when not empty
	apiKey  string // sent as Authorization: Bearer when not empty
}

// Option configures a client made by New.
type Option func(*OrchestratorClient)

// WithHTTPClient makes the client send its requests through hc (its
// transport, cookies and its own Timeout, which then also applies to long
// polls). The default is a client of its own over http.DefaultTransport.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *OrchestratorClient) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithTimeout bounds each request (DefaultTimeout unless set); a long poll
// is bounded by its wait plus LongPollSlack instead, and a stream only until
// its answer begins. d <= 0 leaves requests bounded by their context alone.
func WithTimeout(d time.Duration) Option {
	return func(c *OrchestratorClient) { c.timeout = d }
}

// WithTenant names the tenant the tenant API and the worker protocol act on
// (DefaultTenant unless set). The client does not check it: the server
// answers 400 or 404 for an id it does not accept.
func WithTenant(tenant string) Option {
	return func(c *OrchestratorClient) { c.tenant = tenant }
}

// WithActor names whom the calls are made on behalf of (X-Actor header):
// the server records it beside the key, the actor, on the events a call
// causes (e.g. a pause). Only a key whose role allows it (owner, operator,
// admin) may send it; the server refuses it otherwise, and on
// administrative calls.
func WithActor(actor string) Option {
	return func(c *OrchestratorClient) { c.actor = actor }
}

// WithAPIKey sends key (orch_<id>_<secret>) as Authorization: Bearer on
// every request: the server authenticates the caller by it, records it as
// the actor of the events its calls cause, and allows what its role
// allows. Without one only a server in AUTH=local answers, and only to a
// client on its own host.
func WithAPIKey(key string) Option {
	return func(c *OrchestratorClient) { c.apiKey = key }
}

// New returns a client of the server at baseURL (e.g. "http://localhost:8084",
// optionally with a path prefix). It fails only when baseURL is not an
// absolute http or https URL.
func New(baseURL string, opts ...Option) (*OrchestratorClient, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("orchestrator client: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("orchestrator client: base URL %q: want http://host[:port] or https://...", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("orchestrator client: base URL %q: must not have a query or fragment", baseURL)
	}
	c := &OrchestratorClient{
		base:    strings.TrimRight(u.String(), "/"),
		hc:      &http.Client{},
		timeout: DefaultTimeout,
		tenant:  DefaultTenant,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Tenant returns the tenant the client acts on.
func (c *OrchestratorClient) Tenant() string { return c.tenant }

// BaseURL returns the server's base URL as New was given it, without a
// trailing slash.
func (c *OrchestratorClient) BaseURL() string { return c.base }

// Response is a raw answer of Do.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a raw request, for what the typed methods cannot express (a
// route they do not know, a body that is not JSON). path is relative to the
// base URL and may carry a query ("/v1/runs?x=1"); body is sent as is, with
// Content-Type application/json unless header sets one. It answers the
// whole response for a 2xx status and a *Error otherwise.
func (c *OrchestratorClient) Do(ctx context.Context, method, path string, header http.Header, body []byte) (*Response, error) {
	res, data, err := c.send(ctx, call{method: method, path: path, header: header, body: body, timeout: c.timeout})
	if err != nil {
		return nil, err
	}
	return &Response{Status: res.StatusCode, Header: res.Header, Body: data}, nil
}

// call is one request the client sends.
type call struct {
	method  string
	path    string // escaped, relative to base, may include a query
	query   url.Values
	header  http.Header
	body    []byte // nil: no body; sent with Content-Type application/json unless header sets one
	timeout time.Duration
	accept  string // default application/json
	admin   bool   // an administrative call: no X-Actor (the admin log records the key alone)
	noKey   bool   // a webhook delivery: never the API key (its signature is the credential)
}

// send performs c and reads the whole answer; a non-2xx answer is a *Error.
func (c *OrchestratorClient) send(ctx context.Context, cl call) (*http.Response, []byte, error) {
	if cl.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cl.timeout)
		defer cancel()
	}
	res, err := c.start(ctx, cl)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return res, nil, decodeError(res, cl)
	}
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("orchestrator: %s %s: read answer: %w", cl.method, pathOnly(cl.path), err)
	}
	return res, data, nil
}

// start sends the request of cl and returns the response once its header
// has arrived; the caller closes the body.
func (c *OrchestratorClient) start(ctx context.Context, cl call) (*http.Response, error) {
	target := c.base + cl.path
	if len(cl.query) > 0 {
		sep := "?"
		if strings.Contains(cl.path, "?") {
			sep = "&"
		}
		target += sep + cl.query.Encode()
	}
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, target, body)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: %s %s: %w", cl.method, pathOnly(cl.path), err)
	}
	for k, vs := range cl.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if cl.body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("Accept") == "" {
		accept := cl.accept
		if accept == "" {
			accept = "application/json"
		}
		req.Header.Set("Accept", accept)
	}
	if c.actor != "" && req.Header.Get("X-Actor") == "" && cl.method != http.MethodGet && !cl.admin && !cl.noKey {
		req.Header.Set("X-Actor", c.actor)
	}
	if c.apiKey != "" && req.Header.Get("Authorization") == "" && !cl.noKey {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: %s %s: %w", cl.method, pathOnly(cl.path), err)
	}
	return res, nil
}

// doJSON sends cl with in marshalled as the body (nil: no body) and decodes
// a 2xx answer into out (nil: the answer is dropped).
func (c *OrchestratorClient) doJSON(ctx context.Context, cl call, in, out any) (*http.Response, error) {
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("orchestrator: %s %s: encode request: %w", cl.method, pathOnly(cl.path), err)
		}
		cl.body = b
	}
	if cl.timeout == 0 {
		cl.timeout = c.timeout
	}
	res, data, err := c.send(ctx, cl)
	if err != nil {
		return res, err
	}
	if out != nil && res.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return res, fmt.Errorf("orchestrator: %s %s: decode answer: %w", cl.method, pathOnly(cl.path), err)
		}
	}
	return res, nil
}

// pathOnly drops the query of a path for error messages.
func pathOnly(p string) string {
	path, _, _ := strings.Cut(p, "?")
	return path
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }

// tenantPath is the tenant API path of the client's tenant followed by
// the given escaped parts.
func (c *OrchestratorClient) tenantPath(parts ...string) string {
	return "/api/v1/tenants/" + seg(c.tenant) + "/" + strings.Join(parts, "/")
}

// formatTime writes a filter time the way the server parses it.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ErrStop ends a walk of AllWorkflows or AllTenantEvents early when the
// callback returns it; the walk then returns nil.
var ErrStop = errors.New("orchestrator client: stop")
