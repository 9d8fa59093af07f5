package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// loadDefs are a chain that completes at once and a run held at a gate, so
// that a snapshot finds runs finished, running and just created.
const (
	chainJSON = `{"name":"chain","tasks":[{"id":"a","type":"noop","input":{"n":1}},{"id":"b","type":"noop","depends_on":["a"]},{"id":"c","type":"noop","depends_on":["b"]}]}`
	gatedJSON = `{"name":"gated","tasks":[{"id":"a","type":"noop"},{"id":"g","type":"gate","depends_on":["a"]}]}`
)

// writeLoad starts runs from writers goroutines until stop is closed and
// records each run StartRun acknowledged (durable) in acked, in order.
type writeLoad struct {
	mu    sync.Mutex // protects acked
	acked []string
	grew  chan struct{} // receives after each acknowledgement, without blocking
	wg    sync.WaitGroup
	stop  chan struct{}
	errs  chan error
}

func startWriteLoad(ctx context.Context, e *engine.Engine, writers int) *writeLoad {
	l := &writeLoad{grew: make(chan struct{}, 1), stop: make(chan struct{}), errs: make(chan error, writers)}
	for g := 0; g < writers; g++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				wf := "chain"
				if i%3 == 0 {
					wf = "gated"
				}
				run, err := e.StartRun(ctx, engine.StartRequest{TenantID: []string{"default", "acme"}[i%2], Workflow: wf,
					Input: json.RawMessage(`{"i":1}`)})
				if err != nil {
					l.errs <- err
					return
				}
				l.mu.Lock()
				l.acked = append(l.acked, run.ID)
				l.mu.Unlock()
				select {
				case l.grew <- struct{}{}:
				default:
				}
			}
		}()
	}
	return l
}

// ackedNow returns a copy of the runs acknowledged so far.
func (l *writeLoad) ackedNow() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...)
}

// waitFor waits until at least n runs are acknowledged.
func (l *writeLoad) waitFor(t *testing.T, n int) {
	t.Helper()
	for len(l.ackedNow()) < n {
		select {
		case <-l.grew:
		case err := <-l.errs:
			t.Fatalf("start run: %v", err)
		}
	}
}

func (l *writeLoad) halt(t *testing.T) {
	close(l.stop)
	l.wg.Wait()
	select {
	case err := <-l.errs:
		t.Fatalf("start run: %v", err)
	default:
	}
}

