package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// TestEvent_ComputeHash_OnBehalf: an event without OnBehalf hashes as
// events did before the field existed, so that stored histories still
// verify; with one, the hash covers it.
func TestEvent_ComputeHash_OnBehalf(t *testing.T) {
	is := is.New(t)
	e := engine.Event{TenantID: "acme", RunID: "r1", Seq: 3, Type: engine.EventRunPaused, TaskID: "t", Attempt: 2,
		Actor: "key:0123456789abcdef:ci", Data: json.RawMessage(`{"reason":"x"}`), At: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)}
	// The hash of this event as the release before on_behalf computed it.
	is.Equal(e.ComputeHash("prev"), "4955f00e3790b675e19328e1e5ae6cdd8c0085ad88d21a7013f82f84f688d0e2")
	plain := e.ComputeHash("prev")
	e.OnBehalf = "alice"
	is.True(e.ComputeHash("prev") != plain) // on_behalf is covered
	moved := e
	moved.OnBehalf, moved.Data = "", json.RawMessage(`{"reason":"x"}alice`)
	is.True(moved.ComputeHash("prev") != e.ComputeHash("prev")) // and cannot pass for part of the data
}

// TestEngine_Caller: the caller of a start, a control and a worker's calls
// is on every event they cause, whom it acts for beside it, and the policy
// decision in the first; replay still gives the projection.
func TestEngine_Caller(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true}, nil)
	register(t, e, `{"name":"ext","tasks":[{"id":"a","type":"py"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
	d := &engine.PolicyDecision{ID: "d1", Allow: true, PolicyHash: strings.Repeat("a", 64)}
	run, err := e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "ext",
		By: engine.Caller{Actor: "key:k1:ci", OnBehalf: "alice", Policy: d}})
	is.NoErr(err)
	events := history(t, db, run.ID)
	for _, ev := range events {
		is.Equal(ev.Actor, "key:k1:ci") // the caller
		is.Equal(ev.OnBehalf, "alice")  // for whom
	}
	is.Equal(data(t, events[0]).Policy, d)    // the decision on run.created
	is.True(data(t, events[1]).Policy == nil) // only there

	d2 := &engine.PolicyDecision{ID: "d2", Allow: true, PolicyHash: strings.Repeat("b", 64)}
	lease, err := e.Poll(ctx, engine.PollRequest{TenantID: tenant, Types: []string{"py"}, WorkerID: "w1",
		By: engine.By("key:k2:fleet"), Policies: map[string]*engine.PolicyDecision{"py": d2}})
	is.NoErr(err)
	started := filter(history(t, db, run.ID), engine.EventTaskStarted, "a")[0]
	is.Equal(started.Actor, "key:k2:fleet") // the worker's key
	is.Equal(started.OnBehalf, "w1")        // and its worker id
	is.Equal(data(t, started).Policy, d2)   // the decision for the type leased
	is.NoErr(e.Complete(ctx, tenant, lease.ID, lease.Token, nil, engine.By("key:k2:fleet")))
	completed := filter(history(t, db, run.ID), engine.EventTaskCompleted, "a")[0]
	is.Equal(completed.Actor, "key:k2:fleet") // the key that reported
	is.Equal(completed.OnBehalf, "w1")        // for the lease's worker
	waitFor(t, "the run to complete", func() bool { return task(t, db, run.ID, "b").State == engine.TaskCompleted })

	_, err = e.Retry(ctx, tenant, run.ID, engine.By("key:k1:ci"))
	transitionFrom(t, err, engine.RunCompleted) // a refused control records nothing
	got := history(t, db, run.ID)
	page, err := db.ListEvents(ctx, engine.EventFilter{TenantID: tenant, OnBehalf: "w1", Limit: 100})
	is.NoErr(err)
	var types []engine.EventType
	for _, ev := range page {
		types = append(types, ev.Type)
	}
	// The audit query finds the worker's calls by on_behalf: the lease, the
	// completion and the task it made ready.
	is.Equal(types, []engine.EventType{engine.EventTaskStarted, engine.EventTaskCompleted, engine.EventTaskReady})
	verify(t, db, run.ID) // the chain holds and replay gives the projection
	is.NoErr(engine.VerifyChain(got))
}

// gatedHandler is a handler only tenants with AllowExec may use.
type gatedHandler struct{ runs atomic.Int32 }

func (g *gatedHandler) Run(context.Context, *engine.Attempt) (json.RawMessage, error) {
	g.runs.Add(1)
	return nil, nil
}

func (g *gatedHandler) AllowedFor(tenantID string, s engine.TenantSettings) string {
	if s.AllowExec {
		return ""
	}
	return "not for tenant " + tenantID + ": allow_exec is off"
}

func TestEngine_TenantGate(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	var allow atomic.Bool
	var reads atomic.Int32
	tenants := func(_ context.Context, id string) (*engine.Tenant, error) {
		reads.Add(1)
		if id == "nobody" {
			return nil, engine.ErrTenantNotFound
		}
		return &engine.Tenant{ID: id, Settings: engine.TenantSettings{AllowExec: allow.Load()}}, nil
	}
	g := &gatedHandler{}
	e := startEngineWith(t, db, engine.Config{TenantFunc: tenants}, map[string]engine.Handler{"sh": g})

	_, _, err := e.RegisterDefinition(ctx, tenant, []byte(`{"name":"plain","tasks":[{"id":"a","type":"noop"}]}`))
	is.NoErr(err)
	is.Equal(reads.Load(), int32(0)) // no gatedHandler type: the tenant is not read

	def := []byte(`{"name":"gated","tasks":[{"id":"a","type":"noop"},{"id":"s","type":"sh","depends_on":["a"]}]}`)
	_, _, err = e.RegisterDefinition(ctx, tenant, def)
	var ve *definition.ValidationError
	is.True(errors.As(err, &ve)) // refused as invalid
	is.Equal(ve.Problems, []definition.Problem{{Task: "s", Field: "type", Message: "not for tenant default: allow_exec is off"}})
	_, _, err = e.RegisterDefinition(ctx, "nobody", def)
	is.True(errors.Is(err, engine.ErrTenantNotFound)) // an unregistered tenant

	allow.Store(true)
	_, _, err = e.RegisterDefinition(ctx, tenant, def)
	is.NoErr(err) // allowed now
	allow.Store(false)
	run := start(t, e, "gated")
	waitFor(t, "the gatedHandler task to fail", func() bool { return task(t, db, run.ID, "s").State == engine.TaskFailed })
	s := task(t, db, run.ID, "s")
	is.Equal(s.Error.Code, engine.CodeTypeNotAllowed) // refused when it would run
	is.Equal(s.Attempt, 1)                            // at once, not retried
	is.Equal(g.runs.Load(), int32(0))                 // the handler never ran
}
