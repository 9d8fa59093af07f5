package engine_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

var keyFormat = regexp.MustCompile(`^orch_[0-9a-f]{16}_[0-9a-f]{64}$`)

func TestNewAPIKey(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	now := time.Date(2025, 1, 2, 3, 4, 5, 6789, time.UTC)
	k, token, err := engine.NewAPIKey(engine.KeyRequest{TenantID: "acme", Role: engine.RoleWorker, Name: "py",
		TaskTypes: []string{"python"}, ExpiresAt: now.Add(time.Hour)}, now)
	is.NoErr(err)                         // made
	is.True(keyFormat.MatchString(token)) // orch_<16 hex>_<64 hex>
	id, secret, err := engine.ParseAPIKey(token)
	is.NoErr(err)      // the token parses
	is.Equal(id, k.ID) // to the key's id
	sum := sha256.Sum256([]byte(secret))
	is.Equal(k.SecretHash, hex.EncodeToString(sum[:]))       // the stored hash is the SHA-256 of the secret
	is.True(!strings.Contains(k.SecretHash, secret))         // never the secret itself
	is.True(engine.SecretMatches(secret, k.SecretHash))      // the secret matches its hash
	is.True(!engine.SecretMatches(secret+"0", k.SecretHash)) // another does not
	is.Equal(k.CreatedAt, now.Truncate(time.Microsecond))    // created now, as the store keeps times
	is.Equal(k.ExpiresAt, now.Add(time.Hour).Truncate(time.Microsecond))
	is.Equal(k.TaskTypes, []string{"python"})

	_, other, err := engine.NewAPIKey(engine.KeyRequest{TenantID: "acme", Role: engine.RoleWorker, Name: "py"}, now)
	is.NoErr(err)           // a second key of the same request
	is.True(other != token) // is another key
}

func TestKeyRequest_Validate(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name  string
		req   engine.KeyRequest
		field string
	}{
		{"unknown role", engine.KeyRequest{TenantID: "acme", Role: "root", Name: "x"}, "role"},
		{"no name", engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer}, "name"},
		{"name with a space", engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "my key"}, "name"},
		{"admin key in a tenant", engine.KeyRequest{TenantID: "acme", Role: engine.RoleAdmin, Name: "x"}, "tenant"},
		{"tenant key without tenant", engine.KeyRequest{Role: engine.RoleOwner, Name: "x"}, "tenant"},
		{"bad tenant id", engine.KeyRequest{TenantID: "a/b", Role: engine.RoleOwner, Name: "x"}, "tenant"},
		{"task types on an operator", engine.KeyRequest{TenantID: "acme", Role: engine.RoleOperator, Name: "x", TaskTypes: []string{"a"}}, "task_types"},
		{"bad task type", engine.KeyRequest{TenantID: "acme", Role: engine.RoleWorker, Name: "x", TaskTypes: []string{"ok", "not ok"}}, "task_types[1]"},
		{"a task type twice", engine.KeyRequest{TenantID: "acme", Role: engine.RoleWorker, Name: "x", TaskTypes: []string{"a", "a"}}, "task_types[1]"},
		{"expired already", engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "x", ExpiresAt: now}, "expires_at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			_, token, err := engine.NewAPIKey(c.req, now)
			var fe *engine.FieldError
			is.True(errors.As(err, &fe)) // refused for a field
			is.Equal(fe.Field, c.field)  // naming it
			is.True(fe.Reason != "")     // and why
			is.Equal(token, "")          // no key made
		})
	}
}

func TestParseAPIKey(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("ab", 32)
	cases := []struct {
		name, token string
	}{
		{"empty", ""},
		{"no prefix", "0123456789abcdef_" + secret},
		{"other prefix", "sk_0123456789abcdef_" + secret},
		{"no separator", "orch_0123456789abcdef" + secret},
		{"short id", "orch_0123_" + secret},
		{"uppercase id", "orch_0123456789ABCDEF_" + secret},
		{"short secret", "orch_0123456789abcdef_abc"},
		{"secret with a space", "orch_0123456789abcdef_" + secret[:60] + " abc"},
		{"secret with a newline", "orch_0123456789abcdef_" + secret + "\n"},
		{"long secret", "orch_0123456789abcdef_" + strings.Repeat("a", 129)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			_, _, err := engine.ParseAPIKey(c.token)
			is.True(errors.Is(err, engine.ErrMalformedKey))    // malformed
			is.True(errors.Is(err, engine.ErrUnauthenticated)) // which is a 401
			if c.token != "" {
				is.True(!strings.Contains(err.Error(), c.token)) // the token is not repeated
			}
		})
	}
	t.Run("a well-formed key", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		id, s, err := engine.ParseAPIKey("orch_0123456789abcdef_" + secret)
		is.NoErr(err)                    // parses
		is.Equal(id, "0123456789abcdef") // id
		is.Equal(s, secret)              // secret
	})
}

func FuzzParseAPIKey(f *testing.F) {
	f.Add("orch_0123456789abcdef_" + strings.Repeat("ab", 32))
	f.Add("orch__")
	f.Add("orch_a_b_c")
	f.Fuzz(func(t *testing.T, token string) {
		id, secret, err := engine.ParseAPIKey(token)
		if err != nil {
			if !errors.Is(err, engine.ErrMalformedKey) {
				t.Fatalf("ParseAPIKey(%q): %v does not wrap ErrMalformedKey", token, err)
			}
			return
		}
		if engine.KeyPrefix+id+"_"+secret != token {
			t.Fatalf("ParseAPIKey(%q) = %q, %q: not the token's parts", token, id, secret)
		}
		if strings.Contains(id, "_") {
			t.Fatalf("ParseAPIKey(%q): id %q holds the separator", token, id)
		}
	})
}
