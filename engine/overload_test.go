package engine_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// gauge reads the value of the series named exactly name from set.
func gauge(set *metrics.Set, name string) float64 {
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// overloadOnly is an OverloadConfig with every signal off but those set in
// cfg, sampled only when the test calls CheckOverload.
func overloadOnly(cfg engine.OverloadConfig) engine.OverloadConfig {
	off := func(v *int) {
		if *v == 0 {
			*v = -1
		}
	}
	off(&cfg.MaxWriterQueue)
	off(&cfg.MaxReadyTasks)
	off(&cfg.MaxActiveRuns)
	if cfg.MaxCommitLatency == 0 {
		cfg.MaxCommitLatency = -1
	}
	if cfg.MaxActiveBytes == 0 {
		cfg.MaxActiveBytes = -1
	}
	cfg.Interval = time.Minute
	return cfg
}

// TestEngine_OverloadRefusesNewRunsOnly: past a limit the engine refuses new
// runs with an *OverloadError while an idempotent repeat, control calls,
// workers' reports and reads keep working; it accepts runs again once the
// load has stayed down for Hold.
func TestEngine_OverloadRefusesNewRunsOnly(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	set := metrics.NewSet()
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, Metrics: set,
		Overload: overloadOnly(engine.OverloadConfig{MaxActiveRuns: 2, Hold: 20 * time.Millisecond})}, nil)
	_, _, err := e.RegisterDefinition(ctx, "default", []byte(`{"name":"one","tasks":[{"id":"t","type":"py"}]}`))
	is.NoErr(err) // register
	first := engine.StartRequest{TenantID: "default", Workflow: "one", IdempotencyKey: "k1", RequestHash: "h1"}
	r1, err := e.StartRun(ctx, first)
	is.NoErr(err) // start
	r2, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "one"})
	is.NoErr(err)
	r3, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "one"})
	is.NoErr(err)
	is.Equal(gauge(set, "orchestrator_overloaded"), 0.0) // not sampled yet

	e.CheckOverload()
	st := e.Overload()
	is.True(st.Overloaded)                                  // three active runs, over the limit of two
	is.Equal(len(st.Reasons), 1)                            // one signal over
	is.Equal(st.Reasons[0].Signal, engine.SignalActiveRuns) // the active runs
	is.Equal(st.Reasons[0].Value, 3.0)                      // with their number
	is.True(!st.Since.IsZero())                             // since when
	is.Equal(gauge(set, "orchestrator_overloaded"), 1.0)    // the gauge says so

	_, err = e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "one"})
	is.True(errors.Is(err, engine.ErrOverloaded)) // a new run is refused
	var oe *engine.OverloadError
	is.True(errors.As(err, &oe))                 // with the details
	is.Equal(oe.RetryAfter, 20*time.Millisecond) // retry after Hold
	is.Equal(oe.Reasons[0].Signal, engine.SignalActiveRuns)
	is.Equal(gauge(set, `orchestrator_starts_refused_total{reason="overloaded"}`), 1.0) // and counted

	again, replayed, err := e.StartRunIdempotent(ctx, first)
	is.NoErr(err)             // the repeat of an accepted start still answers
	is.True(replayed)         // as a replay
	is.Equal(again.ID, r1.ID) // of the run it started

	_, err = e.Cancel(ctx, "default", r3.ID, engine.Caller{})
	is.NoErr(err) // control calls work
	l, err := e.Poll(ctx, engine.PollRequest{TenantID: "default", Types: []string{"py"}, WorkerID: "w"})
	is.NoErr(err)
	is.True(l != nil)                                                         // polls work
	is.NoErr(e.Complete(ctx, "default", l.ID, l.Token, nil, engine.Caller{})) // and reports
	for _, id := range []string{l.RunID, r3.ID} {
		run, err := e.Wait(ctx, "default", id)
		is.NoErr(err)
		is.True(run.State.Terminal()) // both ended
	}
	_, _, err = db.LoadRun(ctx, "default", r2.ID)
	is.NoErr(err) // reads work

	e.CheckOverload()
	is.True(e.Overload().Overloaded) // one run left, but not for Hold yet
	waitFor(t, "the engine to accept runs again", func() bool {
		e.CheckOverload()
		return !e.Overload().Overloaded
	})
	is.Equal(gauge(set, "orchestrator_overloaded"), 0.0) // the gauge says so
	_, err = e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "one"})
	is.NoErr(err) // and a new run is accepted
}

// TestEngine_OverloadCountsActiveBytes: the payload bytes of the runs in
// memory are a signal, and leave the count when their run ends.
func TestEngine_OverloadCountsActiveBytes(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	set := metrics.NewSet()
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, Metrics: set,
		Overload: overloadOnly(engine.OverloadConfig{MaxActiveBytes: 1000, Hold: time.Millisecond})}, nil)
	_, _, err := e.RegisterDefinition(ctx, "default", []byte(`{"name":"one","tasks":[{"id":"t","type":"py"}]}`))
	is.NoErr(err)
	input := `{"blob":"` + strings.Repeat("x", 2000) + `"}`
	run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "one", Input: []byte(input)})
	is.NoErr(err)
	is.True(gauge(set, "orchestrator_runs_active_bytes") >= 2000) // the input is held
	e.CheckOverload()
	st := e.Overload()
	is.True(st.Overloaded) // over 1000 bytes
	is.Equal(st.Reasons[0].Signal, engine.SignalActiveBytes)
	l, err := e.Poll(ctx, engine.PollRequest{TenantID: "default", Types: []string{"py"}, WorkerID: "w"})
	is.NoErr(err)
	is.NoErr(e.Complete(ctx, "default", l.ID, l.Token, nil, engine.Caller{}))
	_, err = e.Wait(ctx, "default", run.ID)
	is.NoErr(err)
	is.Equal(gauge(set, "orchestrator_runs_active_bytes"), 0.0) // the ended run's bytes are let go
	waitFor(t, "the engine to accept runs again", func() bool {
		e.CheckOverload()
		return !e.Overload().Overloaded
	})
}

// TestEngine_OverloadReadsTheWriter: the store's writer load reaches the
// engine: a commit latency limit below any real commit overloads it.
func TestEngine_OverloadReadsTheWriter(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{Overload: overloadOnly(engine.OverloadConfig{MaxCommitLatency: time.Nanosecond,
		Hold: time.Second})}, nil)
	_, _, err := e.RegisterDefinition(ctx, "default", chainDef("chain", 2, "noop"))
	is.NoErr(err)
	_, err = e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "chain"})
	is.NoErr(err) // one commit at least
	e.CheckOverload()
	st := e.Overload()
	is.True(st.Overloaded) // the writer's latency is over a nanosecond
	is.Equal(st.Reasons[0].Signal, engine.SignalCommitLatency)
}
