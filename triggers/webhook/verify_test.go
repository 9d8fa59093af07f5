package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/triggers/webhook"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"zen":"Keep it logically awesome."}`)
	now := time.Unix(1_700_000_000, 0)
	const secret = "It's a Secret to Everybody"
	stripe := func(at time.Time, sig string) http.Header {
		return http.Header{"Stripe-Signature": {"t=" + strconv.FormatInt(at.Unix(), 10) + ",v1=" + sig}}
	}
	gh := &engine.WebhookConfig{Verify: engine.VerifyGitHub}
	st := &engine.WebhookConfig{Verify: engine.VerifyStripe}
	be := &engine.WebhookConfig{Verify: engine.VerifyBearer}
	for _, c := range []struct {
		name   string
		cfg    *engine.WebhookConfig
		secret string
		h      http.Header
		ok     bool
	}{
		// GitHub's documented example: this secret and body sign to this digest.
		{"github's example", gh, secret, http.Header{"X-Hub-Signature-256": {"sha256=" + webhook.Sign(secret, body)}}, true},
		{"github, upper-case hex", gh, secret, http.Header{"X-Hub-Signature-256": {"sha256=" + upper(webhook.Sign(secret, body))}}, true},
		{"github, another secret", gh, "other", http.Header{"X-Hub-Signature-256": {"sha256=" + webhook.Sign(secret, body)}}, false},
		{"github, sha1", gh, secret, http.Header{"X-Hub-Signature-256": {"sha1=00"}}, false},
		{"github, none", gh, secret, http.Header{}, false},
		{"stripe, now", st, secret, stripe(now, webhook.SignStripe(secret, now.Unix(), body)), true},
		{"stripe, 4m59s old", st, secret, stripe(now.Add(-299*time.Second), webhook.SignStripe(secret, now.Add(-299*time.Second).Unix(), body)), true},
		{"stripe, 5m01s old", st, secret, stripe(now.Add(-301*time.Second), webhook.SignStripe(secret, now.Add(-301*time.Second).Unix(), body)), false},
		{"stripe, t changed", st, secret, stripe(now.Add(time.Second), webhook.SignStripe(secret, now.Unix(), body)), false},
		{"bearer", be, engine.HashSecret("s3cret-s3cret-s3cret"), http.Header{"Authorization": {"Bearer s3cret-s3cret-s3cret"}}, true},
		{"bearer, wrong", be, engine.HashSecret("s3cret-s3cret-s3cret"), http.Header{"Authorization": {"Bearer s3cret"}}, false},
		{"bearer, basic", be, engine.HashSecret("s3cret-s3cret-s3cret"), http.Header{"Authorization": {"Basic czNjcmV0"}}, false},
	} {
		err := webhook.Verify(c.cfg, c.secret, c.h, body, now)
		if c.ok && err != nil {
			t.Errorf("%s: %v, want verified", c.name, err)
		}
		if !c.ok && !errors.Is(err, webhook.ErrSignature) {
			t.Errorf("%s: %v, want ErrSignature", c.name, err)
		}
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// TestSign_GitHubVector checks Sign against the example in GitHub's
// documentation of webhook signatures.
func TestSign_GitHubVector(t *testing.T) {
	t.Parallel()
	got := webhook.Sign("It's a Secret to Everybody", []byte("Hello, World!"))
	if want := "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}
