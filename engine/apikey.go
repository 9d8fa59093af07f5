package engine

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// An API key is orch_<id>_<secret>: the prefix makes a leaked key easy to
// recognise (and to scan for), the id finds the stored row without the
// secret, and the secret is 256 random bits of which only the SHA-256 is
// stored. Both parts are lowercase hex, so a key is one word to a shell and
// to a double click.
const (
	KeyPrefix = "orch_"
	// keyIDBytes random bytes name a key: 16 hex characters.
	keyIDBytes = 8
	// keySecretBytes random bytes are a key's secret: 64 hex characters.
	keySecretBytes = 32
)

// Bounds of the parts ParseAPIKey accepts; keys made by NewAPIKey sit inside
// them, and so may keys of a later format.
const (
	minKeyID, maxKeyID         = 12, 64
	minKeySecret, maxKeySecret = 43, 128
)

// MaxKeyTaskTypes is the most task types a worker key may name.
const MaxKeyTaskTypes = 64

// KeyRequest is what a new key should be.
type KeyRequest struct {
	TenantID  string   // "" for an admin key, required otherwise
	Role      Role     //
	Name      string   // [A-Za-z0-9_.-]{1,64}; policies may match on it
	TaskTypes []string // worker keys only: the task types it may lease
	ExpiresAt time.Time
}

// Validate returns why r cannot make a key, naming the field, or nil.
func (r *KeyRequest) Validate(now time.Time) error {
	switch {
	case !r.Role.Valid():
		return &FieldError{Field: "role", Reason: fmt.Sprintf("%q: want one of admin, owner, operator, viewer, worker", r.Role)}
	case !definition.ValidName(r.Name):
		return &FieldError{Field: "name", Reason: "must match [A-Za-z0-9_.-]{1,64} and not be . or .."}
	case r.Role == RoleAdmin && r.TenantID != "":
		return &FieldError{Field: "tenant", Reason: "an admin key belongs to no tenant"}
	case r.Role != RoleAdmin && r.TenantID == "":
		return &FieldError{Field: "tenant", Reason: "required for role " + string(r.Role)}
	case r.TenantID != "" && ValidateTenantID(r.TenantID) != nil:
		return &FieldError{Field: "tenant", Reason: ValidateTenantID(r.TenantID).Error()}
	case len(r.TaskTypes) > 0 && r.Role != RoleWorker:
		return &FieldError{Field: "task_types", Reason: "only worker keys name task types"}
	case len(r.TaskTypes) > MaxKeyTaskTypes:
		return &FieldError{Field: "task_types", Reason: fmt.Sprintf("at most %d", MaxKeyTaskTypes)}
	case !r.ExpiresAt.IsZero() && !r.ExpiresAt.After(now):
		return &FieldError{Field: "expires_at", Reason: "must be in the future"}
	}
	for i, t := range r.TaskTypes {
		if !definition.ValidName(t) {
			return &FieldError{Field: fmt.Sprintf("task_types[%d]", i), Reason: fmt.Sprintf("%q: must match [A-Za-z0-9_.-]{1,64}", t)}
		}
		if slices.Contains(r.TaskTypes[:i], t) {
			return &FieldError{Field: fmt.Sprintf("task_types[%d]", i), Reason: fmt.Sprintf("%q is named twice", t)}
		}
	}
	return nil
}

// FieldError is a request refused for one field.
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// NewAPIKey makes a key as r asks, created at now. It returns the stored
// form and the token, which is shown to its owner once and never stored.
func NewAPIKey(r KeyRequest, now time.Time) (*APIKey, string, error) {
	if err := r.Validate(now); err != nil {
		return nil, "", err
	}
	var b [keyIDBytes + keySecretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	id := hex.EncodeToString(b[:keyIDBytes])
	secret := hex.EncodeToString(b[keyIDBytes:])
	var types []string
	if len(r.TaskTypes) > 0 {
		types = slices.Clone(r.TaskTypes)
	}
	k := &APIKey{ID: id, TenantID: r.TenantID, Name: r.Name, Role: r.Role, TaskTypes: types,
		SecretHash: HashSecret(secret), CreatedAt: now.UTC().Truncate(time.Microsecond)}
	if !r.ExpiresAt.IsZero() {
		k.ExpiresAt = r.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
	return k, KeyPrefix + id + "_" + secret, nil
}

// ParseAPIKey splits a token into its id and secret, or returns an error
// wrapping ErrMalformedKey that never repeats the token.
func ParseAPIKey(token string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(token, KeyPrefix)
	if !ok {
		return "", "", fmt.Errorf("want the prefix %s: %w", KeyPrefix, ErrMalformedKey)
	}
	id, secret, ok = strings.Cut(rest, "_")
	switch {
	case !ok:
		return "", "", fmt.Errorf("want %s<id>_<secret>: %w", KeyPrefix, ErrMalformedKey)
	case len(id) < minKeyID || len(id) > maxKeyID || !allIn(id, isIDByte):
		return "", "", fmt.Errorf("the id must be %d to %d lowercase letters or digits: %w", minKeyID, maxKeyID, ErrMalformedKey)
	case len(secret) < minKeySecret || len(secret) > maxKeySecret || !allIn(secret, isSecretByte):
		return "", "", fmt.Errorf("the secret must be %d to %d letters, digits, - or _: %w", minKeySecret, maxKeySecret, ErrMalformedKey)
	}
	return id, secret, nil
}

func isIDByte(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func isSecretByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func allIn(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// HashSecret is what is stored of a key's secret: its SHA-256, in hex.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// SecretMatches reports whether secret hashes to hash, in time that does
// not depend on where the two differ.
func SecretMatches(secret, hash string) bool {
	got := HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1
}
