package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// gaugeValue reads one series from a metrics set's Prometheus text.
func gaugeValue(set *metrics.Set, series string) (float64, bool) {
	var b strings.Builder
	set.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestAdaptiveLimit_EngineRunsHTTPTasksWithinTheHostsCapacity runs alone,
// not in parallel, for the reason its sibling
// TestAdaptiveLimit_HTTPHostConvergesOnTheServersCapacity does.
func TestAdaptiveLimit_EngineRunsHTTPTasksWithinTheHostsCapacity(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	const capacity, runs, width = 8, 8, 100
	// A base latency well above what the engine adds to a call, even
	// under the race detector on a busy machine: the limiter must see the
	// host's queueing, not ours.
	srv := newCapacityServer(t, capacity, 100*time.Millisecond)
	set := metrics.NewSet()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "adaptive.db"), store.Options{Metrics: set})
	is.NoErr(err) // open store
	t.Cleanup(func() { db.Close() })
	// More workers than the host can take: the limit, not the pool, must
	// keep the host within its capacity.
	e, err := engine.New(engine.Config{Store: db, Workers: 4 * capacity, Metrics: set})
	is.NoErr(err) // new engine
	is.NoErr(e.Register(TypeHTTP, newHTTP(t, HTTPConfig{Adaptive: AdaptiveConfig{Enabled: true}, Metrics: set})))
	is.NoErr(e.Start(ctx)) // start engine
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		e.Stop(sctx)
	})
	// Runs of width parallel tasks: a run's tasks are ready at once, so the
	// engine's demand outruns the host even when the race detector slows
	// starting runs down.
	var tasks []string
	for i := range width {
		tasks = append(tasks, fmt.Sprintf(`{"id":"get%d","type":"http","input":{"url":"${workflow.input.url}"},
			"retry":{"max_attempts":20,"initial_interval":"10ms","max_interval":"100ms"}}`, i))
	}
	_, _, err = e.RegisterDefinition(ctx, "default", []byte(`{"name":"call","tasks":[`+strings.Join(tasks, ",")+`]}`))
	is.NoErr(err) // register definition
	input, _ := json.Marshal(map[string]string{"url": srv.URL})
	ids := make([]string, runs)
	for i := range ids {
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "call", Input: input})
		is.NoErr(err) // start run
		ids[i] = run.ID
	}
	series := fmt.Sprintf(`orchestrator_adaptive_limit{key="http:%s"}`, srv.host(t))
	var mu sync.Mutex
	var samples []float64
	watch, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for watch.Err() == nil {
			if v, ok := gaugeValue(set, series); ok {
				mu.Lock()
				samples = append(samples, v)
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, id := range ids {
		run, err := e.Wait(wctx, "default", id)
		is.NoErr(err) // the run ended
		if run.State != engine.RunCompleted {
			_, tasks, _ := e.GetRun(ctx, "default", id)
			t.Fatalf("run %s %s: %+v", id, run.State, tasks)
		}
	}
	stopWatch()
	wg.Wait()
	final, ok := gaugeValue(set, series)
	is.True(ok) // the host's limit is a gauge
	// The longest stretch of samples within 20% of the capacity: the
	// engine's own load (starting 800 tasks under the race detector on a
	// busy machine) may push the limit below it for a while, which is
	// caution, not overload; the fine convergence is
	// TestAdaptiveLimit_HTTPHostConvergesOnTheServersCapacity's.
	longest, run := 0, 0
	for _, v := range samples {
		if v >= 0.8*capacity && v <= 1.2*capacity {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	total := srv.served.Load() + srv.refused.Load()
	share := float64(srv.refused.Load()) / float64(total)
	t.Logf("%d runs of %d parallel http tasks through the engine, %d workers, C=%d, base %s: final limit %.0f, "+
		"longest stretch within 20%% of C %d of %d samples (every 20 ms), peak in flight at the server %d, %d requests, %d answered 503 (%.2f%%)",
		runs, width, 4*capacity, capacity, srv.Base, final, longest, len(samples), srv.peak.Load(), total, srv.refused.Load(), 100*share)
	is.True(longest >= 25) // the limit held within 20% of the capacity for half a second or more
	// At the tail the load fades and a window that finds the host fast may
	// grow the limit by one or two: the bound is where the host refuses.
	is.True(final <= 2*capacity)                   // it did not end past where the host answers 503
	is.True(share < 0.01)                          // fewer than 1% of the requests saw a 503
	is.Equal(srv.served.Load(), int64(runs*width)) // every task got its answer once
}

func TestAdaptiveLimit_EngineDefersAThrottledAttemptWithoutChargingIt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	var mu sync.Mutex
	var pausedAt time.Time
	var after []time.Time // arrivals after the 429
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/first" && pausedAt.IsZero() {
			pausedAt = time.Now()
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		after = append(after, time.Now())
	})
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "throttled.db"), store.Options{})
	is.NoErr(err) // open store
	t.Cleanup(func() { db.Close() })
	e, err := engine.New(engine.Config{Store: db})
	is.NoErr(err) // new engine
	// A wait far shorter than the pause: the second task is deferred,
	// not left holding its worker for the whole second.
	is.NoErr(e.Register(TypeHTTP, newHTTP(t, HTTPConfig{Adaptive: AdaptiveConfig{Enabled: true, MaxWait: 20 * time.Millisecond}})))
	is.NoErr(e.Start(ctx)) // start engine
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		e.Stop(sctx)
	})
	// One attempt each: a charged failure would fail the task.
	_, _, err = e.RegisterDefinition(ctx, "default", []byte(`{"name":"one","tasks":[{"id":"get","type":"http","input":{"url":"${workflow.input.url}"}}]}`))
	is.NoErr(err) // register definition
	start := func(path string) string {
		input, _ := json.Marshal(map[string]string{"url": srv.URL + path})
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "one", Input: input})
		is.NoErr(err) // start run
		return run.ID
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	first := start("/first")
	run, err := e.Wait(wctx, "default", first)
	is.NoErr(err)
	is.Equal(run.State, engine.RunFailed) // the 429 failed its own task: one attempt
	second := start("/second")
	run, err = e.Wait(wctx, "default", second)
	is.NoErr(err)
	is.Equal(run.State, engine.RunCompleted) // the other task waited out the pause and completed
	events, err := db.RunEvents(ctx, "default", second, 0, 0)
	is.NoErr(err)
	throttled := 0
	for _, ev := range events {
		var d engine.EventData
		if ev.Type == engine.EventTaskAttemptFailed && json.Unmarshal(ev.Data, &d) == nil && d.Reason == engine.ReasonThrottled {
			throttled++
		}
	}
	is.True(throttled >= 1)                                // its attempts were deferred as throttled, not charged
	is.NoErr(engine.VerifyRun(ctx, db, "default", second)) // the projection folds from the events, reason and all
	mu.Lock()
	defer mu.Unlock()
	is.Equal(len(after), 1)                        // the host got one more request
	is.True(after[0].Sub(pausedAt) >= time.Second) // and not before the Retry-After had passed
}
