// Package cli is the command line of orchestrator: workflows, definitions,
// events and dag commands that call a server's HTTP API through the Go
// client, and tenants and keys commands that work on the database file
// itself (bootstrap, with no server running) or, given --server, on a
// server's admin API, written once over accessBackend. All print human
// tables or JSON.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
)

// Commands lists the top-level commands this package runs.
var Commands = []string{"workflows", "definitions", "events", "dag", "health", "tenants", "keys", "schedules", "webhooks", "triggers"}

// Usage is the one-line summary of each command, for the binary's help.
var Usage = map[string]string{
	"workflows":   "workflows start|list|get|watch|explain|pause|resume|cancel|retry: runs on a server",
	"definitions": "definitions register|list|versions|diff|alias set|alias get|alias list|alias delete: workflow definitions, their versions and aliases on a server",
	"events":      "events RUN_ID: a run's history as a timeline",
	"dag":         "dag validate FILE: validate a definition on a server",
	"health":      "health: exit 0 when the server and its database answer (a container health check)",
	"tenants":     "tenants create|list|get|update|suspend|resume: tenants, on the database file (--database-url, DATABASE_URL) or, with --server, on a server",
	"keys":        "keys create|list|revoke: API keys, on the database file (--database-url, DATABASE_URL) or, with --server, of a tenant on a server",
	"schedules":   "schedules create|list|get|update|delete|pause|unpause|trigger|backfill: cron schedules on a server",
	"webhooks":    "webhooks create|list|get|update|delete: webhooks that start runs, on a server",
	"triggers":    "triggers create|list|get|update|delete: NATS and Kafka triggers that start runs, on a server",
}

// DefaultServer is the server the commands talk to unless told otherwise.
const DefaultServer = "http://localhost:8084"

// env is one command invocation.
type env struct {
	ctx            context.Context
	stdout, stderr io.Writer
	fs             *flag.FlagSet
	server, tenant string
	actor, output  string
	apiKey         string
	timeout        time.Duration
}

// Run runs cmd with args and returns the exit code: 0 done, 1 the server
// refused or failed, 2 bad usage.
func Run(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	if cmd == "tenants" || cmd == "keys" {
		return runAccess(ctx, cmd, args, stdout, stderr)
	}
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr}
	sub := ""
	if cmd == "workflows" || cmd == "definitions" || cmd == "dag" || cmd == "schedules" || cmd == "webhooks" || cmd == "triggers" {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "usage: orchestrator %s\n", Usage[cmd])
			if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
				return 0
			}
			return 2
		}
		sub, args = args[0], args[1:]
		if cmd == "definitions" && sub == "alias" && len(args) > 0 {
			sub, args = "alias "+args[0], args[1:] // definitions alias set|get|list|delete
		}
	}
	c, ok := commands[cmd+" "+sub]
	if !ok {
		fmt.Fprintf(stderr, "orchestrator %s: unknown command %q\nusage: orchestrator %s\n", cmd, sub, Usage[cmd])
		return 2
	}
	e.fs = flag.NewFlagSet("orchestrator "+strings.TrimSpace(cmd+" "+sub), flag.ContinueOnError)
	e.fs.SetOutput(stderr)
	e.fs.StringVar(&e.server, "server", envOr("ORCHESTRATOR_URL", DefaultServer), "server base URL (env ORCHESTRATOR_URL)")
	e.fs.StringVar(&e.tenant, "tenant", envOr("ORCHESTRATOR_TENANT", "default"), "tenant id (env ORCHESTRATOR_TENANT)")
	e.fs.StringVar(&e.apiKey, "api-key", os.Getenv("ORCHESTRATOR_API_KEY"),
		"API key sent as Authorization: Bearer (env ORCHESTRATOR_API_KEY; prefer the variable: a flag shows in the process list)")
	e.fs.StringVar(&e.actor, "actor", os.Getenv("ORCHESTRATOR_ACTOR"),
		"on whose behalf the call is made, recorded beside the key on the events it causes; owner and operator keys (env ORCHESTRATOR_ACTOR)")
	e.fs.StringVar(&e.output, "o", "table", "output: table or json")
	e.fs.DurationVar(&e.timeout, "timeout", 30*time.Second, "timeout of each request")
	run := c.setup(e)
	e.fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: orchestrator %s %s\n\n%s\n\nflags:\n", strings.TrimSpace(cmd+" "+sub), c.args, c.help)
		e.fs.PrintDefaults()
	}
	pos, err := parseInterspersed(e.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != c.nargs {
		fmt.Fprintf(stderr, "usage: orchestrator %s %s\n", strings.TrimSpace(cmd+" "+sub), c.args)
		return 2
	}
	if e.output != "table" && e.output != "json" {
		fmt.Fprintf(stderr, "orchestrator: -o %q: want table or json\n", e.output)
		return 2
	}
	if err := run(pos); err != nil {
		if !errors.Is(err, errInvalid) { // already explained on stdout
			printErr(stderr, err)
		}
		return 1
	}
	return 0
}

// parseInterspersed parses flags that may come after positional arguments
// (`workflows get ID -o json`) and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// client returns the API client for this invocation.
func (e *env) client() (*client.OrchestratorClient, error) {
	opts := []client.Option{client.WithTenant(e.tenant), client.WithTimeout(e.timeout)}
	if e.actor != "" {
		opts = append(opts, client.WithActor(e.actor))
	}
	if e.apiKey != "" {
		opts = append(opts, client.WithAPIKey(e.apiKey))
	}
	return client.New(e.server, opts...)
}

// print writes v as JSON with -o json, else calls table.
func (e *env) print(v any, table func(w *tabwriter.Writer)) error {
	if e.output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// printErr explains an error, with every field problem of a refusal.
func printErr(w io.Writer, err error) {
	var ce *client.Error
	if !errors.As(err, &ce) {
		fmt.Fprintln(w, "orchestrator:", err)
		return
	}
	fmt.Fprintf(w, "orchestrator: %s (%d %s)", ce.Detail, ce.Status, ce.Code)
	if ce.State != "" {
		fmt.Fprintf(w, "; current state: %s", ce.State)
	}
	fmt.Fprintln(w)
	for _, p := range ce.Errors {
		where := p.Field
		if p.Task != "" {
			where = "task " + p.Task + ": " + p.Field
		}
		fmt.Fprintf(w, "  %s: %s\n", where, p.Message)
	}
}

// readJSONArg reads a JSON argument given inline or as @file (- is stdin).
func readJSONArg(name, v string) (json.RawMessage, error) {
	if v == "" {
		return nil, nil
	}
	data := []byte(v)
	if strings.HasPrefix(v, "@") {
		var err error
		if data, err = readFile(v[1:]); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%s: not valid JSON", name)
	}
	return data, nil
}

func readFile(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 4<<20))
	}
	return os.ReadFile(path)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05.000")
}

func dur(a, b time.Time) string {
	if a.IsZero() || b.IsZero() {
		return "-"
	}
	return b.Sub(a).Round(time.Millisecond).String()
}

func errText(e *wire.TaskError) string {
	if e == nil {
		return ""
	}
	msg := e.Code + ": " + e.Message
	if len(msg) > 80 {
		msg = msg[:77] + "..."
	}
	return msg
}
