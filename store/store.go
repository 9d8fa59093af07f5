// Package store keeps the engine's events and projections in SQLite. One
// goroutine owns the only write connection and commits the changes of many
// runs in one transaction (group commit); reads use their own pool and never
// wait for the writer.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/schema"
)

var _ engine.Store = (*DB)(nil)

// Synchronous modes. Full makes every acknowledged commit survive power loss;
// Normal can lose the last commits on power loss (not on a process crash) and
// is faster for small batches.
const (
	SyncFull   = "full"
	SyncNormal = "normal"
)

// Options configure Open.
type Options struct {
	Synchronous string       // SyncFull (default) or SyncNormal
	Readers     int          // read connections; default the number of CPUs, at least 2
	MaxBatch    int          // events per group commit; default DefaultMaxBatch
	Metrics     *metrics.Set // where store metrics are registered; default a private set
	// Logger receives one line when writes begin to fail for the storage's
	// sake (a full disk) and one when they succeed again; default none.
	Logger *slog.Logger
	// ReadOnly opens an existing database for reading only (see
	// openReadOnly): no writer, no migration; every write fails with
	// engine.ErrClosed.
	ReadOnly bool
}

// DefaultMaxBatch is how many events one group commit takes at most. Past a
// few hundred a larger batch no longer makes a commit cheaper per event.
const DefaultMaxBatch = 256

// batchBuckets are the upper bounds of the events-per-commit histogram: a
// commit holds 1 to a few hundred events.
var batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// DB is the SQLite store. It is safe for concurrent use; Close stops the writer
// after committing what is queued.
type DB struct {
	path string
	w    *sql.DB // one connection, owned by the writer goroutine
	r    *sql.DB // readers, query_only
	max  int
	st   stmts

	mu     sync.Mutex // protects queue, closed and load.queued
	queue  []request
	closed bool
	load   writerLoad
	kick   chan struct{}

	g         group         // the writer, and the refusals of commits after Close
	closeOnce sync.Once     // closes the connections once the writer is done
	closeErr  error         // of closing the connections
	closedCh  chan struct{} // closed when the connections are

	m      storeMetrics
	health health
}

// request is one unit of work for the writer.
type request struct {
	changes []engine.Change
	fn      func(*sql.Tx) error // instead of changes: a write of its own
	done    func(error)
	at      time.Time // when it was queued
}

type storeMetrics struct {
	commitLatency *metrics.PrometheusHistogram
	batchSize     *metrics.PrometheusHistogram
	events        *metrics.Counter
	commits       *metrics.Counter
	errors        *metrics.Counter
}

// ParseURL turns a DATABASE_URL into a SQLite file path. It accepts a plain
// path, a file: URI and sqlite:///path; postgres:// is reserved for the
// PostgreSQL store.
func ParseURL(s string) (string, error) {
	switch {
	case s == "":
		return "", errors.New("database url is empty")
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		return "", errors.New("database url: postgres is not supported yet; use a SQLite file path")
	case strings.HasPrefix(s, "sqlite://"):
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("database url: %w", err)
		}
		p := u.Host + u.Path // sqlite://name.db is a relative path
		switch {
		case u.Host == "localhost" && u.Path != "":
			p = u.Path
		case u.Host != "" && u.Path != "":
			return "", fmt.Errorf("database url: sqlite://%s/...: a remote host cannot be opened; use sqlite:///path", u.Host)
		}
		if p == "" {
			return "", errors.New("database url: sqlite:// needs a path, e.g. sqlite:///var/lib/orchestrator.db")
		}
		return memoryRefused(p)
	case strings.HasPrefix(s, "file:"):
		p := strings.TrimPrefix(s, "file:")
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		if rest, ok := strings.CutPrefix(p, "//"); ok {
			// file://HOST/path: only the local host names a file we can open.
			host, path, _ := strings.Cut(rest, "/")
			if host != "" && host != "localhost" {
				return "", fmt.Errorf("database url: file://%s/...: a remote host cannot be opened; use file:///path", host)
			}
			p = "/" + path
			if path == "" {
				p = ""
			}
		}
		p, err := url.PathUnescape(p)
		if err != nil {
			return "", fmt.Errorf("database url: %w", err)
		}
		if p == "" || strings.Contains(s, "mode=memory") {
			if p != "" {
				return memoryRefused(":memory:")
			}
			return "", errors.New("database url: file: needs a path")
		}
		return memoryRefused(p)
	case strings.HasPrefix(s, "sqlite:") && !strings.HasPrefix(s, "sqlite://"):
		return ParseURL(strings.TrimPrefix(s, "sqlite:"))
	case strings.Contains(s, "://"):
		return "", fmt.Errorf("database url: unsupported scheme in %q", s)
	}
	return memoryRefused(s)
}

