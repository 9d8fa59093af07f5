package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// TestPoll_Order: workers get the highest priority first, and among equal
// priorities runs take turns, so one large run cannot starve the others.
func TestPoll_Order(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true}, nil)
	var big []string
	for i := 0; i < 6; i++ {
		big = append(big, fmt.Sprintf(`{"id":"b%d","type":"py"}`, i))
	}
	_, _, err := e.RegisterDefinition(ctx, "default", []byte(`{"name":"big","tasks":[`+strings.Join(big, ",")+`]}`))
	is.NoErr(err)
	_, _, err = e.RegisterDefinition(ctx, "default", []byte(`{"name":"small","tasks":[{"id":"s0","type":"py"},{"id":"s1","type":"py"}]}`))
	is.NoErr(err)
	_, _, err = e.RegisterDefinition(ctx, "default", []byte(`{"name":"urgent","tasks":[{"id":"u","type":"py","priority":10}]}`))
	is.NoErr(err)
	start := func(wf string) string {
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: wf})
		is.NoErr(err)
		return run.ID
	}
	bigRun := start("big") // the oldest run, with the most tasks
	smallRun := start("small")
	urgentRun := start("urgent")
	var got []string
	for i := 0; i < 9; i++ {
		l, err := e.Poll(ctx, engine.PollRequest{TenantID: "default", Types: []string{"py"}, WorkerID: "w"})
		is.NoErr(err)
		is.True(l != nil) // a task is ready
		got = append(got, l.TaskID)
		is.NoErr(e.Complete(ctx, "default", l.ID, l.Token, nil, engine.Caller{}))
	}
	is.Equal(got[0], "u") // priority first, though its run is the newest
	// Then big and small take turns until small has nothing left.
	is.Equal(strings.Join(got[1:5], ","), "b0,s0,b1,s1")
	is.Equal(strings.Join(got[5:], ","), "b2,b3,b4,b5")
	for _, id := range []string{bigRun, smallRun, urgentRun} {
		run, err := e.Wait(ctx, "default", id)
		is.NoErr(err)
		is.Equal(run.State, engine.RunCompleted)
		is.NoErr(engine.VerifyRun(ctx, db, "default", id))
	}
}
