package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
)

// digestWriter feeds SHA-256 length-prefixed strings and fixed-width
// numbers (8 bytes, big-endian), so that no two different sequences of
// fields encode alike. The chain hashes of run, schedule and admin events
// and the digests of checkpoints are all written with it: stored databases
// and exported checkpoints hold them, so its encoding must never change.
type digestWriter struct {
	h hash.Hash
	n [8]byte
}

func newDigestWriter() *digestWriter { return &digestWriter{h: sha256.New()} }

// newChainWriter starts the hash of one entry of a hash-chained log: the
// hash of the entry before it ("" for the first), then, written by the
// caller, the entry's fields in its own order.
func newChainWriter(prev string) *digestWriter {
	w := newDigestWriter()
	w.str(prev)
	return w
}

func (w *digestWriter) str(s string) {
	w.num(int64(len(s)))
	w.h.Write([]byte(s))
}

func (w *digestWriter) num(n int64) {
	binary.BigEndian.PutUint64(w.n[:], uint64(n))
	w.h.Write(w.n[:])
}

func (w *digestWriter) sum() string { return hex.EncodeToString(w.h.Sum(nil)) }
