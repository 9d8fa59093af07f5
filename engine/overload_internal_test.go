package engine

import (
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// TestOverload_Hysteresis: the engine turns overloaded when a signal passes
// its limit, stays so while any signal is over its low-water mark, and
// turns back only after every signal has stayed under it for Hold.
func TestOverload_Hysteresis(t *testing.T) {
	t.Parallel()
	o := newOverload(OverloadConfig{MaxReadyTasks: 10, MaxWriterQueue: -1, MaxCommitLatency: -1, MaxActiveRuns: -1,
		MaxActiveBytes: -1, Hold: time.Second}, metrics.NewSet())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ready := func(n int) sample { return sample{ready: n, runs: 1 << 30, bytes: 1 << 40} }
	steps := []struct {
		ready int
		at    time.Duration
		want  bool
	}{
		{10, 0, false},                   // at the limit is not over it
		{11, time.Millisecond, true},     // over it: overloaded
		{9, 10 * time.Second, true},      // under the limit but over 80% of it: still overloaded
		{8, 11 * time.Second, true},      // calm from here
		{8, 12*time.Second - 1, true},    // not calm for Hold yet
		{9, 12 * time.Second, true},      // over the low-water mark again: calm starts over
		{5, 13 * time.Second, true},      // calm again
		{5, 14 * time.Second, false},     // calm for Hold: accepting again
		{10, 15 * time.Second, false},    // back at the limit is not over it
		{10_000, 16 * time.Second, true}, // over again
		{0, 16*time.Second + 1, true},    // a sudden drop still waits out Hold
		{0, 17*time.Second + 1, false},   // and then recovers
		{0, 100 * time.Second, false},    // and stays so
	}
	for i, s := range steps {
		o.observe(ready(s.ready), at(s.at))
		if got := o.status().Overloaded; got != s.want {
			t.Fatalf("step %d (ready %d at %s): overloaded %v, want %v", i, s.ready, s.at, got, s.want)
		}
	}
}

// TestOverload_ReasonsNameEverySignalOver: each signal over its limit is a
// reason with its value and limit; a negative limit turns a signal off.
func TestOverload_ReasonsNameEverySignalOver(t *testing.T) {
	t.Parallel()
	o := newOverload(OverloadConfig{MaxWriterQueue: 5, MaxCommitLatency: time.Millisecond, MaxReadyTasks: 5,
		MaxActiveRuns: -1, MaxActiveBytes: 100, Hold: time.Second}, metrics.NewSet())
	o.observe(sample{writer: WriterLoad{QueuedEvents: 6, CommitLatency: 2 * time.Millisecond}, haveWriter: true,
		ready: 5, runs: 1 << 30, bytes: 101}, time.Now())
	st := o.status()
	if !st.Overloaded || st.RetryAfter != time.Second {
		t.Fatalf("status %+v: want overloaded, retry after 1s", st)
	}
	var got []string
	for _, r := range st.Reasons {
		got = append(got, r.Signal)
		if r.Value <= r.Limit {
			t.Errorf("reason %+v: value not over limit", r)
		}
	}
	want := []string{SignalWriterQueue, SignalCommitLatency, SignalActiveBytes}
	if len(got) != len(want) {
		t.Fatalf("reasons %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("reasons %v, want %v", got, want)
		}
	}
}
