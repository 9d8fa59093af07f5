package definition

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"time"
)

// Wait returns the wait before the attempt after attempt n (n >= 1) failed:
// InitialInterval * Backoff^(n-1), capped at MaxInterval, varied by Jitter.
// The jitter is derived from the run, task and attempt, so a replay or a
// recovered engine computes the same wait.
func (r Retry) Wait(runID, taskID string, n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(r.InitialInterval) * math.Pow(r.Backoff, float64(n-1))
	if max := float64(r.MaxInterval); max > 0 && d > max {
		d = max
	}
	if r.Jitter > 0 {
		h := fnv.New64a()
		h.Write([]byte(runID))
		h.Write([]byte{0})
		h.Write([]byte(taskID))
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
		x := h.Sum64()
		// splitmix64's finalizer: FNV alone barely moves the high bits when
		// only the attempt number changes.
		x ^= x >> 30
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 27
		x *= 0x94d049bb133111eb
		x ^= x >> 31
		u := float64(x>>11) / float64(1<<53) // uniform in [0, 1)
		d *= 1 + r.Jitter*(2*u-1)
	}
	if d > float64(MaxDurationLimit) {
		d = float64(MaxDurationLimit)
	}
	return time.Duration(d)
}
