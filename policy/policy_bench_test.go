package policy_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
)

// BenchmarkDecide measures one decision of the example policy and reports
// its median and 99th percentile (the target for p99 is under 100 µs):
//
//	go test ./policy -run '^$' -bench Decide -benchtime 50000x
func BenchmarkDecide(b *testing.B) {
	e, err := policy.Load(context.Background(), examplePolicy, policy.Options{})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		in   policy.Input
	}{
		{"allowed", policy.Input{Principal: key("ci"), Action: engine.ActionRunsStart, Operation: "start", Tenant: "acme",
			Resource: policy.Resource{Workflow: "ci-build", Version: 3, InputSize: 512}, Now: at(12, 0)}},
		{"denied_with_reason", policy.Input{Principal: key("ci"), Action: engine.ActionRunsStart, Operation: "start", Tenant: "acme",
			Resource: policy.Resource{Workflow: "deploy", Version: 3, InputSize: 512}, Now: at(12, 0)}},
		{"cancel_in_window", policy.Input{Principal: key("ops"), Action: engine.ActionRunsControl, Operation: "cancel", Tenant: "acme",
			Resource: policy.Resource{RunID: "0190b5a4-0000-7000-8000-000000000000"}, Now: at(23, 0)}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			want := e.Decide(ctx, &c.in).Allow
			took := make([]time.Duration, 0, b.N) // made before timing: growing it would add garbage of its own
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				d := e.Decide(ctx, &c.in)
				took = append(took, time.Since(start))
				if d.Allow != want {
					b.Fatalf("decision changed: %+v", d)
				}
			}
			slices.Sort(took)
			pct := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Nanoseconds()) / 1e3 }
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}
