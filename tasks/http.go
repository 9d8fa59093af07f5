package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sony/gobreaker/v2"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// TypeHTTP is the task type of HTTP.
const TypeHTTP = "http"

// HTTP task defaults and limits.
const (
	// DefaultHTTPTimeout bounds a request whose task sets no "timeout".
	DefaultHTTPTimeout = 30 * time.Second
	// DefaultMaxResponseBytes caps a response body when HTTPConfig does not.
	DefaultMaxResponseBytes = 1 << 20
	// MaxRedirects is how many redirects one request follows.
	MaxRedirects = 5
	// maxErrorBody is how much of an unexpected response's body an error
	// message quotes.
	maxErrorBody = 256
)

// HTTPConfig configures HTTP. The zero value is a working configuration:
// every target but unspecified, link-local and metadata addresses allowed,
// defaults for the rest.
type HTTPConfig struct {
	// Allow, when not empty, limits requests to the targets it lists; Deny
	// refuses the targets it lists and wins over Allow. Entries are what
	// ParseRules accepts: CIDRs, addresses, host names, *.wildcards. Address
	// rules are checked against the address actually dialled, after DNS
	// resolution and on every redirect; host-name rules against the host
	// name the request (or redirect) names. Deny rules also cover the other
	// names of an address (loopback and unspecified addresses of both
	// families are one host; NAT64 addresses are their IPv4 address); allow
	// rules match the address dialled only. The unspecified addresses
	// (0.0.0.0/8, ::), link-local addresses (169.254.0.0/16 with the cloud
	// metadata service, fe80::/10) and the metadata addresses fd00:ec2::254
	// and 100.100.100.200 are refused unless an address rule of Allow covers
	// them.
	Allow, Deny []string
	// DefaultTimeout bounds a request whose task sets no "timeout"; default
	// DefaultHTTPTimeout. The attempt's own timeout still applies.
	DefaultTimeout time.Duration
	// MaxResponseBytes caps a response body; a task may set a lower
	// "max_response_bytes". Default DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Breaker configures the circuit breakers, one per tenant and host:port.
	Breaker BreakerConfig
	// Adaptive configures the adaptive concurrency limits, one per
	// host:port over all tenants (key "http:host:port"): a request waits
	// for a slot of its host's limit; a 429, a 503 or a timeout lowers it,
	// and their Retry-After pauses the host. Off unless Adaptive.Enabled.
	Adaptive AdaptiveConfig
	// Transport sends the requests; nil is a transport whose dialer enforces
	// Allow and Deny and which ignores proxy environment variables. A
	// Transport given here is used as is: only its own dialer decides which
	// addresses it connects to.
	Transport http.RoundTripper
	// Metrics receives the adaptive limits' series (see
	// NewAdaptiveLimits), the gauge of open breakers,
	// orchestrator_circuit_breakers_open{kind="http_host"}, and with
	// Breaker.TargetMetrics one per breaker,
	// orchestrator_circuit_breaker_state{kind="http_host",tenant,name="host:port"};
	// nil registers none. One HTTP per set.
	Metrics *metrics.Set
}

// HTTP runs "http" tasks: one outbound request per attempt. Its config and
// input fields are "method" (default GET), "url" (required by run time,
// http or https), "headers" (an object of strings), "body" (a string sent as
// is, or any other JSON value sent as JSON), "timeout" (a Go duration),
// "expect_status" (the statuses that succeed; default any 2xx) and
// "max_response_bytes". The output is {"status", "headers" (lowercased name:
// first value), "body" (parsed when the response is JSON, else a string)}.
//
// Connection errors, timeouts, 5xx and 429 are retryable (codes
// "connection_error", "timeout", "http_5xx", "http_4xx"), with the wait a
// Retry-After of a 429 or 503 asks for; other 4xx ("http_4xx"), other
// unexpected statuses ("unexpected_status"), refused targets
// ("target_refused"), too large responses ("response_too_large": a body
// over max_response_bytes as received; "output_too_large": an output over
// engine.MaxOutputBytes once the body is escaped as JSON), TLS
// certificate errors ("tls_error"), redirect loops ("too_many_redirects") and
// bad requests ("invalid_request") fail the task at once. While a tenant's
// circuit breaker for a host is open, that tenant's attempts calling the
// host are deferred without a request. With HTTPConfig.Adaptive, a request
// first takes a slot of its host's adaptive concurrency limit (see
// AdaptiveConfig), waiting for one; an attempt that cannot get one in time
// is deferred (reason throttled).
//
// HTTP is safe for concurrent use.
type HTTP struct {
	client      *http.Client
	timeout     time.Duration
	maxResponse int64
	openFor     time.Duration
	breakers    *breakers
	limits      *AdaptiveLimits // nil: requests are not limited
}

