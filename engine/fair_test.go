package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// parallelDef is a definition of n independent tasks of typ named prefix
// and a number of five digits, so that their order is their number's.
func parallelDef(name, typ, prefix string, n int) []byte {
	tasks := make([]string, n)
	for i := range tasks {
		tasks[i] = fmt.Sprintf(`{"id":"%s%05d","type":%q}`, prefix, i, typ)
	}
	return []byte(fmt.Sprintf(`{"name":%q,"tasks":[%s]}`, name, strings.Join(tasks, ",")))
}

// short drops the zeros parallelDef pads task numbers with: a00012 is a12.
func short(id string) string {
	n := strings.TrimLeft(id[1:], "0")
	if n == "" && len(id) > 1 {
		n = "0"
	}
	return id[:1] + n
}

// recorder is a handler that records the tasks it runs, in order, and holds
// the first one until release is closed, so that with one worker the rest
// queue behind it.
type recorder struct {
	mu      sync.Mutex
	order   []string
	release chan struct{}
}

func newRecorder() *recorder { return &recorder{release: make(chan struct{})} }

func (r *recorder) Run(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
	r.mu.Lock()
	r.order = append(r.order, short(a.TaskID))
	first := len(r.order) == 1
	r.mu.Unlock()
	if first {
		<-r.release // the only worker stays busy while the others queue
	}
	return nil, nil
}

// waitHeld waits until the first task holds the worker.
func (r *recorder) waitHeld(t *testing.T) {
	t.Helper()
	waitFor(t, "the first task to hold the worker", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.order) == 1
	})
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

// TestDispatch_TenantsTakeTurns: with the one worker held by tenant A's
// first task and A's backlog queued, tasks of tenants B and C that become
// ready later are dispatched in turns with A's, not after A's backlog drains.
func TestDispatch_TenantsTakeTurns(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	rec := newRecorder()
	e := startEngineWith(t, db, engine.Config{Workers: 1}, map[string]engine.Handler{"rec": rec})
	for _, tn := range []struct {
		tenant string
		n      int
	}{{"a", 50}, {"b", 3}, {"c", 3}} {
		_, _, err := e.RegisterDefinition(ctx, tn.tenant, parallelDef("wf", "rec", tn.tenant, tn.n))
		is.NoErr(err) // register
	}
	a, err := e.StartRun(ctx, engine.StartRequest{TenantID: "a", Workflow: "wf"})
	is.NoErr(err) // start A's backlog
	rec.waitHeld(t)
	b, err := e.StartRun(ctx, engine.StartRequest{TenantID: "b", Workflow: "wf"})
	is.NoErr(err) // start B
	c, err := e.StartRun(ctx, engine.StartRequest{TenantID: "c", Workflow: "wf"})
	is.NoErr(err) // start C
	close(rec.release)
	for _, r := range []struct{ tenant, id string }{{"a", a.ID}, {"b", b.ID}, {"c", c.ID}} {
		run, err := e.Wait(ctx, r.tenant, r.id)
		is.NoErr(err)                            // wait
		is.Equal(run.State, engine.RunCompleted) // every run completes
	}
	order := rec.got()
	is.Equal(len(order), 56) // every task ran once
	// A had the turn; then the three tenants alternate, each run's tasks in
	// their own order, until B and C have nothing left.
	is.Equal(strings.Join(order[:11], ","), "a0,a1,b0,c0,a2,b1,c1,a3,b2,c2,a4")
	is.Equal(order[55], "a49") // A's backlog is served in its own order
}

// TestDispatch_PriorityWithinTenant: inside one tenant the order is as
// before: priority first, then the older run, then the task's position.
func TestDispatch_PriorityWithinTenant(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	rec := newRecorder()
	e := startEngineWith(t, db, engine.Config{Workers: 1}, map[string]engine.Handler{"rec": rec})
	_, _, err := e.RegisterDefinition(ctx, "a", parallelDef("wf", "rec", "a", 4))
	is.NoErr(err)
	_, _, err = e.RegisterDefinition(ctx, "a", []byte(`{"name":"urgent","tasks":[{"id":"u","type":"rec","priority":5}]}`))
	is.NoErr(err)
	_, _, err = e.RegisterDefinition(ctx, "a", parallelDef("late", "rec", "l", 2))
	is.NoErr(err)
	var ids []string
	for _, wf := range []string{"wf", "late", "urgent"} {
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "a", Workflow: wf})
		is.NoErr(err) // start
		ids = append(ids, run.ID)
		if wf == "wf" {
			rec.waitHeld(t)
		}
	}
	close(rec.release)
	for _, id := range ids {
		run, err := e.Wait(ctx, "a", id)
		is.NoErr(err)
		is.Equal(run.State, engine.RunCompleted)
	}
	// The urgent task first, then the older run's tasks, then the newer's.
	is.Equal(strings.Join(rec.got(), ","), "a0,u,a1,a2,a3,l0,l1")
}

// TestPoll_LargeRunDoesNotStarveOthers: a run with 10,000 ready external
// tasks and a run with 10 on the same lane take turns, and another tenant's
// poll is served at once whatever the first tenant's backlog.
func TestPoll_LargeRunDoesNotStarveOthers(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	// The big run's commit may take seconds under -race on a loaded
	// machine: commit latency must not refuse the runs that follow it.
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true, Overload: engine.OverloadConfig{MaxCommitLatency: -1}}, nil)
	_, _, err := e.RegisterDefinition(ctx, "a", parallelDef("big", "py", "b", 10_000))
	is.NoErr(err) // register the big run
	_, _, err = e.RegisterDefinition(ctx, "a", parallelDef("small", "py", "s", 10))
	is.NoErr(err) // register the small run
	_, _, err = e.RegisterDefinition(ctx, "other", parallelDef("small", "py", "o", 1))
	is.NoErr(err) // register the other tenant's run
	big, err := e.StartRun(ctx, engine.StartRequest{TenantID: "a", Workflow: "big"})
	is.NoErr(err) // the big run first: it is the older one
	small, err := e.StartRun(ctx, engine.StartRequest{TenantID: "a", Workflow: "small"})
	is.NoErr(err)
	other, err := e.StartRun(ctx, engine.StartRequest{TenantID: "other", Workflow: "small"})
	is.NoErr(err)

	l, err := e.Poll(ctx, engine.PollRequest{TenantID: "other", Types: []string{"py"}, WorkerID: "w"})
	is.NoErr(err)
	is.True(l != nil)           // the other tenant's poll finds its task
	is.Equal(l.RunID, other.ID) // and only its own tenant's
	is.NoErr(e.Complete(ctx, "other", l.ID, l.Token, nil, engine.Caller{}))

	var fromSmall, fromBig int
	for i := 0; i < 20; i++ {
		l, err := e.Poll(ctx, engine.PollRequest{TenantID: "a", Types: []string{"py"}, WorkerID: "w"})
		is.NoErr(err)
		is.True(l != nil) // a task is ready
		switch l.RunID {
		case small.ID:
			fromSmall++
		case big.ID:
			fromBig++
		}
		is.NoErr(e.Complete(ctx, "a", l.ID, l.Token, nil, engine.Caller{}))
	}
	is.Equal(fromSmall, 10) // the small run's tasks all went in the first 20 polls
	is.Equal(fromBig, 10)   // taking turns with the big run's
	run, err := e.Wait(ctx, "a", small.ID)
	is.NoErr(err)
	is.Equal(run.State, engine.RunCompleted) // the small run is done while the big one still waits
	run, err = e.Wait(ctx, "other", other.ID)
	is.NoErr(err)
	is.Equal(run.State, engine.RunCompleted)
}
