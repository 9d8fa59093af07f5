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

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
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
