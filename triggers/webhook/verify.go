// Package webhook verifies webhook deliveries: GitHub's X-Hub-Signature-256,
// Stripe-style Stripe-Signature with a replay tolerance, and a shared bearer
// secret. The API's receiver reads the raw body, asks Verify, and only then
// starts the run through engine.Triggers.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// ErrSignature: a delivery's signature (or token) is missing, malformed or
// wrong, or its timestamp is outside the tolerance. The receiver answers
// 401 and writes nothing.
var ErrSignature = errors.New("webhook signature does not verify")

// DefaultSignatureHeader is where a github signature is read unless the
// webhook names another header.
const DefaultSignatureHeader = "X-Hub-Signature-256"

// StripeHeader carries a Stripe-style signature.
const StripeHeader = "Stripe-Signature"

func refuse(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrSignature)
}

// Verify checks that body with headers h was sent by someone who holds the
// webhook's secret (stored as engine.Trigger.Secret keeps it), at now.
// Errors wrap ErrSignature and say what is wrong without revealing what
// would have been right.
func Verify(cfg *engine.WebhookConfig, secret string, h http.Header, body []byte, now time.Time) error {
	switch cfg.Verify {
	case engine.VerifyGitHub:
		name := cfg.SignatureHeader
		if name == "" {
			name = DefaultSignatureHeader
		}
		v := h.Get(name)
		if v == "" {
			return refuse("no %s header", name)
		}
		sig, ok := strings.CutPrefix(v, "sha256=")
		if !ok {
			return refuse("%s: want sha256=HEX", name)
		}
		if !equalHex(sig, Sign(secret, body)) {
			return refuse("%s does not match the body", name)
		}
		return nil
	case engine.VerifyStripe:
		return verifyStripe(secret, h.Get(StripeHeader), body, now)
	case engine.VerifyBearer:
		scheme, token, ok := strings.Cut(h.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return refuse("want Authorization: Bearer SECRET")
		}
		if !engine.SecretMatches(strings.TrimSpace(token), secret) {
			return refuse("the bearer secret does not match")
		}
		return nil
	}
	return refuse("unknown verification %q", cfg.Verify)
}

func verifyStripe(secret, header string, body []byte, now time.Time) error {
	if header == "" {
		return refuse("no %s header", StripeHeader)
	}
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return refuse("%s: want t=UNIX,v1=HEX", StripeHeader)
	}
	at := time.Unix(sec, 0)
	if d := now.Sub(at); d > engine.StripeTolerance || d < -engine.StripeTolerance {
		return refuse("%s: t is %s from now, outside the tolerance of %s", StripeHeader, d.Round(time.Second), engine.StripeTolerance)
	}
	want := SignStripe(secret, sec, body)
	for _, s := range sigs {
		if equalHex(s, want) {
			return nil
		}
	}
	return refuse("%s: no v1 signature matches the body", StripeHeader)
}

// Sign returns the hex HMAC-SHA256 of body with secret: what GitHub sends
// after sha256=.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// SignStripe returns the v1 signature of body sent at unix time t.
func SignStripe(secret string, t int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(t, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// equalHex compares a signature sent with the one computed in constant
// time, case-insensitively.
func equalHex(got, want string) bool {
	return hmac.Equal([]byte(strings.ToLower(got)), []byte(want))
}
