package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
	"github.com/orchestrator/orchestrator/tasks"
)

// config is every setting of the binary, with its environment name.
type config struct {
	serve          bool // the serve command: its settings are checked too
	host, port     string
	databaseURL    string
	logLevel       string
	logFormat      string
	workers        int
	synchronous    string
	shutdownGrace  time.Duration
	maxBodyBytes   int64
	readTimeout    time.Duration
	writeTimeout   time.Duration
	idleTimeout    time.Duration
	maxConnections int
	externalTypes  bool
	enableExec     bool
	httpAllow      string
	httpDeny       string
	breakerFails   int
	breakerOpenFor time.Duration
	maxRunBytes    int64
	maxAbandoned   int
	quotas         engine.TenantQuotas   // TENANT_*: every tenant's quotas unless it sets its own
	overload       engine.OverloadConfig // OVERLOAD_*: when new runs are refused (config_overload.go)
	breakerTargets bool                  // per-breaker gauges naming tenants and targets
	adaptive       tasks.AdaptiveConfig  // ADAPTIVE_*: adaptive concurrency limits
	authMode       string                // AUTH: local or required
	metricsPublic  bool                  // METRICS_PUBLIC: /metrics without a key
	policyFile     string                // POLICY_FILE: a .rego file or a directory of them
	databasePath   string                // from databaseURL
	logger         *slog.Logger

	checkpointsEvery time.Duration // between rounds of signed checkpoints; 0 = none
	checkpointKey    string        // the signing key's file; "" = beside the database
	backupDir        string        // BACKUP_DIR: where POST /api/v1/admin/backup writes; "" = backups/ beside the database
	retention        time.Duration // RETENTION: how long finished runs stay live; 0 = forever
	retentionEvery   time.Duration // RETENTION_INTERVAL: between retention passes
	archiveDir       string        // ARCHIVE_DIR: where retention archives go; "" = archives/ beside the database

	stuckAfter          time.Duration // STUCK_AFTER: idle time before run.stalled; 0 = off
	maxStreams          int           // STREAM_MAX: event streams open at once
	maxStreamsPerTenant int           // STREAM_MAX_PER_TENANT

	envErrs []envError      // environment values that did not parse
	given   map[string]bool // flags given on the command line
}

// envError is an environment variable whose value is not of its setting's
// kind. It is reported unless the flag of the same setting was given.
type envError struct {
	flag, env, value, want string
}

// Defaults.
const (
	defaultPort          = "8084"
	defaultDatabaseURL   = "orchestrator.db"
	defaultShutdownGrace = 30 * time.Second
	defaultReadTimeout   = 30 * time.Second
	defaultWriteTimeout  = 60 * time.Second
	defaultIdleTimeout   = 120 * time.Second
	// defaultMaxConnections is the connection cap unless the open-file
	// limit is too low for it (see maxConnectionsDefault).
	defaultMaxConnections = 1024
	// spareFiles are the open files kept for the database, logs and the
	// connections and pipes of tasks when the connection cap is derived
	// from the open-file limit.
	spareFiles = 128
)

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// envValue parses the environment variable env for the default of the flag
// named flagName, or returns def when it is unset or empty. A value parse
// refuses is remembered, so that validate names the variable instead of
// quietly using def.
func envValue[T any](c *config, flagName, env string, def T, want string, parse func(string) (T, error)) T {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		c.envErrs = append(c.envErrs, envError{flag: flagName, env: env, value: v, want: want})
		return def
	}
	return x
}

func (c *config) envInt(flagName, env string, def int) int {
	return envValue(c, flagName, env, def, "a whole number", strconv.Atoi)
}

