package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// A run of "held" stays running until it is cancelled: its one task waits
// for an external worker nobody runs.
const heldDef = `{"name":"held","tasks":[{"id":"x","type":"remote"}]}`

// keyedDef is held with a concurrency key on the input's customer.
func keyedDef(strategy string) string {
	return `{"name":"keyed","concurrency":{"key":"${workflow.input.customer}","max":1,"strategy":"` + strategy + `"},` +
		`"tasks":[{"id":"x","type":"remote"}]}`
}

// quotaEngine starts an engine whose every tenant has quotas q.
func quotaEngine(t *testing.T, db *store.DB, q engine.TenantQuotas, defs ...string) *engine.Engine {
	t.Helper()
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, DefaultQuotas: q}, nil)
	for _, d := range defs {
		if _, _, err := e.RegisterDefinition(context.Background(), "default", []byte(d)); err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	return e
}

func startIn(t *testing.T, e *engine.Engine, wf, input string) (*engine.Run, error) {
	t.Helper()
	req := engine.StartRequest{TenantID: "default", Workflow: wf}
	if input != "" {
		req.Input = json.RawMessage(input)
	}
	return e.StartRun(context.Background(), req)
}

func mustStart(t *testing.T, e *engine.Engine, wf, input string) *engine.Run {
	t.Helper()
	run, err := startIn(t, e, wf, input)
	if err != nil {
		t.Fatalf("start %s: %v", wf, err)
	}
	return run
}

// runEvent returns the run-level event typ of a run, nil when it has none.
func runEvent(t *testing.T, db *store.DB, runID string, typ engine.EventType) *engine.Event {
	t.Helper()
	events, err := db.RunEvents(context.Background(), "default", runID, 0, 0)
	if err != nil {
		t.Fatalf("events of %s: %v", runID, err)
	}
	for i := range events {
		if events[i].Type == typ && events[i].TaskID == "" {
			return &events[i]
		}
	}
	return nil
}

func reasonOf(t *testing.T, ev *engine.Event) string {
	t.Helper()
	var d engine.EventData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatalf("event data: %v", err)
	}
	return d.Reason
}

func quotaErr(t *testing.T, err error, quota string) *engine.QuotaError {
	t.Helper()
	var qe *engine.QuotaError
	if !errors.As(err, &qe) || qe.Quota != quota || !errors.Is(err, engine.ErrQuotaExceeded) {
		t.Fatalf("err = %v, want a %s QuotaError", err, quota)
	}
	return qe
}

func TestAdmission_ActiveRunsRejectRefusesAtTheCap(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{MaxActiveRuns: 2}, heldDef)
	a := mustStart(t, e, "held", "")
	mustStart(t, e, "held", "")
	_, err := startIn(t, e, "held", "")
	qe := quotaErr(t, err, engine.QuotaMaxActiveRuns)
	is.Equal(qe.RetryAfter, time.Second) // a reasonable Retry-After
	_, err = e.Cancel(context.Background(), "default", a.ID, engine.Caller{})
	is.NoErr(err)
	run := mustStart(t, e, "held", "") // a slot freed
	is.Equal(run.State, engine.RunRunning)
}

