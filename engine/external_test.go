package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// TestComplete_RefusesBadOutput: an output over MaxOutputBytes or not JSON
// is refused with an *OutputError; nothing is recorded and the lease still
// holds, so the worker can fail the task with its own reason.
func TestComplete_RefusesBadOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, code string
		output     json.RawMessage
	}{
		{"too large", "output_too_large", json.RawMessage(`"` + strings.Repeat("x", engine.MaxOutputBytes) + `"`)},
		{"not JSON", "invalid_output", json.RawMessage(`{"a":`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			ctx := context.Background()
			db := openTestStore(t)
			e := startEngineWith(t, db, engine.Config{ExternalTypes: true}, nil)
			_, _, err := e.RegisterDefinition(ctx, "default", []byte(`{"name":"w","tasks":[{"id":"t","type":"py"}]}`))
			is.NoErr(err)
			run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "w"})
			is.NoErr(err)
			l, err := e.Poll(ctx, engine.PollRequest{TenantID: "default", Types: []string{"py"}, WorkerID: "w1"})
			is.NoErr(err)
			is.True(l != nil) // the task is leased
			before, err := db.RunEvents(ctx, "default", run.ID, 0, 0)
			is.NoErr(err)

			err = e.Complete(ctx, "default", l.ID, l.Token, tc.output, engine.Caller{})
			var oe *engine.OutputError
			is.True(errors.As(err, &oe)) // the output is refused
			is.Equal(oe.Code, tc.code)   // saying why
			after, err := db.RunEvents(ctx, "default", run.ID, 0, 0)
			is.NoErr(err)
			is.Equal(len(after), len(before)) // nothing was recorded

			is.NoErr(e.Fail(ctx, "default", l.ID, l.Token, &engine.TaskError{Code: "mine", Message: "m"}, false, engine.Caller{})) // the lease holds
			done, err := e.Wait(ctx, "default", run.ID)
			is.NoErr(err)
			is.Equal(done.State, engine.RunFailed)
			_, tasks, err := db.LoadRun(ctx, "default", run.ID)
			is.NoErr(err)
			is.Equal(tasks[0].Error.Code, "mine") // the worker's reason is recorded
		})
	}
}
