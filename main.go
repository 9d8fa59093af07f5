// Command orchestrator is a durable workflow orchestrator on one SQLite file.
//
//	orchestrator [serve]          run the HTTP server (the default)
//	orchestrator migrate          apply database migrations and exit
//	orchestrator verify           check every run's events against its projections
//	orchestrator history RUN_ID   print a run's events as a timeline
//	orchestrator validate FILE    validate a workflow definition
//	orchestrator run FILE         run a definition in this process, print its history
//	orchestrator backup FILE      copy the database while a server writes, check the copy
//	orchestrator restore FILE     put a checked backup in place of the database
//	orchestrator checkpoints pubkey|create|export FILE|verify FILE
//	                              signed checkpoints of every tenant's log
//	orchestrator tenants|keys ... manage tenants and API keys on the database file
//	                              (or, given --server only, on that server)
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
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/cli"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
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
	if _, ok := operations[cmd]; ok {
		return runOperation(ctx, cmd, args, stdout, stderr)
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
		for _, k := range operationNames() {
			fmt.Fprintln(stderr, "  "+operations[k].usage)
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
		err = migrate(ctx, &c, stdout)
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
	keys, err := engine.NewKeys(engine.KeysConfig{Store: db, Logger: log})
	if err != nil {
		return err
	}
	var pol *policy.Engine
	if c.policyFile != "" {
		// Refused at start rather than served without: a policy that does
		// not compile names its file and line.
		if pol, err = policy.Load(ctx, c.policyFile, policy.Options{Logger: log}); err != nil {
			return err
		}
	}
	eng, err := engine.New(engine.Config{Store: db, Workers: c.workers, Logger: log, Metrics: set, ExternalTypes: c.externalTypes,
		MaxRunBytes: c.maxRunBytes, MaxAbandoned: c.maxAbandoned, TenantFunc: keys.Tenant, StuckAfter: stuckAfter(c.stuckAfter),
		DefaultQuotas: c.quotas, Overload: c.overload})
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
	limits, err := tasks.NewAdaptiveLimits("task_type:", c.adaptive, set)
	if err != nil {
		return err
	}
	for typ, h := range builtins {
		if typ != tasks.TypeHTTP { // http has a breaker and an adaptive limit per host instead
			h = tasks.WithBreaker(typ, tasks.WithAdaptiveLimit(typ, h, limits), breaker, set)
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
	checkpoints, err := startCheckpoints(c, db)
	if err != nil {
		eng.Stop(context.Background())
		return err
	}
	defer checkpoints.Stop()
	retainer, err := startRetention(c, db, keys.Tenant)
	if err != nil {
		eng.Stop(context.Background())
		return err
	}
	defer retainer.Stop()
	ln, err := net.Listen("tcp", net.JoinHostPort(c.host, c.port))
	if err != nil {
		eng.Stop(context.Background())
		return err
	}
	ln = newLimitListener(ln, c.maxConnections)
	keys.Start(ctx)
	defer func() {
		if err := keys.Stop(); err != nil {
			log.Warn("record key use", "err", err)
		}
	}()
	admin := &engine.Admin{Store: db, Keys: keys}
	trig, consumers, err := startTriggers(ctx, c, db, eng, set, log)
	if err != nil {
		eng.Stop(context.Background())
		return err
	}
	// Consumers stop before the engine: a message whose run is not durable
	// is not acknowledged, and is redelivered to the next start.
	defer consumers.Stop()
	handler := &api.Server{Engine: eng, Metrics: set, Logger: log, MaxBodyBytes: c.maxBodyBytes, WriteTimeout: c.writeTimeout,
		Keys: keys, Admin: admin, Triggers: trig, Policy: pol, AuthMode: api.AuthMode(c.authMode), MetricsPublic: c.metricsPublic,
		Backups: db, BackupDir: backupDir(c), Checkpointer: checkpoints, Checkpoints: db,
		MaxStreams: streamsFor(c, log), MaxStreamsPerTenant: c.maxStreamsPerTenant}
	if err := logAccess(ctx, c, db, admin, pol, ln.Addr()); err != nil {
		eng.Stop(context.Background())
		return err
	}
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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case err := <-errc:
			eng.Stop(context.Background())
			return err
		case <-hup:
			// A policy that fails to compile leaves the one in force.
			if info, err := handler.ReloadPolicy(ctx, "server:SIGHUP"); err != nil {
				log.Error("policy reload", "err", err)
			} else {
				log.Info("policy reloaded", "path", info.Path, "hash", info.Hash)
			}
		}
	}
	log.Info("shutting down", "grace", c.shutdownGrace.String())
	grace, cancel := context.WithTimeout(context.Background(), c.shutdownGrace)
	defer cancel()
	// Both at once: HTTP shutdown waits for requests in flight, long polls
	// among them, which end only when the engine stops; the engine's grace
	// is for running attempts and must not be spent waiting on HTTP.
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Shutdown(grace) }()
	consumers.Stop()
	if err := eng.Stop(grace); err != nil {
		log.Warn("engine stop", "err", err)
	}
	if err := <-httpDone; err != nil {
		log.Warn("http shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}

// streamsFor bounds the event streams to half the connections, so that
// streams, which hold theirs open, cannot take every one.
func streamsFor(c *config, log *slog.Logger) int {
	if n := max(1, c.maxConnections/2); c.maxStreams > n {
		log.Warn("stream-max lowered to half of max-connections", "stream_max", n, "max_connections", c.maxConnections)
		return n
	}
	return c.maxStreams
}

// stuckAfter is the engine's StuckAfter for STUCK_AFTER, where 0 means off.
func stuckAfter(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// logAccess says at start how the server decides who may call it: the mode,
// the policy (recorded in the admin log as loaded), and a warning when it
// listens beyond loopback in local mode with no key created, where callers
// from other hosts are all refused and a proxy on this host that does not
// say it forwards would open the server to everyone it forwards.
func logAccess(ctx context.Context, c *config, db *store.DB, admin *engine.Admin, pol *policy.Engine, addr net.Addr) error {
	log := c.logger
	attrs := []any{"auth", c.authMode, "metrics_public", c.metricsPublic}
	if pol != nil {
		info := pol.Info()
		attrs = append(attrs, "policy", info.Path, "policy_hash", info.Hash)
		if err := api.RecordPolicyLoaded(ctx, admin, "server", info); err != nil {
			return fmt.Errorf("record the policy loaded: %w", err)
		}
	}
	log.Info("access control", attrs...)
	if api.AuthMode(c.authMode) != api.AuthLocal || loopback(addr) {
		return nil
	}
	keys, err := db.ListKeys(ctx, engine.AllTenants)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		log.Warn("AUTH=local and listening beyond loopback with no API key created: callers from other hosts are refused "+
			"until they have a key (orchestrator keys create), callers on this host act as the admin; a reverse proxy on this "+
			"host must send X-Forwarded-For or Forwarded, or set AUTH=required", "addr", addr.String())
	}
	return nil
}

// loopback reports whether addr is a loopback address only.
func loopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
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
	h, err := tasks.NewHTTP(tasks.HTTPConfig{Allow: allow, Deny: deny, Breaker: breaker, Adaptive: c.adaptive, Metrics: set})
	if err != nil {
		return nil, err
	}
	return map[string]engine.Handler{
		tasks.TypeHTTP: h,
		tasks.TypeExec: tasks.NewExec(tasks.ExecConfig{Enabled: c.enableExec}),
	}, nil
}