func TestAdmission_ActiveRunsQueueStartsInCreatedOrder(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{MaxActiveRuns: 1, OnActiveLimit: engine.OnActiveQueue}, heldDef)
	a := mustStart(t, e, "held", "")
	b := mustStart(t, e, "held", "")
	c := mustStart(t, e, "held", "")
	is.Equal(a.State, engine.RunRunning)
	is.Equal(b.State, engine.RunPending) // accepted, waiting
	is.Equal(c.State, engine.RunPending)
	is.True(runEvent(t, db, b.ID, engine.EventRunCreated) != nil) // durable
	is.True(runEvent(t, db, b.ID, engine.EventRunStarted) == nil) // not started
	reason, pos, ok := e.QueuedReason("default", c.ID)
	is.True(ok)
	is.Equal(reason, engine.QueueReason{Code: engine.WaitTenantActiveRuns}) // waits for a tenant slot
	is.Equal(pos, 2)                                                        // behind b
	_, _, ok = e.QueuedReason("other", c.ID)
	is.True(!ok) // another tenant's run is not found

	_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
	is.NoErr(err)
	waitRun(t, db, b.ID, engine.RunRunning)
	ev := runEvent(t, db, b.ID, engine.EventRunStarted)
	is.Equal(ev.Actor, engine.ActorEngine)                               // started by the engine
	is.Equal(reasonOf(t, ev), "tenant_active_runs: slot freed by "+a.ID) // naming the slot
	is.Equal(mustLoad(t, db, c.ID).State, engine.RunPending)             // c still waits
	_, pos, _ = e.QueuedReason("default", c.ID)
	is.Equal(pos, 1) // now next
	_, err = e.Cancel(ctx, "default", b.ID, engine.Caller{})
	is.NoErr(err)
	waitRun(t, db, c.ID, engine.RunRunning)
	is.NoErr(engine.VerifyRun(ctx, db, "default", c.ID)) // the projection is the fold
}

func mustLoad(t *testing.T, db *store.DB, id string) *engine.Run {
	t.Helper()
	run, _, err := db.LoadRun(context.Background(), "default", id)
	if err != nil {
		t.Fatalf("load %s: %v", id, err)
	}
	return run
}

func TestAdmission_PendingRunsCap(t *testing.T) {
	t.Parallel()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{MaxActiveRuns: 1, MaxPendingRuns: 1, OnActiveLimit: engine.OnActiveQueue}, heldDef)
	mustStart(t, e, "held", "")
	mustStart(t, e, "held", "") // waits
	_, err := startIn(t, e, "held", "")
	quotaErr(t, err, engine.QuotaMaxPendingRuns)
}

func TestAdmission_InputSize(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{MaxInputBytes: 16}, heldDef)
	mustStart(t, e, "held", `{"k":"01234567"}`) // 16 bytes, the limit
	_, err := startIn(t, e, "held", `{"k":"012345678"}`)
	qe := quotaErr(t, err, engine.QuotaMaxInputBytes)
	is.True(strings.Contains(qe.Message, "input")) // names the field
	is.Equal(qe.RetryAfter, time.Duration(0))      // waiting does not help
}

func TestAdmission_StartRate(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, NowFunc: clock,
		DefaultQuotas: engine.TenantQuotas{StartRate: 2, StartBurst: 3}}, nil)
	_, _, err := e.RegisterDefinition(context.Background(), "default", []byte(heldDef))
	is.NoErr(err)
	for range 3 {
		mustStart(t, e, "held", "") // the burst
	}
	rl, ok := e.StartRateLimit("default")
	is.True(ok)
	is.Equal(rl, engine.RateLimit{Limit: 3, Remaining: 0, Reset: 1500 * time.Millisecond}) // 3 tokens at 2/s
	_, err = startIn(t, e, "held", "")
	qe := quotaErr(t, err, engine.QuotaStartRate)
	is.Equal(qe.RetryAfter, 500*time.Millisecond) // one token at 2/s
	is.Equal(qe.RateLimit.Remaining, 0)
	_, err = startIn(t, e, "held", "")
	quotaErr(t, err, engine.QuotaStartRate) // a refusal takes no token, nor gives one
	mu.Lock()
	now = now.Add(500 * time.Millisecond)
	mu.Unlock()
	mustStart(t, e, "held", "") // the token came
	_, ok = e.StartRateLimit("other")
	is.True(!ok) // no bucket for a tenant that never started
}

