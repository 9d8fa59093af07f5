package kafkatrigger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/triggers"
	"github.com/orchestrator/orchestrator/triggers/kafkatrigger"
	"github.com/orchestrator/orchestrator/triggers/triggertest"
)

// BenchmarkKafka_RecordsToDurableRuns measures a Kafka trigger draining
// 5,000 records already produced to 3 partitions of franz-go's in-process
// cluster: records turned into durable runs (synchronous=FULL) and
// committed, per second.
func BenchmarkKafka_RecordsToDurableRuns(b *testing.B) {
	const n = 5000
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := startKafka(b, "b", 3)
		brokers := c.ListenAddrs()
		w := triggertest.NewWorld(b)
		if _, _, err := w.Engine.RegisterDefinition(ctx, "default", []byte(triggertest.IdleDefinition)); err != nil {
			b.Fatal(err)
		}
		recs := make([]*kgo.Record, n)
		for j := range recs {
			recs[j] = &kgo.Record{Topic: "b", Partition: int32(j % 3), Value: fmt.Appendf(nil, `{"n":%d}`, j)}
		}
		produce(b, brokers, recs...)
		if _, _, err := w.Triggers.Create(ctx, engine.LocalAdmin(), engine.TriggerRequest{TenantID: "default", Name: "b", Kind: engine.TriggerKafka,
			Workflow: "idle", Config: engine.TriggerConfig{Kafka: &engine.KafkaConfig{Brokers: brokers, Topic: "b"}}}); err != nil {
			b.Fatal(err)
		}
		m := &triggers.Manager{Triggers: w.Triggers, PollInterval: -1,
			Consumers: map[engine.TriggerKind]triggers.Consumer{engine.TriggerKafka: &kafkatrigger.Consumer{}}}
		b.StartTimer()
		start := time.Now()
		if err := m.Start(ctx); err != nil {
			b.Fatal(err)
		}
		triggertest.WaitFor(b, time.Minute, "every record", func() bool {
			st := m.Status("default", "b")
			return st != nil && st.RunsStarted == n
		})
		total += time.Since(start)
		b.StopTimer()
		m.Stop()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "msgs/s")
}