func (c *config) envInt64(flagName, env string, def int64) int64 {
	return envValue(c, flagName, env, def, "a whole number", func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
}

func (c *config) envDuration(flagName, env string, def time.Duration) time.Duration {
	return envValue(c, flagName, env, def, `a duration like "30s" or "1m30s"`, time.ParseDuration)
}

func (c *config) envFloat(flagName, env string, def float64) float64 {
	return envValue(c, flagName, env, def, "a number", func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
}

func (c *config) envBool(flagName, env string, def bool) bool {
	return envValue(c, flagName, env, def, "true or false", strconv.ParseBool)
}

// flags declares the settings shared by every command on fs.
func (c *config) flags(fs *flag.FlagSet, serve bool) {
	c.serve = serve
	fs.StringVar(&c.databaseURL, "database-url", envOr("DATABASE_URL", defaultDatabaseURL),
		"SQLite database: a file path, file:PATH or sqlite:///PATH (env DATABASE_URL)")
	fs.StringVar(&c.logLevel, "log-level", envOr("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", envOr("LOG_FORMAT", "console"), "json or console (env LOG_FORMAT)")
	if !serve {
		return
	}
	fs.StringVar(&c.host, "host", envOr("HOST", ""), "address to listen on; empty = every interface (env HOST)")
	fs.StringVar(&c.port, "port", envOr("PORT", defaultPort), "TCP port (env PORT)")
	fs.IntVar(&c.workers, "workers", c.envInt("workers", "WORKERS", engine.DefaultWorkers), "in-process task attempts at once (env WORKERS)")
	fs.StringVar(&c.synchronous, "synchronous", envOr("SYNCHRONOUS", store.SyncFull),
		"full: every acknowledged change survives power loss; normal: faster, may lose the last commits on power loss (env SYNCHRONOUS)")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", c.envDuration("shutdown-grace", "SHUTDOWN_GRACE", defaultShutdownGrace),
		"on SIGTERM, how long running attempts may finish before they are interrupted (env SHUTDOWN_GRACE)")
	fs.Int64Var(&c.maxBodyBytes, "max-body-bytes", c.envInt64("max-body-bytes", "MAX_BODY_BYTES", api.DefaultMaxBodyBytes),
		"largest request body accepted, in bytes (env MAX_BODY_BYTES)")
	fs.DurationVar(&c.readTimeout, "read-timeout", c.envDuration("read-timeout", "READ_TIMEOUT", defaultReadTimeout),
		"longest time to read a request, headers and body (env READ_TIMEOUT)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", c.envDuration("write-timeout", "WRITE_TIMEOUT", defaultWriteTimeout),
		"longest time from the end of a request to the end of its answer; long polls get their wait on top, event streams this much per batch (env WRITE_TIMEOUT)")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", c.envDuration("idle-timeout", "IDLE_TIMEOUT", defaultIdleTimeout),
		"how long an idle keep-alive connection stays open (env IDLE_TIMEOUT)")
	fs.IntVar(&c.maxConnections, "max-connections", c.envInt("max-connections", "MAX_CONNECTIONS", maxConnectionsDefault()),
		"client connections open at once; more wait to be accepted (env MAX_CONNECTIONS)")
	fs.BoolVar(&c.externalTypes, "external-types", c.envBool("external-types", "EXTERNAL_TYPES", true),
		"accept task types without an in-process handler; their tasks wait for external workers (env EXTERNAL_TYPES)")
	fs.BoolVar(&c.enableExec, "enable-exec", c.envBool("enable-exec", "ENABLE_EXEC", false),
		"allow exec tasks, which run commands on this host (env ENABLE_EXEC)")
	fs.StringVar(&c.httpAllow, "http-task-allow", os.Getenv("HTTP_TASK_ALLOW"),
		"comma-separated CIDRs or host names http tasks may call; empty = any but unspecified, link-local and metadata addresses (env HTTP_TASK_ALLOW)")
	fs.StringVar(&c.httpDeny, "http-task-deny", os.Getenv("HTTP_TASK_DENY"),
		"comma-separated CIDRs or host names http tasks may not call (env HTTP_TASK_DENY)")
	fs.IntVar(&c.breakerFails, "breaker-failures", c.envInt("breaker-failures", "BREAKER_FAILURES", tasks.DefaultBreakerFailures),
		"retryable failures in a row that open a circuit breaker (per tenant and task type, per tenant and http host) (env BREAKER_FAILURES)")
	fs.DurationVar(&c.breakerOpenFor, "breaker-open-for", c.envDuration("breaker-open-for", "BREAKER_OPEN_FOR", tasks.DefaultBreakerOpenFor),
		"how long an open circuit breaker holds attempts back (env BREAKER_OPEN_FOR)")
	fs.Int64Var(&c.maxRunBytes, "max-run-bytes", c.envInt64("max-run-bytes", "MAX_RUN_BYTES", engine.DefaultMaxRunBytes),
		"payload bytes (inputs, outputs, errors) one run may record before it fails with run_too_large (env MAX_RUN_BYTES)")
	fs.IntVar(&c.maxAbandoned, "max-abandoned", c.envInt("max-abandoned", "MAX_ABANDONED", engine.DefaultMaxAbandoned),
		"attempts in a row a task may lose to the process dying before it fails (env MAX_ABANDONED)")
	c.quotaFlags(fs)
	fs.StringVar(&c.authMode, "auth", envOr("AUTH", string(api.AuthLocal)),
		"local: callers on this host without a key act as the admin \"local\", others need an API key; required: every request but GET /health needs a key (env AUTH)")
	fs.BoolVar(&c.metricsPublic, "metrics-public", c.envBool("metrics-public", "METRICS_PUBLIC", false),
		"serve GET /metrics without a key (otherwise it needs an admin key) (env METRICS_PUBLIC)")
	fs.StringVar(&c.policyFile, "policy-file", os.Getenv("POLICY_FILE"),
		"an OPA policy (a .rego file or a directory of them) asked after the role check on every request acting on a tenant; reloaded on SIGHUP (env POLICY_FILE)")
	fs.BoolVar(&c.breakerTargets, "metrics-breaker-targets", c.envBool("metrics-breaker-targets", "METRICS_BREAKER_TARGETS", false),
		"a /metrics gauge per circuit breaker, labelled with its tenant and target host or task type (env METRICS_BREAKER_TARGETS)")
	fs.BoolVar(&c.adaptive.Enabled, "adaptive", c.envBool("adaptive", "ADAPTIVE", true),
		"adaptive concurrency limits per http target host and per tenant and task type (env ADAPTIVE)")
	fs.IntVar(&c.adaptive.MinLimit, "adaptive-min", c.envInt("adaptive-min", "ADAPTIVE_MIN", tasks.DefaultAdaptiveMin),
		"lowest adaptive concurrency limit (env ADAPTIVE_MIN)")
	fs.IntVar(&c.adaptive.MaxLimit, "adaptive-max", c.envInt("adaptive-max", "ADAPTIVE_MAX", tasks.DefaultAdaptiveMax),
		"highest adaptive concurrency limit (env ADAPTIVE_MAX)")
	fs.IntVar(&c.adaptive.InitialLimit, "adaptive-initial", c.envInt("adaptive-initial", "ADAPTIVE_INITIAL", tasks.DefaultAdaptiveInitial),
		"adaptive concurrency limit of a host or task type not called yet (env ADAPTIVE_INITIAL)")
	fs.Float64Var(&c.adaptive.Tolerance, "adaptive-tolerance", c.envFloat("adaptive-tolerance", "ADAPTIVE_TOLERANCE", tasks.DefaultAdaptiveTolerance),
		"how many times its lowest latency a target's median latency may reach before its limit shrinks (env ADAPTIVE_TOLERANCE)")
	fs.DurationVar(&c.adaptive.MaxWait, "adaptive-max-wait", c.envDuration("adaptive-max-wait", "ADAPTIVE_MAX_WAIT", tasks.DefaultAdaptiveMaxWait),
		"how long an attempt waits for a slot, holding its worker, before it is deferred as throttled (env ADAPTIVE_MAX_WAIT)")
	fs.DurationVar(&c.checkpointsEvery, "checkpoint-interval", c.envDuration("checkpoint-interval", "CHECKPOINT_INTERVAL", defaultCheckpointInterval),
		"how often to sign the head of every tenant's log, the first at start; 0 = never (env CHECKPOINT_INTERVAL)")
	checkpointKeyFlag(fs, &c.checkpointKey)
	fs.StringVar(&c.backupDir, "backup-dir", os.Getenv("BACKUP_DIR"),
		"where POST /api/v1/admin/backup writes its copies, created with mode 0700; default backups/ beside the database (env BACKUP_DIR)")
	retentionFlags(fs, c)
	fs.DurationVar(&c.retentionEvery, "retention-interval", c.envDuration("retention-interval", "RETENTION_INTERVAL", time.Hour),
		"time between retention passes, the first at start (env RETENTION_INTERVAL)")
	fs.DurationVar(&c.stuckAfter, "stuck-after", c.envDuration("stuck-after", "STUCK_AFTER", engine.DefaultStuckAfter),
		"record run.stalled for a running run with no event for this long that nothing it waits for will move; 0 = never (env STUCK_AFTER)")
	fs.IntVar(&c.maxStreams, "stream-max", c.envInt("stream-max", "STREAM_MAX", api.DefaultMaxStreams),
		"Server-Sent Event streams open at once; more are refused with 429 (env STREAM_MAX)")
	fs.IntVar(&c.maxStreamsPerTenant, "stream-max-per-tenant", c.envInt("stream-max-per-tenant", "STREAM_MAX_PER_TENANT", api.DefaultMaxStreamsPerTenant),
		"Server-Sent Event streams one tenant may have open at once (env STREAM_MAX_PER_TENANT)")
	c.overloadFlags(fs)
}

// quotaFlags declares the server's default tenant quotas: they apply to
// every tenant that leaves the quota 0 in its settings; 0 is unlimited.
func (c *config) quotaFlags(fs *flag.FlagSet) {
	q := &c.quotas
	fs.Float64Var(&q.StartRate, "tenant-start-rate", c.envFloat("tenant-start-rate", "TENANT_START_RATE", 0),
		"runs a tenant may start per second, on average; 0 = unlimited (env TENANT_START_RATE)")
	fs.IntVar(&q.StartBurst, "tenant-start-burst", c.envInt("tenant-start-burst", "TENANT_START_BURST", 0),
		"runs a tenant may start at once; 0 = the rate rounded up (env TENANT_START_BURST)")
	fs.IntVar(&q.MaxActiveRuns, "tenant-max-active-runs", c.envInt("tenant-max-active-runs", "TENANT_MAX_ACTIVE_RUNS", 0),
		"runs of a tenant running or paused at once; 0 = unlimited (env TENANT_MAX_ACTIVE_RUNS)")
	fs.IntVar(&q.MaxPendingRuns, "tenant-max-pending-runs", c.envInt("tenant-max-pending-runs", "TENANT_MAX_PENDING_RUNS", 0),
		"runs of a tenant waiting for a slot; 0 = unlimited (env TENANT_MAX_PENDING_RUNS)")
	fs.Int64Var(&q.MaxInputBytes, "tenant-max-input-bytes", c.envInt64("tenant-max-input-bytes", "TENANT_MAX_INPUT_BYTES", 0),
		"bytes of one run's input; 0 = unlimited (MAX_BODY_BYTES still bounds the request) (env TENANT_MAX_INPUT_BYTES)")
	fs.StringVar(&q.OnActiveLimit, "tenant-on-active-limit", envOr("TENANT_ON_ACTIVE_LIMIT", engine.OnActiveReject),
		"what a start at the active-run cap gets: reject (429) or queue (pending until a slot frees) (env TENANT_ON_ACTIVE_LIMIT)")
}

// maxConnectionsDefault is the connection cap for this process's open-file
// limit.
func maxConnectionsDefault() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return defaultMaxConnections
	}
	return maxConnectionsFor(lim.Cur)
}