var (
	_ engine.Handler         = (*HTTP)(nil)
	_ engine.ConfigValidator = (*HTTP)(nil)
)

// httpFields are the fields of an http task's config and input.
var httpFields = map[string]bool{
	"method": true, "url": true, "headers": true, "body": true,
	"timeout": true, "expect_status": true, "max_response_bytes": true,
}

// httpMethods are the methods a task may use.
var httpMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace,
}

// NewHTTP returns the "http" handler. It fails on an invalid target rule or
// a negative limit.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	g, err := newGuard(cfg.Allow, cfg.Deny)
	if err != nil {
		return nil, fmt.Errorf("http task: %w", err)
	}
	if cfg.DefaultTimeout < 0 || cfg.MaxResponseBytes < 0 || cfg.Breaker.OpenFor < 0 {
		return nil, errors.New("http task: timeouts and limits must not be negative")
	}
	cfg.DefaultTimeout = orDefault(cfg.DefaultTimeout, DefaultHTTPTimeout)
	cfg.MaxResponseBytes = orDefault(cfg.MaxResponseBytes, DefaultMaxResponseBytes)
	cfg.Breaker.Failures = orDefault(cfg.Breaker.Failures, DefaultBreakerFailures)
	cfg.Breaker.OpenFor = orDefault(cfg.Breaker.OpenFor, DefaultBreakerOpenFor)
	limits, err := NewAdaptiveLimits("http:", cfg.Adaptive, cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("http task: %w", err)
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // a proxy would be dialled instead of the target, and checked instead of it
		t.DialContext = g.dialContext(newDialer())
		t.MaxResponseHeaderBytes = 1 << 20
		rt = t
	}
	h := &HTTP{
		timeout:     cfg.DefaultTimeout,
		maxResponse: cfg.MaxResponseBytes,
		openFor:     cfg.Breaker.OpenFor,
		breakers:    newBreakers("http_host", "", cfg.Breaker, cfg.Metrics),
		limits:      limits,
	}
	h.client = &http.Client{Transport: rt, CheckRedirect: checkRedirect}
	return h, nil
}

// orDefault returns v, or def when v is zero.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// errTooManyRedirects stops a redirect chain.
var errTooManyRedirects = fmt.Errorf("stopped after %d redirects", MaxRedirects)

func checkRedirect(_ *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return errTooManyRedirects
	}
	return nil
}

// ValidateConfig checks an http task's config: field types, unknown fields, a
// known method, an http(s) url, a timeout, statuses 100..599. An absent config
// is valid: the url may come from the input at run time.
func (h *HTTP) ValidateConfig(config json.RawMessage) []definition.Problem {
	var ps problems
	f := mergeFields(config, nil, httpFields, &ps)
	h.parseRequest(f, false, &ps)
	return ps
}

// BreakerState returns the state of tenant's circuit breaker for host,
// written "host:port" (the port is 80 or 443 when the url gives none):
// "closed", "half-open" or "open". A host never called is closed.
func (h *HTTP) BreakerState(tenant, host string) string {
	if hn, port, err := net.SplitHostPort(host); err == nil {
		host = net.JoinHostPort(normalizeHost(hn), port)
	}
	return h.breakers.state(breakerKey{tenant: tenant, name: host}).String()
}

// AdaptiveLimit returns the adaptive concurrency limit of host, written
// "host:port" as for BreakerState, and false when it has none (never
// called, or limits off).
func (h *HTTP) AdaptiveLimit(host string) (int, bool) {
	if hn, port, err := net.SplitHostPort(host); err == nil {
		host = net.JoinHostPort(normalizeHost(hn), port)
	}
	return h.limits.Limit(host)
}

// httpRequest is an http task's request, checked.
type httpRequest struct {
	method   string
	url      *url.URL
	headers  map[string]string
	body     []byte // nil: none
	bodyJSON bool
	timeout  time.Duration // 0: the default
	expect   []int         // empty: any 2xx
	maxBytes int64         // 0: the handler's limit
}

