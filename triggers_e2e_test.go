package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
	"github.com/orchestrator/orchestrator/triggers/kafkatrigger"
	"github.com/orchestrator/orchestrator/triggers/natstrigger"
	"github.com/orchestrator/orchestrator/triggers/triggertest"
)

// TestTriggers_NATSKilledMidStreamStartsEachMessageOnce publishes N
// messages to a JetStream stream (the broker runs in this process) while
// the server consuming it (a child process) is killed with SIGKILL again
// and again and started anew: in the end the store holds exactly N runs,
// one per message, whatever was in flight at each kill (a run durable whose
// ack was lost is found again by its idempotency key, not started twice).
func TestTriggers_NATSKilledMidStreamStartsEachMessageOnce(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	is.NoErr(err)
	go ns.Start()
	is.True(ns.ReadyForConnections(10 * time.Second)) // the broker
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	is.NoErr(err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	is.NoErr(err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}})
	is.NoErr(err)

	dbPath := filepath.Join(t.TempDir(), "nats.db")
	client := newClient()
	c := startChild(t, dbPath)
	code, body, err := postJSON(client, c.url("/v1/workflows"), triggertest.Definition)
	is.NoErr(err)
	is.Equal(code, http.StatusCreated) // the workflow
	code, body, err = postJSON(client, c.url("/api/v1/tenants/default/triggers"), fmt.Sprintf(
		`{"name":"events","kind":"nats","workflow":"onmsg","input":{"n":"${/body/n}"},
		  "nats":{"servers":[%q],"stream":"EVENTS","ack_wait":"1s"}}`, ns.ClientURL()))
	is.NoErr(err)
	is.Equal(code, http.StatusCreated) // the trigger
	_ = body

	const n = 1500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // published while the consumer is killed
		defer wg.Done()
		for i := range n {
			var opts []jetstream.PublishOpt
			if i%3 == 0 {
				opts = append(opts, jetstream.WithMsgID(fmt.Sprintf("m-%d", i)))
			}
			if _, err := js.Publish(ctx, "events.x", fmt.Appendf(nil, `{"n":%d}`, i), opts...); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			if i%50 == 0 {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	kills := 0
	for kills < 6 {
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		c.kill(t)
		kills++
		c = startChild(t, dbPath)
	}
	wg.Wait()
	durable := "orch_default_events"
	cons, err := js.Consumer(ctx, "EVENTS", durable)
	is.NoErr(err) // the trigger's durable consumer
	triggertest.WaitFor(t, 60*time.Second, "every message acknowledged", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Stream == n && info.NumAckPending == 0
	})
	c.kill(t)

	db, err := store.Open(ctx, dbPath, store.Options{})
	is.NoErr(err)
	defer db.Close()
	runs := triggertest.Runs(t, db, engine.OriginNATS, "events") // fails on a message with two runs
	is.Equal(len(runs), n)                                       // exactly n runs
	for i := range n {
		ref := natstrigger.Ref("", "EVENTS", uint64(i+1))
		if i%3 == 0 {
			ref = natstrigger.Ref(fmt.Sprintf("m-%d", i), "", 0)
		}
		if _, ok := runs[ref]; !ok {
			t.Errorf("message %d (%s) has no run", i, ref)
		}
	}
	t.Logf("%d messages, %d kills, %d runs", n, kills, len(runs))
}

// TestTriggers_KafkaKilledMidStreamStartsEachRecordOnce is the Kafka
// counterpart: records produced to franz-go's in-process cluster while the
// consuming server is killed with SIGKILL and started again; exactly one run
// per record in the end, however many were delivered again past the last
// committed offset.
func TestTriggers_KafkaKilledMidStreamStartsEachRecordOnce(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"))
	is.NoErr(err) // the broker
	defer kc.Close()
	brokers := kc.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	is.NoErr(err)
	defer prod.Close()

	dbPath := filepath.Join(t.TempDir(), "kafka.db")
	client := newClient()
	c := startChild(t, dbPath)
	code, _, err := postJSON(client, c.url("/v1/workflows"), triggertest.Definition)
	is.NoErr(err)
	is.Equal(code, http.StatusCreated) // the workflow
	code, _, err = postJSON(client, c.url("/api/v1/tenants/default/triggers"), fmt.Sprintf(
		`{"name":"events","kind":"kafka","workflow":"onmsg","input":{"n":"${/body/n}"},"kafka":{"brokers":[%q],"topic":"events"}}`, brokers[0]))
	is.NoErr(err)
	is.Equal(code, http.StatusCreated) // the trigger

	const n = 1500
	refs := make([]string, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // produced while the consumer is killed
		defer wg.Done()
		for i := range n {
			r := &kgo.Record{Topic: "events", Partition: int32(i % 3), Value: fmt.Appendf(nil, `{"n":%d}`, i)}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Errorf("produce %d: %v", i, err)
				return
			}
			refs[i] = kafkatrigger.Ref(r.Topic, r.Partition, r.Offset)
		}
	}()
	kills := 0
	for kills < 6 {
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		c.kill(t)
		kills++
		c = startChild(t, dbPath)
	}
	wg.Wait()
	db, err := store.Open(ctx, dbPath, store.Options{ReadOnly: true})
	is.NoErr(err)
	defer db.Close()
	triggertest.WaitFor(t, 90*time.Second, "a run of every record", func() bool {
		return len(triggertest.Runs(t, db, engine.OriginKafka, "events")) >= n
	})
	c.kill(t)
	runs := triggertest.Runs(t, db, engine.OriginKafka, "events") // fails on a record with two runs
	is.Equal(len(runs), n)                                        // exactly n runs
	for i, ref := range refs {
		if _, ok := runs[ref]; !ok {
			t.Errorf("record %d (%s) has no run", i, ref)
		}
	}
	t.Logf("%d records, %d kills, %d runs", n, kills, len(runs))
}
