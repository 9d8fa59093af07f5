package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// validateFile validates a definition file and prints its problems or levels.
func validateFile(path string, stdout, stderr io.Writer) int {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, definition.MaxDefinitionBytes+1))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	builtins, err := builtinHandlers(&config{enableExec: true, breakerFails: 1, breakerOpenFor: time.Second}, nil)
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	_, plan, problems := definition.CompileJSON(data, definition.ValidateOptions{ConfigFunc: func(typ string, cfg json.RawMessage) []definition.Problem {
		if v, ok := builtins[typ].(engine.ConfigValidator); ok {
			return v.ValidateConfig(cfg)
		}
		return nil
	}})
	if len(problems) > 0 {
		for _, p := range problems {
			where := p.Field
			if p.Task != "" {
				where = "task " + p.Task + ": " + p.Field
			}
			fmt.Fprintf(stdout, "%s: %s\n", where, p.Message)
		}
		fmt.Fprintf(stdout, "invalid: %d problems\n", len(problems))
		return 1
	}
	fmt.Fprintf(stdout, "valid: %d tasks in %d levels\n", len(plan.Tasks), len(plan.Levels))
	for i, l := range plan.Levels {
		fmt.Fprintf(stdout, "  level %d: %s\n", i, strings.Join(l, ", "))
	}
	return 0
}
