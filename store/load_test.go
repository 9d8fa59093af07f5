package store

import (
	"context"
	"database/sql"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"
)

// TestWriterLoad_CountsQueueAndSlowCommits: while the writer is held in a
// commit, the writes queued behind it count as queued events; once the slow
// commit is over it shows in the smoothed latency, and the queue is empty;
// an idle writer's latency decays.
func TestWriterLoad_CountsQueueAndSlowCommits(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "load.db"), Options{})
	is.NoErr(err) // open
	t.Cleanup(func() { db.Close() })
	is.Equal(db.WriterLoad().QueuedEvents, 0) // idle: nothing queued

	entered, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- db.write(ctx, func(*sql.Tx) error {
			close(entered)
			<-release
			return nil
		})
	}()
	<-entered // the writer is inside the held commit
	start := time.Now()
	const behind = 5
	done := make(chan error, behind)
	for i := 0; i < behind; i++ {
		go func() { done <- db.write(ctx, func(*sql.Tx) error { return nil }) }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for db.WriterLoad().QueuedEvents < behind {
		if time.Now().After(deadline) {
			t.Fatalf("queued %d, want %d", db.WriterLoad().QueuedEvents, behind)
		}
		time.Sleep(time.Millisecond)
	}
	for time.Since(start) < 20*time.Millisecond {
		time.Sleep(time.Millisecond) // make the held commit slow
	}
	age := time.Since(start)
	close(release)
	is.NoErr(<-held) // the held write commits
	for i := 0; i < behind; i++ {
		is.NoErr(<-done) // and the writes behind it
	}
	l := db.WriterLoad()
	is.Equal(l.QueuedEvents, 0) // nothing queued any more
	// The smoothed latency carries the slow commit: an eighth of it, less
	// an eighth for each commit after it at most.
	floor := float64(age) / latencyWeight * math.Pow(1-1.0/latencyWeight, behind)
	is.True(float64(l.CommitLatency) >= floor)

	// Once nothing is written, each look at the idle writer lets the
	// latency decay, so that an engine refusing starts for it recovers.
	for db.WriterLoad().CommitLatency > l.CommitLatency/100 {
		if time.Now().After(deadline) {
			t.Fatalf("latency %s did not decay from %s", db.WriterLoad().CommitLatency, l.CommitLatency)
		}
	}
}
