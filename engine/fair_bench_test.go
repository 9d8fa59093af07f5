package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine"
)

// BenchmarkFairness measures the queue wait (ready to started) of tenant
// B's tasks: B starts one 10-task no-op chain every 50 ms, b.N chains, on an
// idle engine ("alone") and while tenant A holds a backlog of 100,000 ready
// no-op tasks (1,000 runs of 100 parallel tasks, each finished run replaced
// by a new one; min-ready-tasks is the fewest ready tasks seen when B
// started a chain). Run it with
//
//	go test ./engine -run '^$' -bench '^BenchmarkFairness' -benchtime 100x
func BenchmarkFairness(b *testing.B) {
	b.Run("alone", func(b *testing.B) { benchFairness(b, 0, 0) })
	b.Run("backlog100k", func(b *testing.B) { benchFairness(b, 1000, 100) })
}

func benchFairness(b *testing.B, backlogRuns, backlogWidth int) {
	ctx := context.Background()
	db := openTestStore(b)
	// A's backlog is stored first, by an engine for which its task type is
	// external, so that nothing runs it; the engine measured recovers it
	// with a handler for that type. Built while being dispatched, the
	// backlog would drain as fast as it is stored.
	wide := parallelDef("wide", "x", "w", max(backlogWidth, 1))
	backlog := make(chan string, backlogRuns)
	if backlogRuns > 0 {
		e1, err := engine.New(engine.Config{Store: db, ExternalTypes: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := e1.Start(ctx); err != nil {
			b.Fatal(err)
		}
		if _, _, err := e1.RegisterDefinition(ctx, "a", wide); err != nil {
			b.Fatal(err)
		}
		ids := make([]string, backlogRuns)
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < backlogRuns; i += 8 {
					run, err := e1.StartRun(ctx, engine.StartRequest{TenantID: "a", Workflow: "wide"})
					if err != nil {
						b.Error(err)
						return
					}
					ids[i] = run.ID
				}
			}()
		}
		wg.Wait()
		e1.Stop(ctx)
		if b.Failed() {
			return
		}
		// Recovery activates them in id order, the order of their start.
		slices.Sort(ids)
		for _, id := range ids {
			backlog <- id
		}
	}
	set := metrics.NewSet()
	e, err := engine.New(engine.Config{Store: db, Metrics: set})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Register("x", engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
		return nil, nil
	})); err != nil {
		b.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer e.Stop(ctx)
	if _, _, err := e.RegisterDefinition(ctx, "b", chainDef("chain", 10, "noop")); err != nil {
		b.Fatal(err)
	}
	// A's runs dispatch oldest first: waiting for them in the order they
	// started and replacing each keeps the backlog full.
	actx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	startA := func() bool {
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "a", Workflow: "wide"})
		if err != nil {
			b.Error(err)
			return false
		}
		backlog <- run.ID
		return true
	}
	if backlogRuns > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := e.Wait(actx, "a", <-backlog); err != nil || !startA() {
					return // stopped
				}
			}
		}()
	}
	minReady := -1.0
	ids := make([]string, 0, b.N)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-tick.C
		if r := readyTasks(set); minReady < 0 || r < minReady {
			minReady = r
		}
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "b", Workflow: "chain"})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	var waits []time.Duration
	for _, id := range ids {
		if run, err := e.Wait(ctx, "b", id); err != nil || run.State != engine.RunCompleted {
			b.Fatalf("run %s: %v %v", id, run, err)
		}
		_, tasks, err := db.LoadRun(ctx, "b", id)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range tasks {
			waits = append(waits, t.StartedAt.Sub(t.ReadyAt))
		}
	}
	b.StopTimer()
	stop()
	wg.Wait()
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	b.ReportMetric(float64(waits[len(waits)/2].Microseconds())/1000, "p50-wait-ms")
	b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds())/1000, "p99-wait-ms")
	b.ReportMetric(minReady, "min-ready-tasks")
}

// readyTasks reads the orchestrator_tasks_ready gauge.
func readyTasks(set *metrics.Set) float64 {
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "orchestrator_tasks_ready "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
