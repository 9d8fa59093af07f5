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

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// BenchmarkStart_HTTPByAlias is BenchmarkStart_HTTP/ByName through an
// alias split 50/50 between two versions ("one@live"): what the alias
// lookup (cached) and the pick add to a durable start.
func BenchmarkStart_HTTPByAlias(b *testing.B) {
	const clients, starts = 8, 2000
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
		for _, d := range []string{"1h", "2h"} {
			def := `{"name":"one","tasks":[{"id":"a","type":"sleep","config":{"duration":"` + d + `"}}]}`
			if _, _, err := e.RegisterDefinition(ctx, "default", []byte(def)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := e.SetAlias(ctx, engine.Caller{}, "default", "one", "live", engine.AliasSpec{
			Versions: []engine.AliasTarget{{Version: 1, Weight: 50}, {Version: 2, Weight: 50}}}); err != nil {
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
					resp, err := client.Post(srv.URL+"/api/v1/tenants/default/workflows", "application/json", strings.NewReader(`{"workflow":"one@live"}`))
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
}
