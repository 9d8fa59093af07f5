package tasks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// statusError classifies a response whose status was not expected.
func statusError(target string, resp *http.Response, snippet []byte, explicit bool) result {
	status := resp.StatusCode
	msg := fmt.Sprintf("%s: %s", target, resp.Status)
	if explicit {
		msg += " (not in expect_status)"
	}
	if s := strings.TrimSpace(string(snippet)); s != "" {
		msg += ": " + s
	}
	// 429 and 503 say the target is overloaded: they lower its adaptive
	// limit, and their Retry-After pauses it.
	overload := status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
	switch {
	case status >= 500, status == http.StatusTooManyRequests:
		code := "http_5xx"
		if status < 500 {
			code = "http_4xx"
		}
		te := &engine.TaskError{Code: code, Message: msg}
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok && overload {
			return result{err: engine.RetryAfter(te, d), health: errHostFailed, overload: true, busy: true, pause: d}
		}
		return result{err: te, health: errHostFailed, overload: overload, busy: overload}
	case status >= 400:
		return result{err: engine.Permanent(&engine.TaskError{Code: "http_4xx", Message: msg})}
	}
	return result{err: engine.Permanent(&engine.TaskError{Code: "unexpected_status", Message: msg})}
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int64(definition.MaxDurationLimit/time.Second))) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), definition.MaxDurationLimit), true
}

// transportError classifies an error sending a request or reading its
// response. ctx is the attempt's context, rctx the request's.
func transportError(ctx, rctx context.Context, target string, timeout time.Duration, err error) result {
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err // url.Error repeats the URL, query included
	}
	var refused *refusedError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	switch {
	case errors.As(err, &refused):
		return result{err: engine.Permanent(&engine.TaskError{Code: "target_refused", Message: target + ": " + refused.Error()}), health: errNotCounted}
	case errors.Is(err, errTooManyRedirects):
		return result{err: engine.Permanent(&engine.TaskError{Code: "too_many_redirects", Message: target + ": " + errTooManyRedirects.Error()}), health: errNotCounted}
	case errors.Is(ctx.Err(), context.Canceled):
		return result{err: fmt.Errorf("%s: %w", target, ctx.Err()), health: errNotCounted}
	case ctx.Err() != nil:
		return result{err: &engine.TaskError{Code: "timeout", Message: target + ": the attempt's timeout expired during the request"}, health: errHostFailed, overload: true}
	case rctx.Err() != nil:
		return result{err: &engine.TaskError{Code: "timeout", Message: fmt.Sprintf("%s: no complete response within %s", target, timeout)}, health: errHostFailed, overload: true}
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return result{err: engine.Permanent(&engine.TaskError{Code: "tls_error", Message: target + ": " + cause.Error()}), health: errNotCounted}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		code := "connection_error"
		if dnsErr.IsTimeout {
			code = "timeout"
		}
		return result{err: &engine.TaskError{Code: code, Message: target + ": " + dnsMessage(dnsErr)}, health: errHostFailed}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return result{err: &engine.TaskError{Code: "timeout", Message: target + ": " + cause.Error()}, health: errHostFailed, overload: true}
	}
	return result{err: &engine.TaskError{Code: "connection_error", Message: target + ": " + cause.Error()}, health: errHostFailed}
}

// dnsMessage says why a lookup failed without naming the server's resolver
// ("lookup x on 10.0.0.2:53: no such host"): task errors are recorded in the
// event log and shown to the tenant, and the resolver is the server's own
// business.
func dnsMessage(e *net.DNSError) string {
	why := e.Err
	switch {
	case e.IsNotFound:
		why = "no such host"
	case e.IsTimeout:
		why = "the DNS lookup timed out"
	case e.Server != "" && strings.Contains(why, hostOf(e.Server)):
		// Such as "read udp 10.0.0.5:41234->10.0.0.2:53: connection refused".
		why = "the DNS lookup failed"
	}
	return "lookup " + e.Name + ": " + why
}
