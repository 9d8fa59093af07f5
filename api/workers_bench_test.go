package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// BenchmarkWorkers_8Concurrent measures tasks/s through the external worker
// protocol: 8 workers on loopback each poll, then complete, one task at a
// time, for 200 runs of 10 independent external tasks. Every lease and every
// completion is durable (synchronous=FULL) before it is answered.
func BenchmarkWorkers_8Concurrent(b *testing.B) {
	const runs, perRun, workers = 200, 10, 8
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db, err := store.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		e, err := engine.New(engine.Config{Store: db, ExternalTypes: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Start(ctx); err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer((&api.Server{Engine: e, Metrics: metrics.NewSet()}).Handler())
		var tasks []string
		for t := 0; t < perRun; t++ {
			tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","type":"python"}`, t))
		}
		if _, _, err := e.RegisterDefinition(ctx, "default", []byte(`{"name":"ext","tasks":[`+strings.Join(tasks, ",")+`]}`)); err != nil {
			b.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2}}
		b.StartTimer()
		start := time.Now()
		var ids []string
		for r := 0; r < runs; r++ {
			run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "ext"})
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, run.ID)
		}
		var done atomic.Int64
		var wg sync.WaitGroup
		pollCtx, stopPolls := context.WithCancel(ctx) // ends the last long polls once every task is done
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				poll := fmt.Sprintf(`{"types":["python"],"worker_id":"w%d","lease":"30s","wait":"1s"}`, w)
				for done.Load() < runs*perRun {
					req, _ := http.NewRequestWithContext(pollCtx, http.MethodPost, srv.URL+"/v1/tasks/poll", strings.NewReader(poll))
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						if pollCtx.Err() == nil {
							b.Error(err)
						}
						return
					}
					var l engine.Lease
					if resp.StatusCode == http.StatusOK {
						json.NewDecoder(resp.Body).Decode(&l)
					}
					resp.Body.Close()
					if l.ID == "" {
						continue
					}
					body, _ := json.Marshal(map[string]any{"lease_token": l.Token, "output": map[string]int{"w": w}})
					resp, err = client.Post(srv.URL+"/v1/tasks/"+l.ID+"/complete", "application/json", bytes.NewReader(body))
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Errorf("complete: %v %v", err, resp.Status)
						return
					}
					resp.Body.Close()
					if done.Add(1) == runs*perRun {
						stopPolls()
					}
				}
			}(w)
		}
		wg.Wait()
		stopPolls()
		for _, id := range ids {
			if run, err := e.Wait(ctx, "default", id); err != nil || run.State != engine.RunCompleted {
				b.Fatalf("run %s: %v %v", id, run, err)
			}
		}
		total += time.Since(start)
		b.StopTimer()
		srv.Close()
		e.Stop(ctx)
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(runs*perRun*b.N)/total.Seconds(), "tasks/s")
}
