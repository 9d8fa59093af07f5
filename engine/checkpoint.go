package engine

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Checkpoint is a signed statement of how far one tenant's log went. A run's
// hash chain shows an accidental change but not a rewrite by someone who can
// write the database and recompute the chain; a checkpoint kept elsewhere
// (exported) does, and names the run: it signs the last event of every run
// that moved since the tenant's previous checkpoint, and the counts of the
// whole log up to its head. Checkpoints of a tenant number 1..n and chain by
// digest, each starting where the previous one ended.
type Checkpoint struct {
	TenantID    string    `json:"tenant_id"`
	Seq         int64     `json:"seq"` // 1..n per tenant
	At          time.Time `json:"at"`
	FromEventID int64     `json:"from_event_id"` // the previous checkpoint's HeadEventID; 0 for the first
	HeadEventID int64     `json:"head_event_id"` // the highest event id of the tenant it covers
	Events      int64     `json:"events"`        // the tenant's events with an id up to HeadEventID
	Runs        int64     `json:"runs"`          // the tenant's runs with an event up to HeadEventID
	// Heads are, by run id, the runs with events after FromEventID up to
	// HeadEventID, each with its last event up to HeadEventID.
	Heads       []RunHead `json:"heads"`
	HeadsDigest string    `json:"heads_digest"` // HeadsDigest(Heads)
	PrevDigest  string    `json:"prev_digest"`  // the previous checkpoint's Digest; "" for the first
	Digest      string    `json:"digest"`       // ComputeDigest
	PublicKey   string    `json:"public_key"`   // the Ed25519 key that signed, EncodePublicKey
	Signature   string    `json:"signature"`    // Ed25519 over the Digest's bytes, standard base64
}

// RunHead is the last event of a run as a checkpoint saw it.
type RunHead struct {
	RunID string `json:"run_id"`
	Seq   int64  `json:"seq"`
	Hash  string `json:"hash"`
}

// checkpointDomain separates checkpoint digests from every other SHA-256 of
// the program, and names the encoding, so that it can change.
const checkpointDomain = "orchestrator checkpoint v1"

// ErrCheckpointSignature: a checkpoint's digests or signature do not hold, or
// it was signed by a key the verifier does not trust.
var ErrCheckpointSignature = errors.New("checkpoint signature does not verify")

// HeadsDigest is the SHA-256 of heads in their order: the count, then each
// run id, seq and hash.
func HeadsDigest(heads []RunHead) string {
	w := newDigestWriter()
	w.str(checkpointDomain + " heads")
	w.num(int64(len(heads)))
	for _, h := range heads {
		w.str(h.RunID)
		w.num(h.Seq)
		w.str(h.Hash)
	}
	return w.sum()
}

// ComputeDigest is the SHA-256 of every field of c but Heads (which
// HeadsDigest stands for), Digest, PublicKey and Signature.
func (c *Checkpoint) ComputeDigest() string {
	w := newDigestWriter()
	w.str(checkpointDomain)
	w.str(c.TenantID)
	w.num(c.Seq)
	w.str(FormatTime(c.At))
	w.num(c.FromEventID)
	w.num(c.HeadEventID)
	w.num(c.Events)
	w.num(c.Runs)
	w.str(c.HeadsDigest)
	w.str(c.PrevDigest)
	return w.sum()
}

// Sign fills c's digests, public key and signature with key's.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) {
	c.At = c.At.UTC().Truncate(time.Microsecond)
	c.HeadsDigest = HeadsDigest(c.Heads)
	c.Digest = c.ComputeDigest()
	d, _ := hex.DecodeString(c.Digest)
	c.PublicKey = EncodePublicKey(key.Public().(ed25519.PublicKey))
	c.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, d))
}

// CheckSignature recomputes c's digests and checks its signature, by one of
// trusted or, when trusted is empty, by the key c names (which shows the
// checkpoint whole, not who signed it). Heads must be in run id order, once
// each. A failure wraps ErrCheckpointSignature and says what differs.
func (c *Checkpoint) CheckSignature(trusted []ed25519.PublicKey) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrCheckpointSignature}, args...)...)
	}
	for i := 1; i < len(c.Heads); i++ {
		if c.Heads[i-1].RunID >= c.Heads[i].RunID {
			return fail("heads out of run id order at %s", c.Heads[i].RunID)
		}
	}
	if d := HeadsDigest(c.Heads); d != c.HeadsDigest {
		return fail("heads digest %s, the heads give %s", c.HeadsDigest, d)
	}
	if d := c.ComputeDigest(); d != c.Digest {
		return fail("digest %s, the fields give %s", c.Digest, d)
	}
	pub, err := ParsePublicKey(c.PublicKey)
	if err != nil {
		return fail("%v", err)
	}
	if len(trusted) > 0 && !trustedKey(trusted, pub) {
		return fail("signed by %s, which is not a trusted key", c.PublicKey)
	}
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	d, _ := hex.DecodeString(c.Digest)
	if err != nil || !ed25519.Verify(pub, d, sig) {
		return fail("the signature is not %s's over the digest", c.PublicKey)
	}
	return nil
}

func trustedKey(keys []ed25519.PublicKey, k ed25519.PublicKey) bool {
	for _, t := range keys {
		if t.Equal(k) {
			return true
		}
	}
	return false
}

// EncodePublicKey writes an Ed25519 public key as checkpoints and the
// operator's commands show it: standard base64 of its 32 bytes.
func EncodePublicKey(k ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(k) }

// ParsePublicKey reads a key written by EncodePublicKey.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %q: want the standard base64 of %d bytes", s, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}
