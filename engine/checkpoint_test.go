package engine

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"
)

func testCheckpoint(t *testing.T) (Checkpoint, ed25519.PrivateKey) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{TenantID: "acme", Seq: 2, At: time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC),
		FromEventID: 10, HeadEventID: 25, Events: 25, Runs: 3, PrevDigest: "ab",
		Heads: []RunHead{{RunID: "r1", Seq: 4, Hash: "h1"}, {RunID: "r2", Seq: 9, Hash: "h2"}}}
	cp.Sign(key)
	return cp, key
}

func TestCheckpoint_SignatureCoversEveryField(t *testing.T) {
	t.Parallel()
	signed, key := testCheckpoint(t)
	pub := key.Public().(ed25519.PublicKey)
	is.New(t).NoErr(signed.CheckSignature([]ed25519.PublicKey{pub})) // as signed

	for name, change := range map[string]func(*Checkpoint){
		"tenant":        func(c *Checkpoint) { c.TenantID = "other" },
		"seq":           func(c *Checkpoint) { c.Seq++ },
		"time":          func(c *Checkpoint) { c.At = c.At.Add(time.Microsecond) },
		"from event id": func(c *Checkpoint) { c.FromEventID-- },
		"head event id": func(c *Checkpoint) { c.HeadEventID++ },
		"events":        func(c *Checkpoint) { c.Events++ },
		"runs":          func(c *Checkpoint) { c.Runs-- },
		"a head's seq":  func(c *Checkpoint) { c.Heads[1].Seq++ },
		"a head's hash": func(c *Checkpoint) { c.Heads[0].Hash = "h9" },
		"a head gone":   func(c *Checkpoint) { c.Heads = c.Heads[:1] },
		"prev digest":   func(c *Checkpoint) { c.PrevDigest = "cd" },
		"signature": func(c *Checkpoint) {
			sig, _ := base64.StdEncoding.DecodeString(c.Signature)
			sig[7] ^= 1
			c.Signature = base64.StdEncoding.EncodeToString(sig)
		},
		"heads order": func(c *Checkpoint) { c.Heads[0], c.Heads[1] = c.Heads[1], c.Heads[0] },
		// Recomputing the digests without the key is not enough.
		"digests recomputed": func(c *Checkpoint) {
			c.Events++
			c.HeadsDigest = HeadsDigest(c.Heads)
			c.Digest = c.ComputeDigest()
		},
	} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			cp := signed
			cp.Heads = append([]RunHead(nil), signed.Heads...)
			change(&cp)
			err := cp.CheckSignature(nil)
			is.True(errors.Is(err, ErrCheckpointSignature)) // refused
		})
	}

	t.Run("another key's signature is whole but not trusted", func(t *testing.T) {
		is := is.New(t)
		_, other, _ := ed25519.GenerateKey(nil)
		cp := signed
		cp.Sign(other)
		is.NoErr(cp.CheckSignature(nil)) // consistent with the key it names
		err := cp.CheckSignature([]ed25519.PublicKey{pub})
		is.True(errors.Is(err, ErrCheckpointSignature)) // but not the trusted one
	})
}

func TestParsePublicKey(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	_, key, _ := ed25519.GenerateKey(nil)
	pub := key.Public().(ed25519.PublicKey)
	got, err := ParsePublicKey(EncodePublicKey(pub) + "\n")
	is.NoErr(err)
	is.True(got.Equal(pub)) // round trip
	for _, bad := range []string{"", "not base64!", "AAAA"} {
		_, err := ParsePublicKey(bad)
		is.True(err != nil) // refused
	}
}
