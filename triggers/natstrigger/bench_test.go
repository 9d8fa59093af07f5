package natstrigger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/triggers"
	"github.com/orchestrator/orchestrator/triggers/natstrigger"
	"github.com/orchestrator/orchestrator/triggers/triggertest"
)

// BenchmarkNATS_MessagesToDurableRuns measures a NATS trigger draining a
// stream of 5,000 messages already published: messages turned into durable
// runs (synchronous=FULL) and acknowledged, per second.
func BenchmarkNATS_MessagesToDurableRuns(b *testing.B) {
	const n = 5000
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ns := startNATS(b)
		w := triggertest.NewWorld(b)
		if _, _, err := w.Engine.RegisterDefinition(ctx, "default", []byte(triggertest.IdleDefinition)); err != nil {
			b.Fatal(err)
		}
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "B", Subjects: []string{"b"}}); err != nil {
			b.Fatal(err)
		}
		for j := range n {
			js.PublishAsync("b", fmt.Appendf(nil, `{"n":%d}`, j))
		}
		<-js.PublishAsyncComplete()
		tr, _, err := w.Triggers.Create(ctx, engine.LocalAdmin(), engine.TriggerRequest{TenantID: "default", Name: "b", Kind: engine.TriggerNATS,
			Workflow: "idle", Config: engine.TriggerConfig{NATS: &engine.NATSConfig{Servers: []string{ns.ClientURL()}, Stream: "B"}}})
		if err != nil {
			b.Fatal(err)
		}
		m := &triggers.Manager{Triggers: w.Triggers, PollInterval: -1,
			Consumers: map[engine.TriggerKind]triggers.Consumer{engine.TriggerNATS: &natstrigger.Consumer{}}}
		b.StartTimer()
		start := time.Now()
		if err := m.Start(ctx); err != nil {
			b.Fatal(err)
		}
		triggertest.WaitFor(b, time.Minute, "every message", func() bool {
			c, err := js.Consumer(ctx, "B", tr.DurableName())
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			return err == nil && info.AckFloor.Stream == n
		})
		total += time.Since(start)
		b.StopTimer()
		m.Stop()
		nc.Close()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "msgs/s")
}
