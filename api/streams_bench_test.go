package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// BenchmarkStream_CommitToDelivery measures how long an event takes from
// being recorded to reaching a client of its run's event stream over HTTP
// on loopback: the time from the event's at (taken when the engine decides
// it, before its commit) to the client reading it, so an upper bound of
// commit to delivery. Each run waits on an external task while the stream
// catches up, then a worker completes it and the 20-task chain after it
// runs live (synchronous=FULL).
func BenchmarkStream_CommitToDelivery(b *testing.B) {
	const chain = 20
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	e, err := engine.New(engine.Config{Store: db, ExternalTypes: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer e.Stop(ctx)
	tasks := []string{`{"id":"gate","type":"ext"}`}
	for i := 0; i < chain; i++ {
		dep := "gate"
		if i > 0 {
			dep = fmt.Sprintf("t%d", i-1)
		}
		tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","type":"noop","depends_on":[%q]}`, i, dep))
	}
	def := `{"name":"live","tasks":[` + strings.Join(tasks, ",") + `]}`
	if _, _, err := e.RegisterDefinition(ctx, "default", []byte(def)); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(newBenchHandler(e, db))
	defer srv.Close()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "live"})
		if err != nil {
			b.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(sctx, "GET", srv.URL+"/v1/runs/"+run.ID+"/stream", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		live, end := false, false
		for sc.Scan() && !end {
			line := sc.Text()
			if line == "event: end" {
				end = true
			}
			if end || !strings.HasPrefix(line, "data: ") {
				continue
			}
			got := time.Now()
			var ev wire.Event
			if err := json.Unmarshal([]byte(line[6:]), &ev); err != nil {
				b.Fatal(err)
			}
			if live {
				lat = append(lat, got.Sub(ev.At))
			}
			if ev.Type == "task.ready" && ev.TaskID == "gate" && !live {
				// The backlog is read: let the rest happen live.
				lease, err := e.Poll(ctx, engine.PollRequest{TenantID: "default", Types: []string{"ext"}, WorkerID: "w"})
				if err != nil || lease == nil {
					b.Fatalf("poll: %v %v", lease, err)
				}
				live = true
				if err := e.Complete(ctx, "default", lease.ID, lease.Token, nil, engine.Caller{}); err != nil {
					b.Fatal(err)
				}
			}
		}
		cancel()
		res.Body.Close()
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(len(lat))/float64(b.N), "events/run")
	}
}
