package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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

// TestAdaptiveLimit_HTTPHostConvergesOnTheServersCapacity runs alone, not
// in parallel: other tests' work would slow our own calls, which the
// limiter would rightly read as latency.
func TestAdaptiveLimit_HTTPHostConvergesOnTheServersCapacity(t *testing.T) {
	is := is.New(t)
	const capacity = 8
	// A base latency well above what our own process adds to a call under
	// the race detector on a busy machine: the limiter must see the host's
	// queue, not ours.
	srv := newCapacityServer(t, capacity, 100*time.Millisecond)
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
	// Enough calls for the share of 503s to say something: the first burst
	// at the initial limit of 20 meets a host refusing past 16.
	waitFor(t, 20*time.Second, func() bool { return srv.served.Load()+srv.refused.Load() >= 800 })
	stop()
	wg.Wait()
	limit, _ := h.AdaptiveLimit(host)
	total := srv.served.Load() + srv.refused.Load()
	share := float64(srv.refused.Load()) / float64(total)
	t.Logf("C=%d, base %s: settled after %s (stable for 2 s), limit %d, peak in flight at the server %d, %d calls, %d answered 503 (%.3f%%)",
		capacity, srv.Base, took.Round(time.Millisecond), limit, srv.peak.Load(), total, srv.refused.Load(), 100*share)
	is.True(ok)                                    // the limit settled within 20% of the capacity
	is.True(share < 0.01)                          // fewer than 1% of the calls saw a 503
	is.Equal(unexpected.Load(), int64(0))          // no call failed other than with a 503
	is.Equal(completed.Load(), started.Load())     // every task completed
	is.True(completed.Load() > int64(20*capacity)) // the test did some work
	text := metricsText(set)
	is.True(strings.Contains(text, `orchestrator_adaptive_limit{key="http:`+host+`"}`))       // the limit is a gauge per host
	is.True(strings.Contains(text, `orchestrator_adaptive_drops_total{key="http:`+host+`"}`)) // and the drops a counter
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

// testLimiter is a limiter with the defaults but for the initial limit.
func testLimiter(initial int) *limiter {
	return newLimiter(AdaptiveConfig{Enabled: true, InitialLimit: initial}.withDefaults(), time.Now)
}

func TestLimiter(t *testing.T) {
	t.Parallel()

	t.Run("overload shrinks the limit once for all the calls started under it", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		l := testLimiter(10)
		var ps []*permit
		for range 10 {
			p, err := l.acquire(context.Background(), time.Second)
			is.NoErr(err) // within the limit
			ps = append(ps, p)
		}
		ps[0].release(signalOverload, 0)
		limit, inflight, _, drops := l.state()
		is.Equal(limit, 9)    // a decrease of a tenth
		is.Equal(inflight, 9) // the slot came back
		for _, p := range ps[1:5] {
			p.release(signalOverload, 0)
		}
		limit, inflight, _, drops = l.state()
		is.Equal(inflight, 5)      // the slots came back
		is.Equal(limit, 5)         // no more than the calls still in flight, no further tenth
		is.Equal(drops, uint64(5)) // every overload is counted
		ps[5].release(signalSample, 0)
		p, err := l.acquire(context.Background(), time.Second)
		is.NoErr(err)
		p.release(signalOverload, 0)
		limit, _, _, _ = l.state()
		is.Equal(limit, 4) // a call started under the new limit shrinks it again
	})

	t.Run("answered calls at low latency that use the whole limit raise it", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		// A clock the test moves: every call takes a millisecond,
		// whatever the machine's load.
		var mu sync.Mutex
		clock := time.Now()
		l := newLimiter(AdaptiveConfig{Enabled: true, InitialLimit: 2}.withDefaults(), func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return clock
		})
		for range 3 * adaptiveWindowSamples {
			p1, err := l.acquire(context.Background(), time.Second)
			is.NoErr(err)
			p2, err := l.acquire(context.Background(), time.Second)
			is.NoErr(err)
			mu.Lock()
			clock = clock.Add(time.Millisecond)
			mu.Unlock()
			p1.release(signalSample, 0)
			p2.release(signalSample, 0)
		}
		limit, _, _, _ := l.state()
		is.True(limit > 2) // grew
	})

	t.Run("the limit follows the target's capacity down and back up", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		// Rounds of calls on a clock the test moves: each round takes every
		// free slot, and all its calls take the target's latency at that
		// concurrency, base*max(1, n/capacity)^2.
		var mu sync.Mutex
		clock := time.Now()
		l := newLimiter(AdaptiveConfig{Enabled: true}.withDefaults(), func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return clock
		})
		const base = 10 * time.Millisecond
		rounds := func(capacity, n int) int {
			for range n {
				var ps []*permit
				for {
					p, err := l.acquire(context.Background(), 0)
					if err != nil {
						break
					}
					ps = append(ps, p)
				}
				f := max(1, float64(len(ps))/float64(capacity))
				mu.Lock()
				clock = clock.Add(time.Duration(float64(base) * f * f))
				mu.Unlock()
				for _, p := range ps {
					p.release(signalSample, 0)
				}
			}
			limit, _, _, _ := l.state()
			return limit
		}
		limit := rounds(8, 300)
		is.True(limit >= 7 && limit <= 9) // within 20% of a capacity of 8
		limit = rounds(4, 300)
		is.True(limit >= 3 && limit <= 5) // down with the capacity
		limit = rounds(8, 300)
		is.True(limit >= 7 && limit <= 9) // and back up when it recovers
		t.Logf("after the capacity came back: limit %d", limit)
	})

	t.Run("a waiter gets the next free slot, first come first served", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		l := testLimiter(1)
		p, err := l.acquire(context.Background(), time.Second)
		is.NoErr(err)
		order := make(chan int, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				q, err := l.acquire(context.Background(), 10*time.Second)
				is.NoErr(err) // waited for the slot
				order <- i
				q.release(signalIgnore, 0)
			})
			is.True(waitFor(t, 5*time.Second, func() bool { _, _, w, _ := l.state(); return w == i+1 })) // in line
		}
		p.release(signalIgnore, 0)
		wg.Wait()
		is.Equal(<-order, 0) // the first in line went first
		is.Equal(<-order, 1)
		_, inflight, waiting, _ := l.state()
		is.Equal(inflight, 0) // every slot given back
		is.Equal(waiting, 0)
	})

	t.Run("a waiter leaves the line when its wait or its context ends", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		l := testLimiter(1)
		p, err := l.acquire(context.Background(), time.Second)
		is.NoErr(err)
		_, err = l.acquire(context.Background(), 20*time.Millisecond)
		var we *waitError
		is.True(errors.As(err, &we) && !we.paused) // no slot within the wait
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			waitFor(t, 5*time.Second, func() bool { _, _, w, _ := l.state(); return w == 1 })
			cancel()
		}()
		_, err = l.acquire(ctx, time.Minute)
		is.True(errors.Is(err, context.Canceled)) // the context ended the wait
		_, _, waiting, _ := l.state()
		is.Equal(waiting, 0) // nobody left in line
		p.release(signalIgnore, 0)
		q, err := l.acquire(context.Background(), time.Second)
		is.NoErr(err) // the slot is free again
		q.release(signalIgnore, 0)
	})
}

