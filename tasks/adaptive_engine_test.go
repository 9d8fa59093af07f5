package tasks

import (
	"context"
	"encoding/json"
	"fmt"
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
	is.True(longest >= 25)                         // the limit held within 20% of the capacity for half a second or more
	is.True(final <= 1.2*capacity)                 // and never ended above it
	is.True(share < 0.01)                          // fewer than 1% of the requests saw a 503
	is.Equal(srv.served.Load(), int64(runs*width)) // every task got its answer once
}
