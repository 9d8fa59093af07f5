package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// openTestStore opens a real SQLite file in a fresh temporary directory.
func openTestStore(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"), store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// startEngine starts an engine on db with the given handlers and stops it at cleanup.
func startEngine(t testing.TB, db *store.DB, handlers map[string]engine.Handler) *engine.Engine {
	t.Helper()
	return startEngineWith(t, db, engine.Config{}, handlers)
}

// waitRun polls the store until the run is in a terminal state or the deadline passes.
func waitRun(t testing.TB, db *store.DB, id string, want ...engine.RunState) *engine.Run {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		run, _, err := db.LoadRun(context.Background(), "default", id)
		if err != nil {
			t.Fatalf("load run %s: %v", id, err)
		}
		for _, s := range want {
			if run.State == s {
				return run
			}
		}
		if len(want) == 0 && run.State.Terminal() {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: state %s, want %v", id, run.State, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func chainDef(name string, n int, typ string) []byte {
	var tasks []string
	for i := 0; i < n; i++ {
		dep := ""
		if i > 0 {
			dep = fmt.Sprintf(`,"depends_on":["t%d"]`, i-1)
		}
		tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","type":%q%s}`, i, typ, dep))
	}
	return []byte(fmt.Sprintf(`{"name":%q,"tasks":[%s]}`, name, strings.Join(tasks, ",")))
}

func TestEngine_ChainCompletes(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngine(t, db, nil)
	sd, created, err := e.RegisterDefinition(ctx, "default", chainDef("chain", 10, "noop"))
	is.NoErr(err)           // register definition
	is.True(created)        // first version is new
	is.Equal(sd.Version, 1) // versions start at 1
	run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "chain", Input: json.RawMessage(`{"x":1}`)})
	is.NoErr(err) // start run
	got := waitRun(t, db, run.ID)
	is.Equal(got.State, engine.RunCompleted)               // run completes
	is.NoErr(engine.VerifyRun(ctx, db, "default", run.ID)) // projections equal the fold of the events
	events, err := db.RunEvents(ctx, "default", run.ID, 0, 0)
	is.NoErr(err)
	is.Equal(len(events), 2+3*10+1) // created, started, ready/started/completed per task, completed
}
