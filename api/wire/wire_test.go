package wire_test

import (
	"encoding/json"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
)

func TestProblemCodes(t *testing.T) {
	is := is.New(t)
	seen := map[string]bool{}
	for _, c := range wire.Codes() {
		is.True(!seen[c])            // each code is listed once
		is.True(wire.Title(c) != "") // and has a title
		seen[c] = true
	}
	is.Equal(wire.Title("no_such_code"), "")                                                     // an unknown code has none
	is.Equal(wire.ProblemType(wire.CodeNotFound), "https://orchestrator.dev/problems/not-found") // the type names the code
	is.Equal(wire.ProblemType(wire.CodeIdempotencyMismatch), "https://orchestrator.dev/problems/idempotency-key-reused")
}

func TestRunDetails_Task(t *testing.T) {
	is := is.New(t)
	var d wire.RunDetails
	is.NoErr(json.Unmarshal([]byte(`{"id":"r1","state":"running","progress":{"total":2,"done":1,"percent":50,"states":{"completed":1}},
		"tasks":[{"id":"a","type":"noop","state":"completed","attempts":1},{"id":"b","type":"noop","state":"ready","attempts":0}]}`), &d))
	is.Equal(d.ID, "r1")                               // the run's fields are the run's
	is.Equal(d.State, wire.RunRunning)                 // its state
	is.Equal(d.Progress.States[wire.TaskCompleted], 1) // progress per task state
	is.Equal(d.Task("b").State, wire.TaskReady)        // a task by id
	is.True(d.Task("c") == nil)                        // and none for an unknown id
}

func TestStates_Terminal(t *testing.T) {
	is := is.New(t)
	for _, s := range wire.RunStates() {
		want := s == wire.RunCompleted || s == wire.RunFailed || s == wire.RunCancelled || s == wire.RunTimedOut
		is.Equal(s.Terminal(), want) // a run ends completed, failed, cancelled or timed out
	}
	for _, s := range wire.TaskStates() {
		want := s != wire.TaskPending && s != wire.TaskReady && s != wire.TaskRunning
		is.Equal(s.Terminal(), want) // a task is done unless pending, ready or running
	}
}