func TestAdmission_TenantSettingsOverDefaults(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	tenants := map[string]*engine.Tenant{
		"default": {ID: "default", Settings: engine.TenantSettings{Quotas: engine.TenantQuotas{MaxActiveRuns: engine.Unlimited}}},
		"small":   {ID: "small", Settings: engine.TenantSettings{Quotas: engine.TenantQuotas{}}},
	}
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, DefaultQuotas: engine.TenantQuotas{MaxActiveRuns: 1},
		TenantFunc: func(_ context.Context, id string) (*engine.Tenant, error) {
			if t := tenants[id]; t != nil {
				return t, nil
			}
			return nil, engine.ErrTenantNotFound
		}}, nil)
	for _, tn := range []string{"default", "small"} {
		_, _, err := e.RegisterDefinition(context.Background(), tn, []byte(heldDef))
		is.NoErr(err)
	}
	for range 3 {
		mustStart(t, e, "held", "") // unlimited for default
	}
	_, err := e.StartRun(context.Background(), engine.StartRequest{TenantID: "small", Workflow: "held"})
	is.NoErr(err) // small: the default cap of 1
	_, err = e.StartRun(context.Background(), engine.StartRequest{TenantID: "small", Workflow: "held"})
	quotaErr(t, err, engine.QuotaMaxActiveRuns)
}

func TestAdmission_QueuedRunsOfferNoExternalTask(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{MaxActiveRuns: 1, OnActiveLimit: engine.OnActiveQueue}, heldDef)
	a := mustStart(t, e, "held", "")
	b := mustStart(t, e, "held", "")
	poll := func(wait time.Duration) *engine.Lease {
		l, err := e.Poll(ctx, engine.PollRequest{TenantID: "default", Types: []string{"remote"}, WorkerID: "w", Lease: time.Minute, Wait: wait})
		is.NoErr(err)
		return l
	}
	l := poll(0)
	is.True(l != nil)
	is.Equal(l.RunID, a.ID) // the active run's task
	is.True(poll(0) == nil) // nothing of the waiting run
	is.NoErr(e.Complete(ctx, "default", l.ID, l.Token, json.RawMessage(`{}`), engine.Caller{}))
	waitRun(t, db, a.ID, engine.RunCompleted)
	l = poll(10 * time.Second) // waits for the task to be offered
	is.True(l != nil)
	is.Equal(l.RunID, b.ID) // offered once its run started
}

func TestAdmission_CancelAPendingRun(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{MaxActiveRuns: 1, OnActiveLimit: engine.OnActiveQueue}, heldDef)
	a := mustStart(t, e, "held", "")
	b := mustStart(t, e, "held", "")
	c := mustStart(t, e, "held", "")
	run, err := e.Cancel(ctx, "default", b.ID, engine.Caller{})
	is.NoErr(err)
	is.Equal(run.State, engine.RunCancelled) // pending -> cancelled
	is.True(runEvent(t, db, b.ID, engine.EventRunStarted) == nil)
	_, pos, ok := e.QueuedReason("default", c.ID)
	is.True(ok)
	is.Equal(pos, 1) // out of the line
	_, err = e.Pause(ctx, "default", c.ID, engine.Caller{})
	var te *engine.TransitionError
	is.True(errors.As(err, &te)) // a pending run cannot be paused
	_, err = e.Cancel(ctx, "default", a.ID, engine.Caller{})
	is.NoErr(err)
	waitRun(t, db, c.ID, engine.RunRunning)
	is.NoErr(engine.VerifyRun(ctx, db, "default", b.ID))
}

func TestAdmission_ConcurrencyKeyQueue(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{}, keyedDef("queue"))
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	b := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	c := mustStart(t, e, "keyed", `{"customer":"c2"}`)
	is.Equal(a.State, engine.RunRunning)
	is.Equal(b.State, engine.RunPending) // c1 is taken
	is.Equal(c.State, engine.RunRunning) // c2 is not
	is.Equal(b.ConcurrencyKey, "c1")     // recorded on the run
	reason, pos, ok := e.QueuedReason("default", b.ID)
	is.True(ok)
	is.Equal(reason, engine.QueueReason{Code: engine.WaitConcurrencyKey, Key: "c1"})
	is.Equal(pos, 1)
	_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
	is.NoErr(err)
	waitRun(t, db, b.ID, engine.RunRunning)
	is.Equal(reasonOf(t, runEvent(t, db, b.ID, engine.EventRunStarted)), "concurrency_key:c1: slot freed by "+a.ID)
	is.Equal(mustLoad(t, db, b.ID).ConcurrencyKey, "c1") // stored
	is.NoErr(engine.VerifyRun(ctx, db, "default", b.ID))

	_, err = startIn(t, e, "keyed", `{"other":1}`)
	var fe *engine.FieldError
	is.True(errors.As(err, &fe)) // a key that does not render
	is.Equal(fe.Field, "input")
	is.True(strings.Contains(fe.Reason, `no field "customer"`)) // names the reference
}