// memoryRefused refuses an in-memory database: the writer and each reader
// would open a private one, and nothing committed could be read back.
func memoryRefused(p string) (string, error) {
	if p == ":memory:" || strings.HasPrefix(p, ":memory:") {
		return "", errors.New("database url: an in-memory database cannot be shared by the writer and the readers; use a file")
	}
	return p, nil
}

// uriPath escapes the characters that would end or change a path inside a
// file: URI.
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// Open opens (creating if needed) the SQLite database at path, applies the
// migrations and starts the writer; with opts.ReadOnly it opens an existing
// database without changing it.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.ReadOnly {
		return openReadOnly(ctx, path, opts)
	}
	switch opts.Synchronous {
	case "":
		opts.Synchronous = SyncFull
	case SyncFull, SyncNormal:
	default:
		return nil, fmt.Errorf("open store: synchronous %q: want full or normal", opts.Synchronous)
	}
	if opts.Readers <= 0 {
		opts.Readers = max(2, runtime.NumCPU())
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	base := "file:" + uriPath(path) + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"
	w, err := sql.Open("sqlite", base+"&_pragma=synchronous("+opts.Synchronous+")&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)&_pragma=mmap_size(268435456)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store readers: %w", err)
	}
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	r.SetConnMaxIdleTime(0)
	db := &DB{path: path, w: w, r: r, max: opts.MaxBatch, kick: make(chan struct{}, 1), closedCh: make(chan struct{}),
		health: health{log: opts.Logger, now: time.Now}}
	set := opts.Metrics
	db.m = storeMetrics{
		commitLatency: set.GetOrCreatePrometheusHistogramExt(`orchestrator_commit_duration_seconds`, engine.LatencyBuckets),
		batchSize:     set.GetOrCreatePrometheusHistogramExt(`orchestrator_commit_batch_events`, batchBuckets),
		events:        set.GetOrCreateCounter(`orchestrator_events_appended_total`),
		commits:       set.GetOrCreateCounter(`orchestrator_commits_total`),
		errors:        set.GetOrCreateCounter(`orchestrator_commit_errors_total`),
	}
	set.GetOrCreateGauge(`orchestrator_storage_unavailable`, func() float64 {
		if db.Health().Writable {
			return 0
		}
		return 1
	})
	if err := db.prepare(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	db.g.Go(db.writeLoop)
	return db, nil
}

// Migrate applies every migration not yet applied to the database at path.
func Migrate(ctx context.Context, path string) error {
	w, err := sql.Open("sqlite", "file:"+uriPath(path)+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer w.Close()
	w.SetMaxOpenConns(1)
	return migrate(ctx, w)
}

func migrate(ctx context.Context, db *sql.DB) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, db, schema.FS)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Path returns the database file.
func (db *DB) Path() string { return db.path }

// Close commits what is queued, stops the writer, waits for every goroutine
// the store started and closes the database. It is idempotent: every call
// returns once the database is closed, the first with the error of closing
// it.
func (db *DB) Close() error {
	first := false
	db.closeOnce.Do(func() {
		first = true
		db.mu.Lock()
		db.closed = true
		db.mu.Unlock()
		db.wake()
		db.g.Wait()
		if db.w != nil { // read-only: no writer
			db.closeErr = db.w.Close()
		}
		db.closeErr = errors.Join(db.closeErr, db.r.Close())
		close(db.closedCh)
	})
	<-db.closedCh
	db.g.Wait() // refusals of commits made meanwhile
	if first {
		return db.closeErr
	}
	return nil
}

// Ping checks that the database answers a read.
func (db *DB) Ping(ctx context.Context) error {
	var n int
	if err := db.r.QueryRowContext(ctx, "SELECT count(*) FROM goose_db_version").Scan(&n); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}
