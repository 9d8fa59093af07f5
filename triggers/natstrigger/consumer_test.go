package natstrigger_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
	"github.com/orchestrator/orchestrator/triggers"
	"github.com/orchestrator/orchestrator/triggers/natstrigger"
	"github.com/orchestrator/orchestrator/triggers/triggertest"
)

// startNATS runs a nats-server with JetStream on a temporary directory,
// in this process, until cleanup.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func newWorld(t testing.TB) *world {
	w := triggertest.NewWorld(t)
	return &world{db: w.DB, ts: w.Triggers}
}

type world struct {
	db *store.DB
	ts *engine.Triggers
}

func (w *world) runs(t testing.TB, name string) map[string]string {
	return triggertest.Runs(t, w.db, engine.OriginNATS, name)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	triggertest.WaitFor(t, 20*time.Second, what, cond)
}

func TestNATS_OneRunPerMessageAckedOnlyOnceDurable(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	ns := startNATS(t)
	w := newWorld(t)
	nc, err := nats.Connect(ns.ClientURL())
	is.NoErr(err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	is.NoErr(err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}})
	is.NoErr(err) // the stream

	const n = 60
	for i := range n {
		var opts []jetstream.PublishOpt
		if i%2 == 0 {
			opts = append(opts, jetstream.WithMsgID(fmt.Sprintf("order-%d", i)))
		}
		msg := &nats.Msg{Subject: "orders.new", Data: fmt.Appendf(nil, `{"order":%d}`, i), Header: nats.Header{"X-Shop": []string{"s1"}}}
		_, err := js.PublishMsg(ctx, msg, opts...)
		is.NoErr(err) // published before the trigger exists: consumed from the start
	}
	_, err = js.Publish(ctx, "orders.new", []byte("not json"))
	is.NoErr(err) // one message no run can take
	_, err = js.Publish(ctx, "other.x", []byte(`{}`))
	is.True(err != nil) // outside the stream's subjects: refused by the server, not ours

	tr, _, err := w.ts.Create(ctx, engine.LocalAdmin(), engine.TriggerRequest{TenantID: "default", Name: "orders", Kind: engine.TriggerNATS,
		Workflow: "onmsg", Config: engine.TriggerConfig{Input: []byte(`{"order":"${/body/order}","shop":"${/headers/x-shop}"}`),
			NATS: &engine.NATSConfig{Servers: []string{ns.ClientURL()}, Stream: "ORDERS", Subject: "orders.>"}}})
	is.NoErr(err) // the trigger
	m := &triggers.Manager{Triggers: w.ts, Consumers: map[engine.TriggerKind]triggers.Consumer{engine.TriggerNATS: &natstrigger.Consumer{Batch: 16}},
		PollInterval: -1}
	is.NoErr(m.Start(ctx))
	defer m.Stop()

	cons, err := js.Consumer(ctx, "ORDERS", tr.DurableName())
	waitFor(t, "every message acknowledged", func() bool {
		if cons == nil {
			if cons, err = js.Consumer(ctx, "ORDERS", tr.DurableName()); err != nil {
				return false
			}
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == n+1
	})
	runs := w.runs(t, "orders")
	is.Equal(len(runs), n) // one run per JSON message, none for the other
	for i := range n {
		ref := natstrigger.Ref("", "ORDERS", uint64(i+1))
		if i%2 == 0 {
			ref = natstrigger.Ref(fmt.Sprintf("order-%d", i), "", 0)
		}
		id, ok := runs[ref]
		if !ok {
			t.Fatalf("no run of message %s", ref)
		}
		run, _, err := w.db.LoadRun(ctx, "default", id)
		is.NoErr(err)
		is.Equal(string(run.Input), fmt.Sprintf(`{"order":%d,"shop":"s1"}`, i)) // built from payload and header
	}
	st := m.Status("default", "orders")
	is.True(st != nil)                              // the consumer reports
	is.True(st.Connected)                           // connected
	is.Equal(st.RunsStarted, int64(n))              // n runs
	is.Equal(st.Messages, int64(n+1))               // n+1 messages
	is.True(strings.Contains(st.LastError, "body")) // the refused one recorded
	is.Equal(st.Errors, int64(1))                   // once: terminated, not redelivered

	// Every message delivered again (the durable consumer lost, as after a
	// crash before the acks): no run starts twice.
	m.Stop()
	is.NoErr(js.DeleteConsumer(ctx, "ORDERS", tr.DurableName()))
	m2 := &triggers.Manager{Triggers: w.ts, Consumers: map[engine.TriggerKind]triggers.Consumer{engine.TriggerNATS: &natstrigger.Consumer{}},
		PollInterval: -1}
	is.NoErr(m2.Start(ctx))
	defer m2.Stop()
	waitFor(t, "every message acknowledged again", func() bool {
		c, err := js.Consumer(ctx, "ORDERS", tr.DurableName())
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == n+1
	})
	is.Equal(len(w.runs(t, "orders")), n)                          // still n runs
	is.Equal(m2.Status("default", "orders").RunsStarted, int64(0)) // the redeliveries started none
}