// maxConnectionsFor is defaultMaxConnections, or fewer when an open-file
// limit of nofile would not leave spareFiles beside them (at least 16).
func maxConnectionsFor(nofile uint64) int {
	if nofile >= defaultMaxConnections+spareFiles {
		return defaultMaxConnections
	}
	return max(16, int(nofile)-spareFiles)
}

// parsed records which flags fs was given, so that a flag wins over a bad
// environment value of the same setting.
func (c *config) parsed(fs *flag.FlagSet) {
	c.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { c.given[f.Name] = true })
}

// validate checks the settings and derives the logger and database path.
func (c *config) validate(stderr io.Writer) error {
	for _, e := range c.envErrs {
		if !c.given[e.flag] {
			return fmt.Errorf("%s %q: want %s (or set --%s)", e.env, e.value, e.want, e.flag)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "json":
		c.logger = slog.New(slog.NewJSONHandler(stderr, opts))
	case "console", "text":
		c.logger = slog.New(slog.NewTextHandler(stderr, opts))
	default:
		return fmt.Errorf("log-format %q: want json or console", c.logFormat)
	}
	p, err := store.ParseURL(c.databaseURL)
	if err != nil {
		return err
	}
	c.databasePath = p
	if !c.serve {
		return nil
	}
	if n, err := strconv.Atoi(c.port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q: want a number in 0..65535", c.port)
	}
	switch {
	case c.workers < 1 || c.workers > 10000:
		return fmt.Errorf("workers %d: want 1..10000", c.workers)
	case c.synchronous != store.SyncFull && c.synchronous != store.SyncNormal:
		return fmt.Errorf("synchronous %q: want full or normal", c.synchronous)
	case c.maxRunBytes < 1<<10 || c.maxAbandoned < 1:
		return fmt.Errorf("max-run-bytes must be >= 1024 and max-abandoned >= 1")
	case c.breakerFails < 1 || c.breakerOpenFor <= 0:
		return fmt.Errorf("breaker-failures must be >= 1 and breaker-open-for > 0")
	case c.shutdownGrace < 0:
		return fmt.Errorf("shutdown-grace %s: want 0 or more", c.shutdownGrace)
	case c.maxBodyBytes < 1:
		return fmt.Errorf("max-body-bytes %d: want at least 1", c.maxBodyBytes)
	case c.readTimeout <= 0 || c.writeTimeout <= 0 || c.idleTimeout <= 0:
		return fmt.Errorf("read-timeout, write-timeout and idle-timeout must be positive")
	case c.maxConnections < 1:
		return fmt.Errorf("max-connections %d: want at least 1", c.maxConnections)
	case c.retention < 0 || c.retentionEvery <= 0:
		return fmt.Errorf("retention %s, retention-interval %s: want a retention of 0 (forever) or more and an interval above 0", c.retention, c.retentionEvery)
	case c.checkpointsEvery < 0:
		return fmt.Errorf("checkpoint-interval %s: want 0 (never) or more", c.checkpointsEvery)
	case c.stuckAfter < 0:
		return fmt.Errorf("stuck-after %s: want 0 (never) or more", c.stuckAfter)
	case c.maxStreams < 1 || c.maxStreamsPerTenant < 1:
		return fmt.Errorf("stream-max %d, stream-max-per-tenant %d: want 1 or more", c.maxStreams, c.maxStreamsPerTenant)
	case !slices.Contains(api.AuthModes(), api.AuthMode(c.authMode)):
		return fmt.Errorf("auth %q: want local or required (env AUTH)", c.authMode)
	}
	if err := c.adaptive.Validate(); err != nil {
		return fmt.Errorf("adaptive settings: %w (env ADAPTIVE_MIN, ADAPTIVE_MAX, ADAPTIVE_INITIAL, ADAPTIVE_TOLERANCE, ADAPTIVE_MAX_WAIT)", err)
	}
	if err := c.quotas.Validate("tenant_", true); err != nil {
		return fmt.Errorf("default tenant quotas (env TENANT_*, flags --tenant-*): %w", err)
	}
	if err := c.validateOverload(); err != nil {
		return err
	}
	if c.policyFile != "" {
		if _, err := os.Stat(c.policyFile); err != nil {
			return fmt.Errorf("policy-file: %w", err)
		}
	}
	return nil
}

// besideDatabase is setting when it is set, else name in the database's
// directory: where the files the binary keeps beside its database (the
// archives, the backups, the checkpoint key) go unless a setting names
// another place. It needs the database path validate derives.
func (c *config) besideDatabase(setting, name string) string {
	if setting != "" {
		return setting
	}
	return filepath.Join(filepath.Dir(c.databasePath), name)
}
