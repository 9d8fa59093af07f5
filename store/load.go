package store

import (
	"sync/atomic"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// writerLoad is how busy the writer is, for engine.LoadReporter.
type writerLoad struct {
	queued  int          // events (at least one per request) waiting; protected by DB.mu
	latency atomic.Int64 // smoothed wait of recent writes from queued to durable, ns
	busy    atomic.Bool  // a group commit is under way
}

// latencyWeight is the weight of the newest commit in the smoothed latency:
// an eighth, so that one slow fsync does not count as saturation but a run
// of them does within a few commits.
const latencyWeight = 8

// committed records a group commit whose oldest write waited d from being
// queued until durable.
func (l *writerLoad) committed(d time.Duration) {
	for {
		old := l.latency.Load()
		if l.latency.CompareAndSwap(old, old+(d.Nanoseconds()-old)/latencyWeight) {
			return
		}
	}
}

// WriterLoad implements engine.LoadReporter: the events queued for the
// writer, and how long the oldest write of each group commit waited from
// Commit until it was durable (queue wait plus commit), smoothed: what a
// caller waits for its write. A write counts once it is durable; each look
// at an idle writer counts as a write that waited nothing.
func (db *DB) WriterLoad() engine.WriterLoad {
	db.mu.Lock()
	queued := db.load.queued
	idle := queued == 0 && !db.load.busy.Load()
	db.mu.Unlock()
	if idle {
		// Nobody waits: that counts as a write that waited nothing, or the
		// latency of the last busy moment would stay once writes stop (and
		// refused starts would keep them stopped).
		db.load.committed(0)
	}
	return engine.WriterLoad{QueuedEvents: queued, CommitLatency: time.Duration(db.load.latency.Load())}
}

var _ engine.LoadReporter = (*DB)(nil)
