package tasks

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// capacityServer is a local HTTP server with a capacity: up to C requests
// at once are answered after Base; past C the latency grows as
// Base*(inflight/C)^2, and past 2C it answers 503 at once.
type capacityServer struct {
	*httptest.Server
	C    int
	Base time.Duration

	inflight atomic.Int64
	served   atomic.Int64 // 200s
	refused  atomic.Int64 // 503s
	peak     atomic.Int64
}

func newCapacityServer(t testing.TB, c int, base time.Duration) *capacityServer {
	t.Helper()
	s := &capacityServer{C: c, Base: base}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
		}
		if n > int64(2*s.C) {
			s.refused.Add(1)
			http.Error(w, "over capacity", http.StatusServiceUnavailable)
			return
		}
		f := max(1, float64(n)/float64(s.C))
		time.Sleep(time.Duration(float64(s.Base) * f * f))
		s.served.Add(1)
		w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return s
}

// host is the server's host:port.
func (s *capacityServer) host(t testing.TB) string {
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// settled waits up to within for read to stay in [lo, hi] for n samples in
// a row, every tick; it returns how long that took from the start (the
// first sample of the stable run), or false.
func settled(within, tick time.Duration, n int, lo, hi float64, read func() (float64, bool)) (time.Duration, bool) {
	start := time.Now()
	in := 0
	var since time.Duration
	for time.Since(start) < within {
		v, ok := read()
		switch {
		case ok && v >= lo && v <= hi:
			if in == 0 {
				since = time.Since(start)
			}
			in++
			if in >= n {
				return since, true
			}
		default:
			in = 0
		}
		time.Sleep(tick)
	}
	return 0, false
}

func TestAdaptiveLimit_HTTPHostConvergesOnTheServersCapacity(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	const capacity = 8
	srv := newCapacityServer(t, capacity, 10*time.Millisecond)
	set := metrics.NewSet()
	h := newHTTP(t, HTTPConfig{Adaptive: AdaptiveConfig{Enabled: true}, Metrics: set})
	host := srv.host(t)

	// 4C callers, each doing tasks one after the other; a task calls until
	// it gets a 200, as the engine's retries would.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var started, completed, unexpected atomic.Int64
	for range 4 * capacity {
		wg.Go(func() {
			for ctx.Err() == nil {
				started.Add(1)
				for {
					out, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
					if err == nil {
						if status, _, _ := output(t, out); status == 200 {
							completed.Add(1)
						}
						break
					}
					if codeOf(err) != "http_5xx" {
						unexpected.Add(1)
						break
					}
				}
			}
		})
	}
	took, ok := settled(20*time.Second, 50*time.Millisecond, 40, 0.8*capacity, 1.2*capacity,
		func() (float64, bool) { v, ok := h.AdaptiveLimit(host); return float64(v), ok })
	stop()
	wg.Wait()
	limit, _ := h.AdaptiveLimit(host)
	total := srv.served.Load() + srv.refused.Load()
	share := float64(srv.refused.Load()) / float64(total)
	t.Logf("C=%d: settled after %s (stable for 2 s), limit %d, peak in flight at the server %d, %d calls, %d answered 503 (%.3f%%)",
		capacity, took.Round(time.Millisecond), limit, srv.peak.Load(), total, srv.refused.Load(), 100*share)
	is.True(ok)                                    // the limit settled within 20% of the capacity
	is.True(share < 0.01)                          // fewer than 1% of the calls saw a 503
	is.Equal(unexpected.Load(), int64(0))          // no call failed other than with a 503
	is.Equal(completed.Load(), started.Load())     // every task completed
	is.True(completed.Load() > int64(20*capacity)) // the test did some work
	var b writeBuffer
	set.WritePrometheus(&b)
	is.True(b.contains(`orchestrator_adaptive_limit{key="http:` + host + `"}`))       // the limit is a gauge per host
	is.True(b.contains(`orchestrator_adaptive_drops_total{key="http:` + host + `"}`)) // and the drops a counter
}

// writeBuffer collects /metrics text.
type writeBuffer struct{ b []byte }

func (w *writeBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *writeBuffer) contains(s string) bool {
	return len(s) > 0 && indexOf(string(w.b), s) >= 0
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestAdaptiveLimit_RetryAfterPausesTheHost(t *testing.T) {
	t.Parallel()

	t.Run("no request reaches the host until Retry-After has passed", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		var mu sync.Mutex
		var pausedAt time.Time
		var arrivals []time.Time
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if pausedAt.IsZero() {
				pausedAt = time.Now()
				w.Header().Set("Retry-After", "1")
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return
			}
			arrivals = append(arrivals, time.Now())
		})
		h := newHTTP(t, HTTPConfig{Adaptive: AdaptiveConfig{Enabled: true}})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
		d, ok := retryAfterOf(t, err)
		is.True(ok && d == time.Second) // the 429's own attempt asks the engine for the wait
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
				is.NoErr(err) // the others waited out the pause, then got through
			})
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		is.Equal(len(arrivals), 5) // every waiting request was sent once the pause was over
		for _, at := range arrivals {
			is.True(at.Sub(pausedAt) >= time.Second) // none before the second had passed
		}
	})

	t.Run("a pause longer than the wait allowed defers the attempt without a request", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "30")
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		})
		h := newHTTP(t, HTTPConfig{Adaptive: AdaptiveConfig{Enabled: true, MaxWait: 50 * time.Millisecond}})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
		is.Equal(codeOf(err), "http_5xx") // the first request gets the 503
		_, err = h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
		reason, d, ok := deferredOf(t, err)
		is.True(ok)                                                  // the next attempt is deferred
		is.Equal(reason, engine.ReasonThrottled)                     // as throttled, not charged to the retry budget
		is.True(d > 29*time.Second && d <= 30*time.Second)           // until the pause ends
		is.Equal(n.Load(), int64(1))                                 // without a request
		is.True(engine.Refunded(engine.ReasonThrottled))             // the engine gives the attempt back
		is.True(errors.Is(err, err) && codeOf(err) == CodeThrottled) // with the code throttled
	})
}
