package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// A Go program embeds the engine: it opens a SQLite store, registers its own
// task type, stores a definition and runs it. Every step of the run is an
// event in the database, so the program could stop and continue later.
func Example_embedded() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "orchestrator-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	db, err := store.Open(ctx, filepath.Join(dir, "orchestrator.db"), store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	e, err := engine.New(engine.Config{Store: db})
	if err != nil {
		log.Fatal(err)
	}
	// "greet" reads a name from the task's input and greets it.
	err = e.Register("greet", engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
		var in struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(a.Input, &in); err != nil {
			return nil, &engine.TaskError{Code: "bad_input", Message: err.Error()}
		}
		return json.Marshal(map[string]string{"greeting": "hello, " + in.Name})
	}))
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop(ctx)

	_, _, err = e.RegisterDefinition(ctx, "default", []byte(`{
		"name": "welcome",
		"tasks": [{"id": "hello", "type": "greet", "input": {"name": "Ada"}}]
	}`))
	if err != nil {
		log.Fatal(err)
	}
	run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "welcome"})
	if err != nil {
		log.Fatal(err)
	}

	// The run goes on in the background; poll the store until it ends.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got, _, err := db.LoadRun(ctx, "default", run.ID)
		if err != nil {
			log.Fatal(err)
		}
		if got.State.Terminal() || time.Now().After(deadline) {
			fmt.Println("state:", got.State)
			fmt.Println("output:", string(got.Output))
			break
		}
	}
	// Output:
	// state: completed
	// output: {"hello":{"greeting":"hello, Ada"}}
}
