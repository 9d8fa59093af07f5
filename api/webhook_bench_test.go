package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
	"github.com/orchestrator/orchestrator/triggers/webhook"
)

// BenchmarkWebhook_DeliveryToDurableRun measures one client delivering
// GitHub-signed webhooks over loopback, each with its own delivery id and
// answered once its run is committed (synchronous=FULL): the latency of a
// delivery, p50 and p99, through the template, the HMAC and the dedup key.
func BenchmarkWebhook_DeliveryToDurableRun(b *testing.B) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	e, err := engine.New(engine.Config{Store: db})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer e.Stop(ctx)
	if _, _, err := e.RegisterDefinition(ctx, "default", []byte(`{"name":"onpush","tasks":[{"id":"a","type":"sleep","config":{"duration":"1h"}}]}`)); err != nil {
		b.Fatal(err)
	}
	trig := &engine.Triggers{Store: db, Engine: e}
	_, secret, err := trig.Create(ctx, engine.LocalAdmin(), engine.TriggerRequest{TenantID: "default", Name: "gh", Kind: engine.TriggerWebhook,
		Workflow: "onpush", Config: engine.TriggerConfig{Input: []byte(`{"repo":"${/body/repository/full_name}","event":"${/headers/X-GitHub-Event}"}`),
			Webhook: &engine.WebhookConfig{Verify: engine.VerifyGitHub, DeliveryHeader: "X-GitHub-Delivery"}}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer((&api.Server{Engine: e, Triggers: trig, Metrics: metrics.NewSet()}).Handler())
	defer srv.Close()
	client := &http.Client{}
	body := `{"ref":"refs/heads/main","repository":{"full_name":"acme/app"},"pusher":{"name":"ann"}}`
	sig := "sha256=" + webhook.Sign(secret, []byte(body))
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/tenants/default/webhooks/gh/deliveries", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Hub-Signature-256", sig)
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%d", i))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("delivery: %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