// startLoadEngine starts an engine with a "gate" task type that holds its
// attempts until the test ends, and the two load definitions in two tenants.
func startLoadEngine(t *testing.T, db *store.DB) *engine.Engine {
	t.Helper()
	gate := make(chan struct{})
	e, err := engine.New(engine.Config{Store: db, Workers: 8})
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	e.Register("gate", engine.HandlerFunc(func(ctx context.Context, _ *engine.Attempt) (json.RawMessage, error) {
		select {
		case <-gate:
			return json.RawMessage(`{}`), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("start engine: %v", err)
	}
	t.Cleanup(func() {
		close(gate)
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		e.Stop(ctx)
	})
	for _, tenant := range []string{"default", "acme"} {
		for _, def := range []string{chainJSON, gatedJSON} {
			if _, _, err := e.RegisterDefinition(context.Background(), tenant, []byte(def)); err != nil {
				t.Fatalf("register definition: %v", err)
			}
		}
	}
	return e
}

func TestStore_BackupUnderWriteLoad(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startLoadEngine(t, db)
	load := startWriteLoad(ctx, e, 4)
	load.waitFor(t, 300)
	before := load.ackedNow()
	path := filepath.Join(t.TempDir(), "copy.db")
	report, err := db.Backup(ctx, path)
	is.NoErr(err) // backup
	during := len(load.ackedNow())
	load.waitFor(t, during+50) // the writers went on after the copy
	load.halt(t)
	t.Logf("runs acknowledged: %d before the backup, %d when it ended, %d at the end; %d in the copy",
		len(before), during, len(load.ackedNow()), report.Check.RunsChecked)

	is.True(report.Check.OK())                       // the copy passes its own checks
	is.Equal(report.Path, path)                      // and is where it was asked to be
	is.True(report.Check.RunsChecked >= len(before)) // every run acknowledged before is among those checked
	is.Equal(report.Summary.SchemaVersion, store.LatestSchemaVersion())
	is.Equal(report.Summary.Tenants, int64(2))          // both tenants
	is.Equal(report.Summary.Definitions, int64(4))      // two definitions each
	is.True(report.Summary.Runs[engine.RunRunning] > 0) // runs caught in flight
	entries, err := os.ReadDir(filepath.Dir(path))
	is.NoErr(err)
	is.Equal(len(entries), 1) // nothing but the copy is left beside it

	// Open the copy on its own: it holds every run acknowledged before the
	// backup began, and each verifies, in flight or not.
	copyDB := openAt(t, path, store.Options{})
	for _, id := range before {
		_, _, err := loadAnyRun(ctx, copyDB, id)
		is.NoErr(err) // an acknowledged run is in the copy
	}
	var bad []string
	n, err := engine.Verify(ctx, copyDB, func(_, id string, err error) { bad = append(bad, id+": "+err.Error()) })
	is.NoErr(err)
	is.Equal(bad, []string(nil))          // every run of the copy verifies
	is.Equal(n, report.Check.RunsChecked) // the report counted them
	problems, err := copyDB.IntegrityCheck(ctx)
	is.NoErr(err)
	is.Equal(problems, []string(nil)) // SQLite finds the file sound
}

func TestStore_BackupRefusesExistingFile(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	path := filepath.Join(t.TempDir(), "taken.db")
	is.NoErr(os.WriteFile(path, []byte("keep me"), 0o600))
	_, err := db.Backup(context.Background(), path)
	is.True(err != nil && strings.Contains(err.Error(), "exists")) // refused, saying why
	b, _ := os.ReadFile(path)
	is.Equal(string(b), "keep me") // the file is untouched
}

func TestStore_Restore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	src := openAt(t, filepath.Join(dir, "src.db"), store.Options{})
	e := startEngine(t, src)
	want := engineRun(t, src, e)
	good := filepath.Join(dir, "good.db")
	if _, err := src.Backup(ctx, good); err != nil {
		t.Fatal(err)
	}

	t.Run("a good backup replaces the database, which is kept aside", func(t *testing.T) {
		is := is.New(t)
		target := filepath.Join(t.TempDir(), "live.db")
		oldRun := runAndClose(t, target) // nothing has the target open now

		report, err := store.Restore(ctx, good, target)
		is.NoErr(err) // restored
		is.Equal(report.Path, target)
		is.True(report.Replaced != "") // the old database was kept
		restored := openAt(t, target, store.Options{})
		_, _, err = loadAnyRun(ctx, restored, want)
		is.NoErr(err) // the backup's run is in place
		_, _, err = loadAnyRun(ctx, restored, oldRun)
		is.True(errors.Is(err, engine.ErrNotFound)) // the old one is not
		kept := openAt(t, report.Replaced, store.Options{})
		_, _, err = loadAnyRun(ctx, kept, oldRun)
		is.NoErr(err) // the replaced database is whole where the report says
	})

	t.Run("a database open elsewhere is not replaced", func(t *testing.T) {
		is := is.New(t)
		target := filepath.Join(t.TempDir(), "busy.db")
		busy := openAt(t, target, store.Options{}) // open, idle
		oldRun := engineRun(t, busy, startEngine(t, busy))
		_, err := store.Restore(ctx, good, target)
		is.True(errors.Is(err, store.ErrInUse)) // refused
		_, _, err = loadAnyRun(ctx, busy, oldRun)
		is.NoErr(err) // the database in use is untouched
		entries, _ := os.ReadDir(filepath.Dir(target))
		for _, e := range entries {
			is.True(!strings.Contains(e.Name(), "restore")) // no temporary copy is left
		}
	})

	t.Run("a backup that does not verify is refused", func(t *testing.T) {
		is := is.New(t)
		bad := filepath.Join(t.TempDir(), "bad.db")
		is.NoErr(copyTestFile(good, bad))
		raw := rawDB(t, bad)
		_, err := raw.Exec(`UPDATE runs SET output = '{"forged":true}' WHERE id = ?`, want)
		is.NoErr(err) // a projection that no longer folds from its events
		is.NoErr(raw.Close())
		target := filepath.Join(t.TempDir(), "t.db")
		report, err := store.Restore(ctx, bad, target)
		is.True(errors.Is(err, store.ErrCheckFailed)) // refused
		is.Equal(len(report.Check.RunsDiffer), 1)     // naming the run
		is.Equal(report.Check.RunsDiffer[0].RunID, want)
		_, err = os.Stat(target)
		is.True(errors.Is(err, os.ErrNotExist)) // nothing was put in place
	})

	t.Run("a file that is not a database is refused", func(t *testing.T) {
		is := is.New(t)
		junk := filepath.Join(t.TempDir(), "junk.db")
		is.NoErr(os.WriteFile(junk, []byte("not sqlite"), 0o600))
		_, err := store.Restore(ctx, junk, filepath.Join(t.TempDir(), "t.db"))
		is.True(err != nil && strings.Contains(err.Error(), "not a SQLite database")) // says why
	})
}

// runAndClose makes a database at path with one completed run, closes it and
// returns the run's id.
func runAndClose(t *testing.T, path string) string {
	t.Helper()
	db, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Config{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.RegisterDefinition(context.Background(), "default", []byte(wfJSON)); err != nil {
		t.Fatal(err)
	}
	id := engineRun(t, db, e)
	e.Stop(context.Background())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return id
}

func copyTestFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}

// loadAnyRun loads a run of whichever tenant holds it.
func loadAnyRun(ctx context.Context, db *store.DB, runID string) (*engine.Run, []engine.Task, error) {
	tenant, err := db.RunTenant(ctx, runID)
	if err != nil {
		return nil, nil, err
	}
	return db.LoadRun(ctx, tenant, runID)
}
