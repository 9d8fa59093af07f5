package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
	"github.com/orchestrator/orchestrator/store"
)

// benchServer serves the API over a real store as main.go wires it, in the
// given mode, with the example policy when withPolicy; it returns its URL,
// an operator key of the tenant default ("" in AUTH=local, whose loopback
// callers need none) and a run to read.
func benchServer(b *testing.B, mode api.AuthMode, withPolicy bool) (string, string, string) {
	b.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	keys, err := engine.NewKeys(engine.KeysConfig{Store: db})
	if err != nil {
		b.Fatal(err)
	}
	keys.Start(ctx)
	b.Cleanup(func() { keys.Stop() })
	e, err := engine.New(engine.Config{Store: db, TenantFunc: keys.Tenant})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Stop(ctx) })
	s := &api.Server{Engine: e, Metrics: metrics.NewSet(), Keys: keys, Admin: &engine.Admin{Store: db, Keys: keys}, AuthMode: mode}
	if withPolicy {
		if s.Policy, err = policy.Load(ctx, "../examples/policy/authz.rego", policy.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	srv := httptest.NewServer(s.Handler())
	b.Cleanup(srv.Close)
	if _, _, err := e.RegisterDefinition(ctx, "default", []byte(`{"name":"noop1","tasks":[{"id":"a","type":"noop"}]}`)); err != nil {
		b.Fatal(err)
	}
	run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "noop1"})
	if err != nil {
		b.Fatal(err)
	}
	token := ""
	if mode == api.AuthRequired {
		_, token, err = s.Admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
	}
	return srv.URL, token, run.ID
}

// BenchmarkHTTP_Auth compares the API's throughput from 16 clients on
// loopback in AUTH=local (no key), AUTH=required with an operator key, and
// the same with the example policy asked on every request: starting no-op
// runs (each durable before it is answered) and reading a run.
//
//	go test ./api -run '^$' -bench HTTP_Auth -benchtime 5s
func BenchmarkHTTP_Auth(b *testing.B) {
	for _, c := range []struct {
		name   string
		mode   api.AuthMode
		policy bool
	}{
		{"local", api.AuthLocal, false},
		{"required", api.AuthRequired, false},
		{"required+policy", api.AuthRequired, true},
	} {
		for _, op := range []string{"start", "read"} {
			b.Run(op+"/"+c.name, func(b *testing.B) {
				url, token, runID := benchServer(b, c.mode, c.policy)
				tr := &http.Transport{MaxIdleConnsPerHost: 64}
				b.Cleanup(tr.CloseIdleConnections)
				client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
				method, path, body, want := http.MethodPost, "/v1/run", `{"workflow":"noop1"}`, http.StatusCreated
				if op == "read" {
					method, path, body, want = http.MethodGet, "/v1/runs/"+runID, "", http.StatusOK
				}
				b.SetParallelism(8) // 8 clients per core: 16 here
				start := time.Now()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
						req.Header.Set("Content-Type", "application/json")
						if token != "" {
							req.Header.Set("Authorization", "Bearer "+token)
						}
						res, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						if res.StatusCode != want {
							var p api.Problem
							json.NewDecoder(res.Body).Decode(&p)
							b.Errorf("%s %s: %d %s", method, path, res.StatusCode, p.Detail)
						}
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			})
		}
	}
}
