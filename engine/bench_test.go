package engine_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// The benchmarks drive the whole durable path: definitions stored, runs
// started through the engine, no-op tasks executed by the worker pool, every
// event and projection change committed to a SQLite file with
// synchronous=FULL. Run them with scripts/bench.

func fanDef(name string, width int) []byte {
	tasks := []string{`{"id":"root","type":"noop"}`}
	var mids []string
	for i := 0; i < width; i++ {
		tasks = append(tasks, fmt.Sprintf(`{"id":"m%d","type":"noop","depends_on":["root"]}`, i))
		mids = append(mids, fmt.Sprintf("%q", fmt.Sprintf("m%d", i)))
	}
	tasks = append(tasks, fmt.Sprintf(`{"id":"sink","type":"noop","depends_on":[%s]}`, strings.Join(mids, ",")))
	return []byte(fmt.Sprintf(`{"name":%q,"tasks":[%s]}`, name, strings.Join(tasks, ",")))
}

// startRuns starts n runs of workflow from 64 goroutines and returns their ids.
func startRuns(tb testing.TB, e *engine.Engine, workflow string, n int) []string {
	ctx := context.Background()
	ids := make([]string, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: workflow})
				if err != nil {
					tb.Error(err)
					return
				}
				ids[r] = run.ID
			}
		}()
	}
	for r := 0; r < n; r++ {
		next <- r
	}
	close(next)
	wg.Wait()
	return ids
}

// benchThroughput reports no-op tasks per second for runs of def started at once.
func benchThroughput(b *testing.B, def []byte, tasksPerRun, runs int) {
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db := openTestStore(b)
		e := startEngine(b, db, nil)
		sd, _, err := e.RegisterDefinition(ctx, "default", def)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		ids := startRuns(b, e, sd.Name, runs)
		for _, id := range ids {
			run, err := e.Wait(ctx, "default", id)
			if err != nil || run.State != engine.RunCompleted {
				b.Fatalf("run %s: %v %v", id, run, err)
			}
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(tasksPerRun*runs*b.N)/total.Seconds(), "tasks/s")
	reportPeakRSS(b)
}

func BenchmarkThroughput_FanOut1000x10(b *testing.B) { benchThroughput(b, fanDef("fan", 8), 10, 1000) }
func BenchmarkThroughput_Chain1000x10(b *testing.B) {
	benchThroughput(b, chainDef("chain", 10, "noop"), 10, 1000)
}

// BenchmarkLatency_Chain10 measures one 10-task chain run at a time on an idle
// engine, from StartRun to its completion being durable.
func BenchmarkLatency_Chain10(b *testing.B) {
	ctx := context.Background()
	db := openTestStore(b)
	e := startEngine(b, db, nil)
	if _, _, err := e.RegisterDefinition(ctx, "default", chainDef("chain", 10, "noop")); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "chain"})
		if err != nil {
			b.Fatal(err)
		}
		if run, err = e.Wait(ctx, "default", run.ID); err != nil || run.State != engine.RunCompleted {
			b.Fatalf("run: %v %v", run, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkRecovery_10000Runs measures Start on a store holding 10,000
// non-terminal runs of 10 tasks (a durable sleep running, an external task
// ready, 8 pending): load, rebuild, re-arm timers, queue, durable.
func BenchmarkRecovery_10000Runs(b *testing.B) {
	const runs = 10000
	ctx := context.Background()
	db := openTestStore(b)
	def := `{"name":"parked","tasks":[{"id":"s","type":"sleep","config":{"duration":"1h"}},{"id":"x","type":"ext"}`
	for i := 0; i < 8; i++ {
		def += fmt.Sprintf(`,{"id":"n%d","type":"noop","depends_on":["s","x"]}`, i)
	}
	def += `]}`
	e1, err := engine.New(engine.Config{Store: db, ExternalTypes: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := e1.Start(ctx); err != nil {
		b.Fatal(err)
	}
	if _, _, err := e1.RegisterDefinition(ctx, "default", []byte(def)); err != nil {
		b.Fatal(err)
	}
	startRuns(b, e1, "parked", runs)
	e1.Stop(ctx)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e2, err := engine.New(engine.Config{Store: db, ExternalTypes: true})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := e2.Start(ctx); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		e2.Stop(ctx)
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/recovery")
	reportPeakRSS(b)
}

// reportPeakRSS reports the process's peak resident set (VmHWM) in MiB.
func reportPeakRSS(b *testing.B) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(f[1])
			b.ReportMetric(float64(kb)/1024, "peak-RSS-MiB")
		}
	}
}