func TestAdmission_ConcurrencyKeyCancelInProgress(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{}, keyedDef("cancel_in_progress"))
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	b := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	is.Equal(b.State, engine.RunRunning) // the new one runs
	got := mustLoad(t, db, a.ID)
	is.Equal(got.State, engine.RunCancelled) // the old one is cancelled, durably, before b answered
	ev := runEvent(t, db, a.ID, engine.EventRunCancelled)
	is.Equal(ev.Actor, engine.ActorEngine)
	is.Equal(reasonOf(t, ev), "concurrency_key: superseded by "+b.ID)
	is.NoErr(engine.VerifyRun(ctx, db, "default", a.ID))
}

func TestAdmission_ConcurrencyKeyCancelNewest(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{}, keyedDef("cancel_newest"))
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	_, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
	var ce *engine.ConcurrencyLimitedError
	is.True(errors.As(err, &ce) && errors.Is(err, engine.ErrConcurrencyLimited)) // refused
	is.Equal(ce.Key, "c1")                                                       // naming the key
	is.Equal(mustLoad(t, db, a.ID).State, engine.RunRunning)                     // the running one goes on
	mustStart(t, e, "keyed", `{"customer":"c2"}`)                                // another key is free
}

func TestAdmission_LinesSurviveARestart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	q := engine.TenantQuotas{MaxActiveRuns: 2, OnActiveLimit: engine.OnActiveQueue}
	cfg := engine.Config{ExternalTypes: true, DefaultQuotas: q}
	cfg.Store = db
	e1, err := engine.New(cfg)
	is.NoErr(err)
	is.NoErr(e1.Start(ctx))
	_, _, err = e1.RegisterDefinition(ctx, "default", []byte(keyedDef("queue")))
	is.NoErr(err)
	a := mustStart(t, e1, "keyed", `{"customer":"c1"}`) // runs
	b := mustStart(t, e1, "keyed", `{"customer":"c1"}`) // waits for c1
	c := mustStart(t, e1, "keyed", `{"customer":"c2"}`) // runs: the tenant is full
	d := mustStart(t, e1, "keyed", `{"customer":"c3"}`) // waits for the tenant
	f := mustStart(t, e1, "keyed", `{"customer":"c4"}`) // waits for the tenant
	is.NoErr(e1.Stop(ctx))

	e2 := quotaEngine(t, db, q)
	keyed := engine.QueueReason{Code: engine.WaitConcurrencyKey, Key: "c1"}
	tenantSlot := engine.QueueReason{Code: engine.WaitTenantActiveRuns}
	for id, want := range map[string]engine.QueueReason{b.ID: keyed, d.ID: tenantSlot, f.ID: tenantSlot} {
		reason, _, ok := e2.QueuedReason("default", id)
		is.True(ok)            // still waiting
		is.Equal(reason, want) // for the same slot
	}
	_, pos, _ := e2.QueuedReason("default", f.ID)
	is.Equal(pos, 2) // behind d
	_, err = e2.Cancel(ctx, "default", c.ID, engine.Caller{})
	is.NoErr(err)
	waitRun(t, db, d.ID, engine.RunRunning) // d first
	is.Equal(mustLoad(t, db, f.ID).State, engine.RunPending)
	is.Equal(mustLoad(t, db, b.ID).State, engine.RunPending) // the tenant is full again
	_, err = e2.Cancel(ctx, "default", a.ID, engine.Caller{})
	is.NoErr(err)
	// a freed c1 and a tenant slot: b (older than f) takes it.
	waitRun(t, db, b.ID, engine.RunRunning)
	is.Equal(mustLoad(t, db, f.ID).State, engine.RunPending)
}

