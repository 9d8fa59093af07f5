package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/store"
	"github.com/orchestrator/orchestrator/tasks"
)

// runFile runs a definition in this process, on a throwaway database unless
// one was named, waits for the run to end and prints its history. The exit
// code is 0 when the run completed.
func runFile(ctx context.Context, c *config, path, input string, explicitDB bool, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	def, err := os.ReadFile(path)
	if path == "-" {
		def, err = io.ReadAll(io.LimitReader(os.Stdin, definition.MaxDefinitionBytes+1))
	}
	if err != nil {
		return fail(err)
	}
	var in json.RawMessage
	if input != "" {
		data := []byte(input)
		if strings.HasPrefix(input, "@") {
			if data, err = os.ReadFile(input[1:]); err != nil {
				return fail(err)
			}
		}
		if !json.Valid(data) {
			return fail(errors.New("--input: not valid JSON"))
		}
		in = data
	}
	dbPath := c.databasePath
	if !explicitDB {
		dir, err := os.MkdirTemp("", "orchestrator-run")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		dbPath = dir + "/run.db"
	}
	db, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	eng, err := engine.New(engine.Config{Store: db, Logger: c.logger, NoScheduleLoop: true}) // a one-off run fires no schedule
	if err != nil {
		return fail(err)
	}
	c.breakerFails, c.breakerOpenFor = tasks.DefaultBreakerFailures, tasks.DefaultBreakerOpenFor
	builtins, err := builtinHandlers(c, nil)
	if err != nil {
		return fail(err)
	}
	for typ, h := range builtins {
		if err := eng.Register(typ, h); err != nil {
			return fail(err)
		}
	}
	if err := eng.Start(ctx); err != nil {
		return fail(err)
	}
	defer eng.Stop(context.Background())
	sd, _, err := eng.RegisterDefinition(ctx, api.DefaultTenant, def)
	var ve *definition.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fmt.Fprintf(stderr, "%s\n", p)
		}
		return fail(fmt.Errorf("%s: %d problems", path, len(ve.Problems)))
	}
	if err != nil {
		return fail(err)
	}
	run, err := eng.StartRun(ctx, engine.StartRequest{TenantID: api.DefaultTenant, Workflow: sd.Name, Version: sd.Version, Input: in, By: engine.By("cli")})
	if err != nil {
		return fail(err)
	}
	if run, err = eng.Wait(ctx, api.DefaultTenant, run.ID); err != nil {
		return fail(err)
	}
	if err := printHistory(ctx, db, run.ID, stdout); err != nil {
		return fail(err)
	}
	if len(run.Output) > 0 {
		fmt.Fprintf(stdout, "output: %s\n", run.Output)
	}
	if run.State != engine.RunCompleted {
		return fail(fmt.Errorf("run %s ended %s", run.ID, run.State))
	}
	return 0
}
