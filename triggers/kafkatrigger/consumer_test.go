package kafkatrigger_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/triggers"
	"github.com/orchestrator/orchestrator/triggers/kafkatrigger"
	"github.com/orchestrator/orchestrator/triggers/triggertest"
)

// startKafka runs franz-go's in-process Kafka cluster with the topic
// given, until cleanup.
func startKafka(t testing.TB, topic string, partitions int32) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func produce(t testing.TB, brokers []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// committed returns the group's committed offsets of topic, by partition.
func committed(t testing.TB, brokers []string, group, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[int32]int64{}
	req := kmsgOffsetFetch(group, topic)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		return out
	}
	for _, g := range resp.Groups {
		for _, tp := range g.Topics {
			for _, p := range tp.Partitions {
				if p.Offset >= 0 {
					out[p.Partition] = p.Offset
				}
			}
		}
	}
	return out
}

func TestKafka_OneRunPerRecordCommittedOnlyOnceDurable(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	c := startKafka(t, "orders", 3)
	brokers := c.ListenAddrs()
	w := triggertest.NewWorld(t)

	const n = 60
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: "orders", Partition: int32(i % 3), Key: fmt.Appendf(nil, "k%d", i),
			Value: fmt.Appendf(nil, `{"order":%d}`, i), Headers: []kgo.RecordHeader{{Key: "shop", Value: []byte("s1")}}})
	}
	recs = append(recs, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("not json")})
	produce(t, brokers, recs...)
	offsets := map[string]string{} // ref -> order
	for i, r := range recs[:n] {
		offsets[kafkatrigger.Ref("orders", r.Partition, r.Offset)] = fmt.Sprint(i)
	}

	tr, _, err := w.Triggers.Create(ctx, engine.LocalAdmin(), engine.TriggerRequest{TenantID: "default", Name: "orders", Kind: engine.TriggerKafka,
		Workflow: "onmsg", Config: engine.TriggerConfig{Input: []byte(`{"order":"${/body/order}","shop":"${/headers/Shop}","key":"${/headers/Kafka-Key}"}`),
			Kafka: &engine.KafkaConfig{Brokers: brokers, Topic: "orders"}}})
	is.NoErr(err)
	m := &triggers.Manager{Triggers: w.Triggers, PollInterval: -1,
		Consumers: map[engine.TriggerKind]triggers.Consumer{engine.TriggerKafka: &kafkatrigger.Consumer{Batch: 16}}}
	is.NoErr(m.Start(ctx))
	defer m.Stop()

	want := map[int32]int64{0: 21, 1: 20, 2: 20} // every record's offset + 1, the bad one's included
	triggertest.WaitFor(t, 30*time.Second, "every record committed", func() bool {
		got := committed(t, brokers, tr.GroupName(), "orders")
		return len(got) == 3 && got[0] == want[0] && got[1] == want[1] && got[2] == want[2]
	})
	runs := triggertest.Runs(t, w.DB, engine.OriginKafka, "orders")
	is.Equal(len(runs), n) // one run per JSON record
	for ref, order := range offsets {
		id, ok := runs[ref]
		if !ok {
			t.Fatalf("no run of record %s", ref)
		}
		run, _, err := w.DB.LoadRun(ctx, "default", id)
		is.NoErr(err)
		is.Equal(string(run.Input), fmt.Sprintf(`{"key":"k%s","order":%s,"shop":"s1"}`, order, order)) // payload, header and key
	}
	st := m.Status("default", "orders")
	is.True(st.Connected)                           // connected
	is.Equal(st.RunsStarted, int64(n))              //
	is.Equal(st.Messages, int64(n+1))               //
	is.True(strings.Contains(st.LastError, "body")) // the bad record recorded, and skipped
	is.Equal(st.Lag, int64(0))                      // nothing left

	// The group's offsets lost (a crash before the commit): every record is
	// delivered again and no run starts twice.
	m.Stop()
	m2 := &triggers.Manager{Triggers: w.Triggers, PollInterval: -1,
		Consumers: map[engine.TriggerKind]triggers.Consumer{engine.TriggerKafka: &kafkatrigger.Consumer{}}}
	_, _, err = w.Triggers.Update(ctx, engine.LocalAdmin(), "default", "orders",
		engine.TriggerChange{Kafka: &engine.KafkaConfig{Brokers: brokers, Topic: "orders", Group: "fresh"}})
	is.NoErr(err) // a new group has no offsets: it reads from the start
	is.NoErr(m2.Start(ctx))
	defer m2.Stop()
	triggertest.WaitFor(t, 30*time.Second, "every record committed again", func() bool {
		got := committed(t, brokers, "fresh", "orders")
		return len(got) == 3 && got[0] == want[0] && got[1] == want[1] && got[2] == want[2]
	})
	is.Equal(len(triggertest.Runs(t, w.DB, engine.OriginKafka, "orders")), n) // still n runs
	is.Equal(m2.Status("default", "orders").RunsStarted, int64(0))            // the redeliveries started none
}