func TestAdmission_RaisedQuotaStartsWaitingRuns(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	var mu sync.Mutex
	settings := engine.TenantSettings{Quotas: engine.TenantQuotas{MaxActiveRuns: 1, OnActiveLimit: engine.OnActiveQueue}}
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true,
		TenantFunc: func(_ context.Context, id string) (*engine.Tenant, error) {
			mu.Lock()
			defer mu.Unlock()
			return &engine.Tenant{ID: id, Settings: settings}, nil
		}}, nil)
	_, _, err := e.RegisterDefinition(context.Background(), "default", []byte(heldDef))
	is.NoErr(err)
	mustStart(t, e, "held", "")
	b := mustStart(t, e, "held", "")
	c := mustStart(t, e, "held", "")
	is.Equal(b.State, engine.RunPending)
	mu.Lock()
	settings.Quotas.MaxActiveRuns = 2 // an admin raises the cap
	mu.Unlock()
	waitRun(t, db, b.ID, engine.RunRunning) // the oldest waiting run starts without a slot freeing
	is.Equal(reasonOf(t, runEvent(t, db, b.ID, engine.EventRunStarted)), "tenant_active_runs: slot freed")
	is.Equal(mustLoad(t, db, c.ID).State, engine.RunPending) // the cap holds
	mu.Lock()
	settings.Quotas.MaxActiveRuns = engine.Unlimited
	mu.Unlock()
	waitRun(t, db, c.ID, engine.RunRunning)
}

func TestAdmission_CancelInProgressSupersedesAWaitingRun(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{MaxActiveRuns: 1, OnActiveLimit: engine.OnActiveQueue}, heldDef, keyedDef("cancel_in_progress"))
	a := mustStart(t, e, "held", "")
	b := mustStart(t, e, "keyed", `{"customer":"c1"}`) // waits for the tenant, holding c1
	c := mustStart(t, e, "keyed", `{"customer":"c1"}`) // supersedes b, and waits in its place
	is.Equal(b.State, engine.RunPending)
	is.Equal(c.State, engine.RunPending)
	is.Equal(mustLoad(t, db, b.ID).State, engine.RunCancelled)
	is.Equal(reasonOf(t, runEvent(t, db, b.ID, engine.EventRunCancelled)), "concurrency_key: superseded by "+c.ID)
	_, pos, ok := e.QueuedReason("default", c.ID)
	is.True(ok)
	is.Equal(pos, 1) // first in line: b left it
	_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
	is.NoErr(err)
	waitRun(t, db, c.ID, engine.RunRunning)
	is.NoErr(engine.VerifyRun(ctx, db, "default", b.ID))
}

// A slot freed while the tenant is over a lowered cap lets no run start,
// so the run a later raise starts does not name it.
func TestAdmission_StartAfterARaiseNamesNoStaleSlot(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	var mu sync.Mutex
	settings := engine.TenantSettings{Quotas: engine.TenantQuotas{MaxActiveRuns: 2, OnActiveLimit: engine.OnActiveQueue}}
	setCap := func(n int) {
		mu.Lock()
		defer mu.Unlock()
		settings.Quotas.MaxActiveRuns = n
	}
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true,
		TenantFunc: func(_ context.Context, id string) (*engine.Tenant, error) {
			mu.Lock()
			defer mu.Unlock()
			return &engine.Tenant{ID: id, Settings: settings}, nil
		}}, nil)
	_, _, err := e.RegisterDefinition(ctx, "default", []byte(heldDef))
	is.NoErr(err)
	a := mustStart(t, e, "held", "")
	mustStart(t, e, "held", "")
	c := mustStart(t, e, "held", "")
	is.Equal(c.State, engine.RunPending)
	setCap(1) // an admin lowers the cap below the active runs
	_, err = e.Cancel(ctx, "default", a.ID, engine.Caller{})
	is.NoErr(err)
	e.AdmitOnce() // a's slot lets none start: one run is active, the cap
	is.Equal(mustLoad(t, db, c.ID).State, engine.RunPending)

	setCap(2)
	e.AdmitOnce()
	waitRun(t, db, c.ID, engine.RunRunning)
	is.Equal(reasonOf(t, runEvent(t, db, c.ID, engine.EventRunStarted)), "tenant_active_runs: slot freed") // not "by" a
}
