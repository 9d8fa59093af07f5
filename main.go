// Command orchestrator is a durable workflow orchestrator on one SQLite file.
//
//	orchestrator [serve]          run the HTTP server (the default)
//	orchestrator migrate          apply database migrations and exit
//	orchestrator verify           check every run's events against its projections
//	orchestrator history RUN_ID   print a run's events as a timeline
//	orchestrator validate FILE    validate a workflow definition
//	orchestrator run FILE         run a definition in this process, print its history
//
// and, against a running server (--server, ORCHESTRATOR_URL):
//
//	orchestrator workflows start|list|get|pause|resume|cancel|retry
//	orchestrator definitions register|list
//	orchestrator events RUN_ID
//	orchestrator dag validate FILE
//
// Settings come from flags or the environment (PORT, DATABASE_URL, ...);
// a flag wins over the environment. Run any command with -h for its flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/cli"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/store"
	"github.com/orchestrator/orchestrator/tasks"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil))
}

// run is the whole program; handlers adds in-process task types (embedding
// programs and tests use it). It returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, handlers map[string]engine.Handler) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if slices.Contains(cli.Commands, cmd) {
		return cli.Run(ctx, cmd, args, stdout, stderr)
	}
	var c config
	fs := flag.NewFlagSet("orchestrator "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs, cmd == "serve")
	var runInput string
	var runExec bool
	if cmd == "run" {
		fs.StringVar(&runInput, "input", "", "run input: JSON, or @FILE")
		fs.BoolVar(&runExec, "enable-exec", c.envBool("enable-exec", "ENABLE_EXEC", false), "allow exec tasks (env ENABLE_EXEC)")
	}
	usage := map[string]string{
		"serve":    "serve [flags]: run the HTTP server",
		"migrate":  "migrate [flags]: apply database migrations",
		"verify":   "verify [flags]: fold every run's events and check projections and hash chains",
		"history":  "history [flags] RUN_ID: print a run's events as a timeline",
		"validate": "validate FILE: validate a workflow definition (- for stdin)",
		"run":      "run [flags] FILE: run a definition in this process and print its history (a throwaway database unless --database-url is given)",
	}
	if _, ok := usage[cmd]; !ok {
		fmt.Fprintf(stderr, "orchestrator: unknown command %q\ncommands:\n", cmd)
		for _, k := range []string{"serve", "run", "migrate", "verify", "history", "validate"} {
			fmt.Fprintln(stderr, "  "+usage[k])
		}
		fmt.Fprintln(stderr, "commands against a server (--server or ORCHESTRATOR_URL; -h for each):")
		for _, k := range cli.Commands {
			fmt.Fprintln(stderr, "  "+cli.Usage[k])
		}
		if cmd == "help" || cmd == "-h" {
			return 0
		}
		return 2
	}
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: orchestrator "+usage[cmd])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	c.parsed(fs)
	if err := c.validate(stderr); err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 2
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, &c, handlers)
	case "migrate":
		err = store.Migrate(ctx, c.databasePath)
		if err == nil {
			fmt.Fprintln(stdout, "migrations applied to", c.databasePath)
		}
	case "verify":
		return verify(ctx, &c, stdout, stderr)
	case "history":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: orchestrator history RUN_ID")
			return 2
		}
		err = history(ctx, &c, fs.Arg(0), stdout)
	case "validate":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: orchestrator validate FILE")
			return 2
		}
		return validateFile(fs.Arg(0), stdout, stderr)
	case "run":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: orchestrator run [--input JSON] FILE")
			return 2
		}
		explicitDB := false
		fs.Visit(func(f *flag.Flag) { explicitDB = explicitDB || f.Name == "database-url" })
		c.enableExec = runExec
		return runFile(ctx, &c, fs.Arg(0), runInput, explicitDB, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	return 0
}

