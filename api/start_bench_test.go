package api_test

import (
	"context"
	"io"
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

// BenchmarkStart_HTTP measures durable starts/s over HTTP from 8 clients on
// loopback, each answered once the run is committed (synchronous=FULL):
// by workflow name, and with the definition inline (the same one each time,
// so that each start pins the stored version).
func BenchmarkStart_HTTP(b *testing.B) {
	const clients, starts = 8, 2000
	def := `{"name":"one","tasks":[{"id":"a","type":"sleep","config":{"duration":"1h"}}]}`
	for _, bc := range []struct{ name, body string }{
		{"ByName", `{"workflow":"one"}`},
		{"Inline", `{"definition":` + def + `}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				db, err := store.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				e, err := engine.New(engine.Config{Store: db})
				if err != nil {
					b.Fatal(err)
				}
				if err := e.Start(ctx); err != nil {
					b.Fatal(err)
				}
				if _, _, err := e.RegisterDefinition(ctx, "default", []byte(def)); err != nil {
					b.Fatal(err)
				}
				srv := httptest.NewServer(newBenchHandler(e, db))
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}
				b.StartTimer()
				start := time.Now()
				var left atomic.Int64
				left.Store(starts)
				var wg sync.WaitGroup
				for c := 0; c < clients; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for left.Add(-1) >= 0 {
							resp, err := client.Post(srv.URL+"/api/v1/tenants/default/workflows", "application/json", strings.NewReader(bc.body))
							if err != nil {
								b.Error(err)
								return
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode != http.StatusCreated {
								b.Errorf("start: %d", resp.StatusCode)
								return
							}
						}
					}()
				}
				wg.Wait()
				total += time.Since(start)
				b.StopTimer()
				srv.Close()
				e.Stop(ctx)
				db.Close()
			}
			b.ReportMetric(float64(starts*b.N)/total.Seconds(), "starts/s")
		})
	}
}

// newBenchHandler is the API of e.
func newBenchHandler(e *engine.Engine, _ *store.DB) http.Handler {
	return (&api.Server{Engine: e, Metrics: metrics.NewSet()}).Handler()
}