// parseRequest reads the request from f, adding what is wrong to ps. At run
// time the url is required.
func (h *HTTP) parseRequest(f fields, runtime bool, ps *problems) *httpRequest {
	r := &httpRequest{method: http.MethodGet}
	if m, ok := f.str("method", ps); ok && f.present("method") {
		up := strings.ToUpper(m)
		if !slices.Contains(httpMethods, up) {
			ps.add(f["method"].field, fmt.Sprintf("unknown method %q, want one of %s", truncate(m), strings.Join(httpMethods, ", ")))
		}
		r.method = up
	}
	if s, ok := f.str("url", ps); ok && f.present("url") {
		u, err := url.Parse(s)
		switch {
		case err != nil:
			ps.add(f["url"].field, fmt.Sprintf("not a valid URL: %q", truncate(s)))
		case u.Scheme != "http" && u.Scheme != "https":
			ps.add(f["url"].field, fmt.Sprintf("must be an http or https URL, got %q", truncate(s)))
		case u.Hostname() == "":
			ps.add(f["url"].field, fmt.Sprintf("has no host: %q", truncate(s)))
		default:
			r.url = u
		}
	} else if ok && runtime {
		ps.add("config.url", "required: set the url in the task's config or input")
	}
	r.headers = f.stringMap("headers", checkHeaderName, ps)
	for name, v := range r.headers {
		if strings.ContainsAny(v, "\r\n") {
			ps.add(f["headers"].field+"."+name, "must not contain line breaks")
		}
	}
	if f.present("body") {
		raw := f["body"].raw
		if strictjson.Kind(raw) == "string" {
			var s string
			_ = json.Unmarshal(raw, &s) // mergeFields decoded it as a JSON value
			r.body = []byte(s)
		} else {
			var b bytes.Buffer
			if err := json.Compact(&b, raw); err != nil {
				ps.add(f["body"].field, "invalid JSON")
			}
			r.body, r.bodyJSON = b.Bytes(), true
		}
	}
	r.timeout = f.duration("timeout", ps)
	if v := f["expect_status"]; f.present("expect_status") {
		var raws []json.RawMessage
		if strictjson.Kind(v.raw) != "array" || json.Unmarshal(v.raw, &raws) != nil {
			ps.add(v.field, "must be an array of status codes, got "+strictjson.Kind(v.raw))
		}
		for i, raw := range raws {
			n, msg := parseInteger(raw, 100, 599)
			if msg != "" {
				ps.add(fmt.Sprintf("%s[%d]", v.field, i), msg)
				continue
			}
			r.expect = append(r.expect, int(n))
		}
	}
	r.maxBytes = f.integer("max_response_bytes", 1, h.maxResponse, ps)
	return r
}

// checkHeaderName says what is wrong with a header name, or "".
func checkHeaderName(name string) string {
	if name == "" {
		return "header name must not be empty"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return fmt.Sprintf("invalid header name %q", truncate(name))
		}
	}
	return ""
}

// Run sends the attempt's request and returns the response.
func (h *HTTP) Run(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
	var ps problems
	f := mergeFields(a.Config, a.Input, httpFields, &ps)
	r := h.parseRequest(f, true, &ps)
	if len(ps) > 0 {
		return nil, engine.Permanent(&engine.TaskError{Code: "invalid_request", Message: ps.message()})
	}
	key := hostPort(r.url)
	b := h.breakers.get(breakerKey{tenant: a.TenantID, name: key})
	done, err := b.cb.Allow()
	if err != nil {
		d := b.remaining(h.openFor)
		why := "open after repeated failures"
		if errors.Is(err, gobreaker.ErrTooManyRequests) {
			why = "half-open with a probe request under way"
		}
		return nil, engine.Deferred(engine.ReasonCircuitOpen, d,
			fmt.Errorf("circuit breaker for %s is %s; no request sent, next try in %s", key, why, d.Round(time.Millisecond)))
	}
	p, err := h.limits.acquire(ctx, key)
	if err != nil {
		done(errNotCounted)
		return nil, err
	}
	res := h.do(ctx, r)
	p.release(res.signal(), res.pause)
	if res.busy && h.limits != nil {
		// A host that says it is busy is alive: its adaptive limit backs
		// off, and a burst of 503s as the limit finds the host's capacity
		// must not open the breaker and stop every call for OpenFor.
		res.health = errNotCounted
	}
	done(res.health)
	return res.out, res.err
}