func TestAdaptiveConfig_Validate(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	is.NoErr(AdaptiveConfig{}.Validate())                                     // the defaults are valid
	is.True(AdaptiveConfig{MinLimit: 5, MaxLimit: 4}.Validate() != nil)       // min over max
	is.True(AdaptiveConfig{InitialLimit: 2000}.Validate() != nil)             // initial over the default max
	is.True(AdaptiveConfig{MaxLimit: MaxAdaptiveLimit + 1}.Validate() != nil) // max over its bound
	is.True(AdaptiveConfig{Tolerance: 1}.Validate() != nil)                   // no margin
	is.True(AdaptiveConfig{MaxWait: 2 * MaxAdaptiveWait}.Validate() != nil)   // wait over its bound
	is.True(AdaptiveConfig{MinLimit: -1}.Validate() != nil)                   // negative
	is.Equal(AdaptiveConfig{MinLimit: 50}.withDefaults().InitialLimit, 50)    // the initial limit follows a higher min
}

func TestWithAdaptiveLimit(t *testing.T) {
	t.Parallel()
	newLimits := func(t *testing.T, cfg AdaptiveConfig) *AdaptiveLimits {
		cfg.Enabled = true
		a, err := NewAdaptiveLimits("task_type:", cfg, metrics.NewSet())
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	att := func(tenant string) *engine.Attempt {
		return &engine.Attempt{TenantID: tenant, RunID: "r", TaskID: "t", Type: "work", Attempt: 1}
	}

	t.Run("one tenant's full limit does not hold back another's attempts", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		release := make(chan struct{})
		h := WithAdaptiveLimit("work", engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
			if a.TenantID == "a" {
				<-release
			}
			return nil, nil
		}), newLimits(t, AdaptiveConfig{InitialLimit: 1, MaxWait: 20 * time.Millisecond}))
		done := make(chan error, 1)
		go func() { _, err := h.Run(context.Background(), att("a")); done <- err }()
		lim := h.(*typeLimit).limits
		is.True(waitFor(t, 5*time.Second, func() bool { l := lim.get("a/work"); _, n, _, _ := l.state(); return n == 1 })) // a's slot taken
		_, err := h.Run(context.Background(), att("a"))
		reason, _, ok := deferredOf(t, err)
		is.True(ok && reason == engine.ReasonThrottled) // a's next attempt is deferred after the wait
		_, err = h.Run(context.Background(), att("b"))
		is.NoErr(err) // b runs meanwhile
		close(release)
		is.NoErr(<-done)
	})

	t.Run("a panicking handler gives its slot back", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		h := WithAdaptiveLimit("work", engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
			panic("boom")
		}), newLimits(t, AdaptiveConfig{InitialLimit: 1}))
		func() {
			defer func() { recover() }()
			h.Run(context.Background(), att("a"))
		}()
		_, n, _, _ := h.(*typeLimit).limits.get("a/work").state()
		is.Equal(n, 0) // nothing left in flight
	})

	t.Run("a handler's RetryAfter lowers the limit and pauses its tenant's type", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		var calls atomic.Int32
		h := WithAdaptiveLimit("work", engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
			calls.Add(1)
			return nil, engine.RetryAfter(errors.New("busy"), time.Minute)
		}), newLimits(t, AdaptiveConfig{MaxWait: 10 * time.Millisecond}))
		_, err := h.Run(context.Background(), att("a"))
		_, ok := retryAfterOf(t, err)
		is.True(ok) // the handler's own answer goes to the engine
		_, err = h.Run(context.Background(), att("a"))
		reason, d, ok := deferredOf(t, err)
		is.True(ok && reason == engine.ReasonThrottled && d > 59*time.Second) // paused for the wait asked
		is.Equal(calls.Load(), int32(1))                                      // without calling the handler
		limit, _ := h.(*typeLimit).limits.Limit("a/work")
		is.Equal(limit, DefaultAdaptiveInitial*9/10/2) // lowered by a tenth, then halved: nothing else was in flight
		_, err = h.Run(context.Background(), att("b"))
		_, ok = retryAfterOf(t, err)
		is.True(ok) // another tenant is not paused
	})

	t.Run("limits off return the handler itself", func(t *testing.T) {
		is := is.New(t)
		inner := engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) { return nil, nil })
		a, err := NewAdaptiveLimits("task_type:", AdaptiveConfig{}, nil)
		is.NoErr(err)
		is.True(a == nil) // disabled
		_, wrapped := WithAdaptiveLimit("work", inner, a).(*typeLimit)
		is.True(!wrapped) // not wrapped
	})
}
