package engine

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// sealedPrefix marks a secret sealed by a Sealer; the version names the
// scheme (AES-256-GCM, a random 12-byte nonce before the ciphertext).
const sealedPrefix = "sealed:v1:"

// ErrSealed: a stored secret cannot be opened: it was sealed under another
// key (the key file changed) or it was altered.
var ErrSealed = errors.New("sealed secret does not open")

// Sealer encrypts the webhook secrets the store keeps, so that a copy of
// the database alone does not give them away. It is safe for concurrent
// use.
type Sealer struct {
	aead cipher.AEAD
}

// sealerDomain separates the sealing key from any other use of the key
// material it is derived from.
const sealerDomain = "orchestrator trigger secrets v1"

// NewSealer returns a sealer whose key is derived from material (the
// server's key file: 32 secret bytes or more) under its own domain.
func NewSealer(material []byte) (*Sealer, error) {
	if len(material) < 32 {
		return nil, fmt.Errorf("sealer: %d bytes of key material, want at least 32", len(material))
	}
	h := sha256.New()
	h.Write([]byte(sealerDomain))
	h.Write(material)
	block, err := aes.NewCipher(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("sealer: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealer: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal returns plain encrypted and authenticated, bound to what it
// belongs to (tenant/name), so that a sealed value copied onto another
// trigger does not open.
func (s *Sealer) Seal(plain, boundTo string) string {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	out := s.aead.Seal(nonce, nonce, []byte(plain), []byte(boundTo))
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(out)
}

// Open returns the secret a stored value holds: a value Seal made, opened;
// any other value (stored without a sealer) as it is. Errors: ErrSealed.
func (s *Sealer) Open(stored, boundTo string) (string, error) {
	b64, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return stored, nil
	}
	if s == nil {
		return "", fmt.Errorf("%w: this server has no key to open it", ErrSealed)
	}
	raw, err := base64.RawStdEncoding.DecodeString(b64)
	n := s.aead.NonceSize()
	if err != nil || len(raw) < n {
		return "", ErrSealed
	}
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(boundTo))
	if err != nil {
		return "", ErrSealed
	}
	return string(plain), nil
}
