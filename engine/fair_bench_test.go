package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// BenchmarkFairness measures the queue wait (ready to started) of tenant
// B's tasks: B starts one 10-task no-op chain every 50 ms, b.N chains, on an
// idle engine ("alone") and while tenant A holds a backlog of 100,000 ready
// no-op tasks: 1,000 runs of 100 parallel tasks ("backlog100k"), or 10,000
// runs of 10 ("backlog100k-narrow"), each finished run replaced by a new
// one. min-ready-tasks is the fewest ready tasks seen when B started a chain.
// The wait is split at the moment the commit holding the task's task.ready
// was durable: "writer" before it, "dispatch" after; writer-busy is the share
// of the time the writer spent committing. Run it with
//
//	go test ./engine -run '^$' -bench '^BenchmarkFairness' -benchtime 100x
func BenchmarkFairness(b *testing.B) {
	b.Run("alone", func(b *testing.B) { benchFairness(b, 0, 0) })
	b.Run("backlog100k", func(b *testing.B) { benchFairness(b, 1000, 100) })
	b.Run("backlog100k-narrow", func(b *testing.B) { benchFairness(b, 10_000, 10) })
}

func benchFairness(b *testing.B, backlogRuns, backlogWidth int) {
	ctx := context.Background()
	storeSet := metrics.NewSet()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "test.db"), store.Options{Metrics: storeSet})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
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
	// When each of B's commits became durable splits a task's wait in two:
	// ready until durable (the writer) and durable until started (dispatch).
	// A chain makes about 21 commits; they wait in the buffer until read.
	sub := e.Subscribe("b", "", 32*b.N)
	defer sub.Close()
	minReady := -1.0
	ids := make([]string, 0, b.N)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	// The writer's busy share: the time its group commits took over the
	// time measured.
	start, committing := time.Now(), metricValue(storeSet, "orchestrator_commit_duration_seconds_sum")
	for i := 0; i < b.N; i++ {
		<-tick.C
		if r := metricValue(set, "orchestrator_tasks_ready"); minReady < 0 || r < minReady {
			minReady = r
		}
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "b", Workflow: "chain"})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	for _, id := range ids {
		if run, err := e.Wait(ctx, "b", id); err != nil || run.State != engine.RunCompleted {
			b.Fatalf("run %s: %v %v", id, run, err)
		}
	}
	b.StopTimer()
	busy := (metricValue(storeSet, "orchestrator_commit_duration_seconds_sum") - committing) / time.Since(start).Seconds()
	stop()
	wg.Wait()
	if sub.Lagged() {
		b.Fatal("the subscription to B's commits dropped changes")
	}
	durable := map[string][]engine.RunChange{}
	for len(sub.C()) > 0 {
		c := <-sub.C()
		durable[c.RunID] = append(durable[c.RunID], c)
	}
	var waits, writer, dispatch []time.Duration
	for _, id := range ids {
		_, tasks, err := db.LoadRun(ctx, "b", id)
		if err != nil {
			b.Fatal(err)
		}
		events, err := db.RunEvents(ctx, "b", id, 0, 1000)
		if err != nil {
			b.Fatal(err)
		}
		readySeq := map[string]int64{}
		for _, ev := range events {
			if ev.Type == engine.EventTaskReady {
				readySeq[ev.TaskID] = ev.Seq
			}
		}
		for _, t := range tasks {
			waits = append(waits, t.StartedAt.Sub(t.ReadyAt))
			i := slices.IndexFunc(durable[id], func(c engine.RunChange) bool { return c.LastSeq >= readySeq[t.TaskID] })
			if i < 0 {
				b.Fatalf("run %s: no durable commit holds task %s's task.ready", id, t.TaskID)
			}
			at := durable[id][i].DurableAt
			writer = append(writer, at.Sub(t.ReadyAt))
			dispatch = append(dispatch, t.StartedAt.Sub(at))
		}
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"wait", waits}, {"writer", writer}, {"dispatch", dispatch}} {
		slices.Sort(m.d)
		b.ReportMetric(float64(m.d[len(m.d)/2].Microseconds())/1000, "p50-"+m.name+"-ms")
		b.ReportMetric(float64(m.d[len(m.d)*99/100].Microseconds())/1000, "p99-"+m.name+"-ms")
	}
	b.ReportMetric(minReady, "min-ready-tasks")
	b.ReportMetric(busy, "writer-busy")
}

// metricValue reads the value of an unlabelled metric of set.
func metricValue(set *metrics.Set, name string) float64 {
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
