package store

import (
	"sync/atomic"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// writerLoad is how busy the writer is, for engine.LoadReporter.
type writerLoad struct {
	queued  int          // events (at least one per request) waiting; protected by DB.mu
	latency atomic.Int64 // smoothed duration of recent group commits, ns
}

// latencyWeight is the weight of the newest commit in the smoothed latency:
// an eighth, so that one slow fsync does not count as saturation but a run
// of them does within a few commits.
const latencyWeight = 8

// committed records a group commit that took d. Only the writer goroutine
// calls it.
func (l *writerLoad) committed(d time.Duration) {
	old := l.latency.Load()
	l.latency.Store(old + (d.Nanoseconds()-old)/latencyWeight)
}

// WriterLoad implements engine.LoadReporter: the events queued for the
// writer, and the latency of its group commits, smoothed. A commit counts
// once it is over: one large commit under way (a run of 10,000 tasks) is
// not saturation, and a writer that falls behind shows in its queue.
func (db *DB) WriterLoad() engine.WriterLoad {
	db.mu.Lock()
	queued := db.load.queued
	db.mu.Unlock()
	return engine.WriterLoad{QueuedEvents: queued, CommitLatency: time.Duration(db.load.latency.Load())}
}

var _ engine.LoadReporter = (*DB)(nil)