func TestNATS_ManagerFollowsTriggerChanges(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	ns := startNATS(t)
	w := newWorld(t)
	nc, err := nats.Connect(ns.ClientURL())
	is.NoErr(err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	is.NoErr(err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}})
	is.NoErr(err)
	set := metrics.NewSet()
	m := &triggers.Manager{Triggers: w.ts, Consumers: map[engine.TriggerKind]triggers.Consumer{engine.TriggerNATS: &natstrigger.Consumer{}},
		PollInterval: -1, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Metrics: set}
	exposed := func() string {
		var b strings.Builder
		set.WritePrometheus(&b)
		return b.String()
	}
	w.ts.StatusFunc, w.ts.ChangedFunc = m.Status, m.Nudge
	is.NoErr(m.Start(ctx))
	defer m.Stop()

	// A trigger on a server that does not answer: not connected, the error
	// recorded, tried again with backoff.
	_, _, err = w.ts.Create(ctx, engine.LocalAdmin(), engine.TriggerRequest{TenantID: "default", Name: "t", Kind: engine.TriggerNATS,
		Workflow: "onmsg", Config: engine.TriggerConfig{NATS: &engine.NATSConfig{Servers: []string{"nats://127.0.0.1:1"}, Stream: "S"}}})
	is.NoErr(err)
	waitFor(t, "two failed connections", func() bool {
		st := w.ts.Status("default", "t")
		return st != nil && st.Errors >= 2 && !st.Connected && strings.Contains(st.LastError, "connect")
	})
	// Pointed at the real server, it connects and consumes.
	url := ns.ClientURL()
	_, _, err = w.ts.Update(ctx, engine.LocalAdmin(), "default", "t", engine.TriggerChange{NATS: &engine.NATSConfig{Servers: []string{url}, Stream: "S"}})
	is.NoErr(err)
	_, err = js.Publish(ctx, "s", []byte(`{"a":1}`))
	is.NoErr(err)
	waitFor(t, "the run", func() bool { return len(w.runs(t, "t")) == 1 })
	is.True(w.ts.Status("default", "t").Connected) // connected
	waitFor(t, "the gauges", func() bool {
		text := exposed()
		return strings.Contains(text, `orchestrator_trigger_connected{tenant="default",trigger="t",kind="nats"} 1`) &&
			strings.Contains(text, `orchestrator_trigger_runs_started{tenant="default",trigger="t",kind="nats"} 1`) &&
			strings.Contains(text, `orchestrator_trigger_lag{tenant="default",trigger="t",kind="nats"} 0`)
	})
	// Disabled, the consumer stops.
	_, _, err = w.ts.Update(ctx, engine.LocalAdmin(), "default", "t", engine.TriggerChange{State: engine.TriggerDisabled})
	is.NoErr(err)
	waitFor(t, "the consumer to stop", func() bool { return w.ts.Status("default", "t") == nil })
	_, err = js.Publish(ctx, "s", []byte(`{"a":2}`))
	is.NoErr(err)
	// Enabled again, it takes up where it was.
	_, _, err = w.ts.Update(ctx, engine.LocalAdmin(), "default", "t", engine.TriggerChange{State: engine.TriggerEnabled})
	is.NoErr(err)
	waitFor(t, "the second run", func() bool { return len(w.runs(t, "t")) == 2 })
	is.NoErr(w.ts.Delete(ctx, engine.LocalAdmin(), "default", "t"))
	waitFor(t, "the consumer to stop", func() bool { return w.ts.Status("default", "t") == nil })
	is.True(!strings.Contains(exposed(), `trigger="t"`)) // its gauges are gone with it
}