// serve runs the server until ctx is done (SIGTERM, SIGINT), then shuts down:
// stop accepting, let running attempts finish up to the grace period, commit,
// return nil.
func serve(ctx context.Context, c *config, handlers map[string]engine.Handler) error {
	log := c.logger
	set := metrics.NewSet()
	db, err := store.Open(ctx, c.databasePath, store.Options{Synchronous: c.synchronous, Metrics: set, Logger: log})
	if err != nil {
		return err
	}
	defer db.Close()
	eng, err := engine.New(engine.Config{Store: db, Workers: c.workers, Logger: log, Metrics: set, ExternalTypes: c.externalTypes,
		MaxRunBytes: c.maxRunBytes, MaxAbandoned: c.maxAbandoned})
	if err != nil {
		return err
	}
	builtins, err := builtinHandlers(c, set)
	if err != nil {
		return err
	}
	for typ, h := range handlers { // an embedder's handler may replace a built-in
		builtins[typ] = h
	}
	breaker := tasks.BreakerConfig{Failures: uint32(c.breakerFails), OpenFor: c.breakerOpenFor, TargetMetrics: c.breakerTargets}
	for typ, h := range builtins {
		if typ != tasks.TypeHTTP { // http has a breaker per tenant and host instead
			h = tasks.WithBreaker(typ, h, breaker, set)
		}
		if err := eng.Register(typ, h); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := eng.Start(ctx); err != nil {
		return err
	}
	log.Info("recovered", "took", time.Since(start).String(), "database", c.databasePath)
	ln, err := net.Listen("tcp", net.JoinHostPort(c.host, c.port))
	if err != nil {
		eng.Stop(context.Background())
		return err
	}
	ln = newLimitListener(ln, c.maxConnections)
	handler := &api.Server{Engine: eng, Store: db, Metrics: set, Logger: log, MaxBodyBytes: c.maxBodyBytes, WriteTimeout: c.writeTimeout}
	srv := &http.Server{
		Handler:           handler.Handler(),
		ReadHeaderTimeout: min(10*time.Second, c.readTimeout),
		ReadTimeout:       c.readTimeout,
		WriteTimeout:      c.writeTimeout, // long polls and event streams set their own
		IdleTimeout:       c.idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "workers", c.workers, "synchronous", c.synchronous,
		"max_connections", c.maxConnections)
	select {
	case <-ctx.Done():
	case err := <-errc:
		eng.Stop(context.Background())
		return err
	}
	log.Info("shutting down", "grace", c.shutdownGrace.String())
	grace, cancel := context.WithTimeout(context.Background(), c.shutdownGrace)
	defer cancel()
	// Both at once: HTTP shutdown waits for requests in flight, long polls
	// among them, which end only when the engine stops; the engine's grace
	// is for running attempts and must not be spent waiting on HTTP.
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Shutdown(grace) }()
	if err := eng.Stop(grace); err != nil {
		log.Warn("engine stop", "err", err)
	}
	if err := <-httpDone; err != nil {
		log.Warn("http shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}

// builtinHandlers returns the http and exec task types as configured. exec
// is registered even when disabled, so that a definition using it is refused
// with the reason rather than left waiting for a worker.
func builtinHandlers(c *config, set *metrics.Set) (map[string]engine.Handler, error) {
	allow, err := tasks.ParseRules(c.httpAllow)
	if err != nil {
		return nil, fmt.Errorf("http-task-allow: %w", err)
	}
	deny, err := tasks.ParseRules(c.httpDeny)
	if err != nil {
		return nil, fmt.Errorf("http-task-deny: %w", err)
	}
	breaker := tasks.BreakerConfig{Failures: uint32(c.breakerFails), OpenFor: c.breakerOpenFor, TargetMetrics: c.breakerTargets}
	h, err := tasks.NewHTTP(tasks.HTTPConfig{Allow: allow, Deny: deny, Breaker: breaker, Metrics: set})
	if err != nil {
		return nil, err
	}
	return map[string]engine.Handler{
		tasks.TypeHTTP: h,
		tasks.TypeExec: tasks.NewExec(tasks.ExecConfig{Enabled: c.enableExec}),
	}, nil
}

func openForRead(ctx context.Context, c *config) (*store.DB, error) {
	if _, err := os.Stat(c.databasePath); err != nil {
		return nil, fmt.Errorf("database %s: %w", c.databasePath, err)
	}
	return store.Open(ctx, c.databasePath, store.Options{})
}

// verify checks every run; the exit code is 1 when any run differs.
func verify(ctx context.Context, c *config, stdout, stderr io.Writer) int {
	db, err := openForRead(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	defer db.Close()
	var bad []string
	n, err := db.Verify(ctx, func(id string, err error) {
		bad = append(bad, id)
		fmt.Fprintf(stdout, "MISMATCH %s: %v\n", id, err)
	})
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	fmt.Fprintf(stdout, "verified %d runs: %d ok, %d differ\n", n, n-len(bad), len(bad))
	if len(bad) > 0 {
		return 1
	}
	return 0
}

// history prints a run's events as a timeline.
func history(ctx context.Context, c *config, runID string, stdout io.Writer) error {
	db, err := openForRead(ctx, c)
	if err != nil {
		return err
	}
	defer db.Close()
	return printHistory(ctx, db, runID, stdout)
}

// printHistory prints a run's events as a timeline and checks its chain.
func printHistory(ctx context.Context, db *store.DB, runID string, stdout io.Writer) error {
	run, _, err := db.LoadRun(ctx, runID)
	if err != nil {
		return err
	}
	events, err := db.RunEvents(ctx, runID, 0, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "run %s  workflow %s v%d  tenant %s  state %s\n\n", run.ID, run.Workflow, run.Version, run.TenantID, run.State)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\t+ELAPSED\tEVENT\tTASK\tATTEMPT\tACTOR\tDETAIL")
	for _, e := range events {
		attempt := ""
		if e.Attempt > 0 {
			attempt = strconv.Itoa(e.Attempt)
		}
		fmt.Fprintf(tw, "%d\t%s\t+%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.Format("2006-01-02 15:04:05.000000"),
			e.At.Sub(run.CreatedAt).Round(time.Microsecond), e.Type, e.TaskID, attempt, e.Actor, detail(e.Data))
	}
	tw.Flush()
	if err := engine.VerifyChain(events); err != nil {
		fmt.Fprintf(stdout, "\nhash chain: BROKEN: %v\n", err)
	} else {
		fmt.Fprintf(stdout, "\nhash chain: ok (%d events)\n", len(events))
	}
	return nil
}

// detail renders event data in one short line.
func detail(data json.RawMessage) string {
	if len(data) == 0 {
		return ""
	}
	var d engine.EventData
	if json.Unmarshal(data, &d) != nil {
		return string(data)
	}
	var parts []string
	if d.Reason != "" {
		parts = append(parts, "reason="+d.Reason)
	}
	if d.Error != nil {
		parts = append(parts, fmt.Sprintf("error=%s: %s", d.Error.Code, d.Error.Message))
	}
	if !d.NotBefore.IsZero() {
		parts = append(parts, "retry_at="+engine.FormatTime(d.NotBefore))
	}
	if d.WorkerID != "" {
		parts = append(parts, "worker="+d.WorkerID)
	}
	if !d.LeaseExpiresAt.IsZero() {
		parts = append(parts, "lease_until="+engine.FormatTime(d.LeaseExpiresAt))
	}
	if !d.WakeAt.IsZero() {
		parts = append(parts, "wake_at="+engine.FormatTime(d.WakeAt))
	}
	if !d.Deadline.IsZero() {
		parts = append(parts, "deadline="+engine.FormatTime(d.Deadline))
	}
	if d.Workflow != "" {
		parts = append(parts, fmt.Sprintf("workflow=%s v%d", d.Workflow, d.Version))
	}
	if len(d.Tasks) > 0 {
		parts = append(parts, "tasks="+strings.Join(d.Tasks, ","))
	}
	for _, kv := range []struct {
		k string
		v json.RawMessage
	}{{"input", d.Input}, {"output", d.Output}} {
		if len(kv.v) > 0 {
			s := string(kv.v)
			if len(s) > 80 {
				s = s[:77] + "..."
			}
			parts = append(parts, kv.k+"="+s)
		}
	}
	return strings.Join(parts, " ")
}

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
	eng, err := engine.New(engine.Config{Store: db, Logger: c.logger})
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
	run, err := eng.StartRun(ctx, engine.StartRequest{TenantID: api.DefaultTenant, Workflow: sd.Name, Version: sd.Version, Input: in, Actor: "cli"})
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
