package retention

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// Store is what retention reads and removes: the engine's store with
// tombstones.
type Store interface {
	engine.Store
	engine.RetentionStore
}

// Defaults of Config.
const (
	DefaultBatch    = 100     // runs archived, then removed, at a time
	DefaultMaxRuns  = 100_000 // runs one pass removes at most
	DefaultInterval = time.Hour
)

// Config configures a Service.
type Config struct {
	Store Store
	Dir   string // the archive directory: Dir/TENANT/DAY[.N].ndjson.gz
	// Retention is how long a tenant keeps its finished runs; 0 keeps them
	// forever. Required.
	Retention func(ctx context.Context, tenantID string) (time.Duration, error)
	Interval  time.Duration // between passes, the first at Start; 0: only RunOnce
	Batch     int           // default DefaultBatch
	MaxRuns   int           // per pass, default DefaultMaxRuns
	Logger    *slog.Logger
	NowFunc   func() time.Time
}

// Service removes expired runs, periodically between Start and Stop and
// whenever RunOnce is called. One pass runs at a time.
type Service struct {
	cfg  Config
	pass sync.Mutex

	mu     sync.Mutex         // protects cancel
	cancel context.CancelFunc // set by Start
	wg     sync.WaitGroup
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil || cfg.Retention == nil:
		return nil, errors.New("retention config: store and retention are required")
	case cfg.Dir == "":
		return nil, errors.New("retention config: an archive directory is required")
	case cfg.Interval < 0 || cfg.Batch < 0 || cfg.MaxRuns < 0:
		return nil, errors.New("retention config: interval, batch and max runs must not be negative")
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.MaxRuns == 0 {
		cfg.MaxRuns = DefaultMaxRuns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	return &Service{cfg: cfg}, nil
}

// Start begins the periodic passes unless Interval is 0; calling it again
// does nothing.
func (s *Service) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil || s.cfg.Interval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() {
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		for {
			rep, err := s.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				s.cfg.Logger.Error("retention", "err", err)
			} else if rep.Removed > 0 {
				s.cfg.Logger.Info("retention", "removed", rep.Removed, "archives", rep.Archives)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// Stop ends the periodic passes and waits for one in progress. It is
// idempotent, and safe before Start and on a nil Service.
func (s *Service) Stop() {
	if s == nil {
		return
	}
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()
}

// Report is what a pass did.
type Report struct {
	Removed  int      `json:"removed"`  // runs removed from the live tables
	Skipped  int      `json:"skipped"`  // archived but moved on (retried) before their removal: still live
	Archives []string `json:"archives"` // the files written, relative to Dir
}

// RunOnce archives and removes every tenant's expired runs, at most MaxRuns.
func (s *Service) RunOnce(ctx context.Context) (Report, error) {
	s.pass.Lock()
	defer s.pass.Unlock()
	var rep Report
	err := s.cfg.Store.LogTenants(ctx, func(tenantID string) error {
		keep, err := s.cfg.Retention(ctx, tenantID)
		if err != nil || keep <= 0 {
			return err
		}
		return s.tenant(ctx, tenantID, s.cfg.NowFunc().Add(-keep), &rep)
	})
	return rep, err
}

// tenant removes a tenant's runs that ended before cutoff, a batch at a time.
func (s *Service) tenant(ctx context.Context, tenantID string, cutoff time.Time, rep *Report) error {
	for rep.Removed+rep.Skipped < s.cfg.MaxRuns {
		ids, err := s.cfg.Store.ExpiredRuns(ctx, tenantID, cutoff, min(s.cfg.Batch, s.cfg.MaxRuns-rep.Removed-rep.Skipped))
		if err != nil || len(ids) == 0 {
			return err
		}
		tombs, files, err := s.archive(ctx, tenantID, ids)
		if err != nil {
			return err
		}
		rep.Archives = append(rep.Archives, files...)
		n, err := s.cfg.Store.RemoveRuns(ctx, tombs)
		if err != nil {
			return err
		}
		rep.Removed += n
		rep.Skipped += len(tombs) - n
		if len(tombs)-n == len(ids) { // none could go: do not loop on them
			return nil
		}
	}
	return nil
}

// archive writes the runs into their tenant's archive files, one per day
// they ended, synced and in place before anything is removed, and returns
// their tombstones.
func (s *Service) archive(ctx context.Context, tenantID string, ids []string) ([]engine.Tombstone, []string, error) {
	files := map[string]*archiveFile{} // by day
	var order []string
	defer func() {
		for _, f := range files {
			f.abort()
		}
	}()
	var tombs []engine.Tombstone
	for _, id := range ids {
		rec, err := s.record(ctx, tenantID, id)
		if err != nil {
			return nil, nil, err
		}
		day := rec.Run.EndedAt.UTC().Format(time.DateOnly)
		f := files[day]
		if f == nil {
			if f, err = createArchive(s.cfg.Dir, tenantID, day); err != nil {
				return nil, nil, err
			}
			files[day] = f
			order = append(order, day)
		}
		sum, err := f.write(rec)
		if err != nil {
			return nil, nil, err
		}
		r := &rec.Run
		tombs = append(tombs, engine.Tombstone{TenantID: tenantID, RunID: r.ID, Workflow: r.Workflow, Version: r.Version,
			State: r.State, CreatedAt: r.CreatedAt, EndedAt: r.EndedAt, Events: r.LastSeq, FinalHash: rec.LastHash,
			Archive: f.rel, RecordSHA256: sum, RemovedAt: s.cfg.NowFunc().UTC().Truncate(time.Microsecond)})
	}
	var written []string
	for _, day := range order {
		if err := files[day].finish(); err != nil {
			return nil, nil, err
		}
		written = append(written, files[day].rel)
		delete(files, day)
	}
	return tombs, written, nil
}

// record reads one run whole.
func (s *Service) record(ctx context.Context, tenantID, runID string) (*Record, error) {
	run, tasks, err := s.cfg.Store.LoadRun(ctx, tenantID, runID)
	if err != nil {
		return nil, fmt.Errorf("archive run %s: %w", runID, err)
	}
	events, err := s.cfg.Store.RunEvents(ctx, tenantID, runID, 0, int(run.LastSeq))
	if err != nil {
		return nil, fmt.Errorf("archive run %s: %w", runID, err)
	}
	def, err := s.cfg.Store.GetDefinition(ctx, tenantID, run.Workflow, run.Version)
	if err != nil {
		return nil, fmt.Errorf("archive run %s: %w", runID, err)
	}
	rec := &Record{Run: *run, LastHash: run.LastHash, Definition: def.Definition, Tasks: tasks, Events: events}
	if err := rec.Check(); err != nil {
		// A run whose log does not verify is kept where verify reports it.
		return nil, fmt.Errorf("archive run %s: it does not verify: %w", runID, err)
	}
	return rec, nil
}

// archiveFile is an archive being written: path+".tmp", renamed to path
// once synced.
type archiveFile struct {
	f         *os.File
	zw        *gzip.Writer
	path, rel string
}

// createArchive opens DIR/TENANT/DAY.ndjson.gz, or DAY.N.ndjson.gz for
// the first N free when an earlier pass wrote that day.
func createArchive(root, tenantID, day string) (*archiveFile, error) {
	dir := filepath.Join(root, tenantID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	for n := 1; n < 100_000; n++ {
		name := day + ".ndjson.gz"
		if n > 1 {
			name = fmt.Sprintf("%s.%d.ndjson.gz", day, n)
		}
		path := filepath.Join(dir, name)
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		f, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue // a pass that died left it; the next name is free
		}
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		return &archiveFile{f: f, zw: gzip.NewWriter(f), path: path, rel: filepath.Join(tenantID, name)}, nil
	}
	return nil, fmt.Errorf("archive: no free name for %s/%s", tenantID, day)
}

// write appends a record and returns the SHA-256 of its line.
func (a *archiveFile) write(r *Record) (string, error) {
	line, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	sum := sha256.Sum256(line)
	if _, err := a.zw.Write(append(line, '\n')); err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	return hex.EncodeToString(sum[:]), nil
}

// finish syncs the file and renames it into place, then syncs its directory.
func (a *archiveFile) finish() error {
	err := a.zw.Close()
	if err == nil {
		err = a.f.Sync()
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(a.path+".tmp", a.path)
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(filepath.Dir(a.path)); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		os.Remove(a.path + ".tmp")
		return fmt.Errorf("archive %s: %w", a.rel, err)
	}
	a.f = nil
	return nil
}

// abort drops an archive that was not finished.
func (a *archiveFile) abort() {
	if a.f != nil {
		a.f.Close()
		os.Remove(a.path + ".tmp")
	}
}