// hostPort is the host:port of u, the target a breaker guards.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(normalizeHost(u.Hostname()), port)
}

// result is how a request went: the handler's answer, and what it says
// about the host's health (nil healthy, errHostFailed, errNotCounted) and
// load (overload: a 429, a 503 (busy) or a timeout; pause: its
// Retry-After).
type result struct {
	out      json.RawMessage
	err      error
	health   error
	overload bool
	busy     bool
	pause    time.Duration
}

// signal is what r says to the host's adaptive limit: a healthy answer's
// latency counts, an overload lowers the limit, the rest says nothing.
func (r *result) signal() signal {
	switch {
	case r.overload:
		return signalOverload
	case r.health == nil:
		return signalSample
	}
	return signalIgnore
}

// do sends r and reads the response.
func (h *HTTP) do(ctx context.Context, r *httpRequest) result {
	timeout := orDefault(r.timeout, h.timeout)
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(rctx, r.method, r.url.String(), body)
	if err != nil {
		return result{err: engine.Permanent(&engine.TaskError{Code: "invalid_request", Message: err.Error()}), health: errNotCounted}
	}
	for name, v := range r.headers {
		if http.CanonicalHeaderKey(name) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(name, v)
	}
	if r.bodyJSON && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "orchestrator")
	}
	target := r.method + " " + safeURL(r.url)
	resp, err := h.client.Do(req)
	if err != nil {
		return transportError(ctx, rctx, target, timeout, err)
	}
	defer resp.Body.Close()

	if !r.expected(resp.StatusCode) {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return statusError(target, resp, snippet, len(r.expect) > 0)
	}
	limit := orDefault(r.maxBytes, h.maxResponse)
	tooLarge := result{
		err: engine.Permanent(&engine.TaskError{Code: "response_too_large", Message: fmt.Sprintf(
			"%s: response body is over the limit of %d bytes", target, limit)}),
	}
	if r.method != http.MethodHead && resp.ContentLength > limit {
		return tooLarge
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return transportError(ctx, rctx, target, timeout, err)
	}
	if int64(len(data)) > limit {
		return tooLarge
	}
	out, err := marshalJSON(httpOutput{Status: resp.StatusCode, Headers: firstValues(resp.Header), Body: responseBody(resp.Header.Get("Content-Type"), data)})
	if err != nil {
		return result{err: fmt.Errorf("encode output: %w", err)}
	}
	if len(out) > engine.MaxOutputBytes {
		// max_response_bytes counts the body as received; JSON escaping
		// (quotes, backslashes, control bytes, invalid UTF-8) may grow it
		// past the limit on task outputs, which the engine would refuse.
		return result{err: engine.Permanent(&engine.TaskError{Code: engine.CodeOutputTooLarge, Message: fmt.Sprintf(
			"%s: the response body of %d bytes is within max_response_bytes (%d), but the task's output, the body escaped as JSON with status and headers, is %d bytes, over the limit of %d bytes on a task's output",
			target, len(data), limit, len(out), engine.MaxOutputBytes)})}
	}
	return result{out: out}
}

// marshalJSON is json.Marshal without escaping <, > and &, which would grow
// an HTML body sixfold in the output for no reader's benefit.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// httpOutput is the output of an http task.
type httpOutput struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// expected reports whether status succeeds.
func (r *httpRequest) expected(status int) bool {
	if len(r.expect) == 0 {
		return status >= 200 && status <= 299
	}
	return slices.Contains(r.expect, status)
}

// firstValues maps lowercased header names to their first values.
func firstValues(hdr http.Header) map[string]string {
	m := make(map[string]string, len(hdr))
	for name, vs := range hdr {
		if len(vs) > 0 {
			m[strings.ToLower(name)] = vs[0]
		}
	}
	return m
}

// responseBody is data parsed when the content type says JSON and it parses,
// else data as a JSON string.
func responseBody(contentType string, data []byte) json.RawMessage {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil &&
		(mt == "application/json" || strings.HasSuffix(mt, "+json")) && json.Valid(data) {
		return data
	}
	s, _ := marshalJSON(string(data)) // a string always encodes
	return s
}

// safeURL is u for messages, which the event log keeps: without user info,
// query and fragment, where credentials and tokens tend to hide.
func safeURL(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = nil, "", false, "", ""
	return c.String()
}
