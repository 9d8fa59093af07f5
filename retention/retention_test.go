package retention_test

import (
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	_ "modernc.org/sqlite"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/retention"
	"github.com/orchestrator/orchestrator/store"
)

// clock is a settable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	path string
	db   *store.DB
	eng  *engine.Engine
	clk  *clock
	dir  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	tmp := t.TempDir()
	path := filepath.Join(tmp, "r.db")
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	eng, err := engine.New(engine.Config{Store: db, NowFunc: clk.Now, ExternalTypes: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Stop(ctx)
	})
	if _, _, err := eng.RegisterDefinition(ctx, "acme", []byte(`{"name":"wf","tasks":[{"id":"a","type":"noop"},
		{"id":"b","type":"noop","depends_on":["a"]}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := eng.RegisterDefinition(ctx, "acme", []byte(`{"name":"ext","tasks":[{"id":"a","type":"python"}]}`)); err != nil {
		t.Fatal(err)
	}
	return &env{path: path, db: db, eng: eng, clk: clk, dir: filepath.Join(tmp, "archives")}
}

// finished starts n runs of wf and waits until each is completed.
func (e *env) finished(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		run, err := e.eng.StartRun(context.Background(), engine.StartRequest{TenantID: "acme", Workflow: "wf"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = e.eng.Wait(ctx, "acme", run.ID)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	return ids
}

func (e *env) service(t *testing.T, keep time.Duration) *retention.Service {
	t.Helper()
	s, err := retention.New(retention.Config{Store: e.db, Dir: e.dir, NowFunc: e.clk.Now, Batch: 3,
		Retention: func(context.Context, string) (time.Duration, error) { return keep, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Retention removes the runs that ended before it, archives each whole,
// leaves tombstones, keeps active and recent runs, and verify, the archive
// check and checkpoints signed before it all still pass.
func TestRetention_RemovesArchivesAndStillVerifies(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t)
	old := e.finished(t, 7)
	active, err := e.eng.StartRun(ctx, engine.StartRequest{TenantID: "acme", Workflow: "ext"}) // waits for a worker
	is.NoErr(err)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	cpr, err := engine.NewCheckpointer(engine.CheckpointerConfig{Store: e.db, Key: key})
	is.NoErr(err)
	cps, err := cpr.Checkpoint(ctx) // signed while every run is live
	is.NoErr(err)
	is.True(len(cps) > 0)
	e.clk.Add(48 * time.Hour)
	recent := e.finished(t, 2)

	rep, err := e.service(t, 24*time.Hour).RunOnce(ctx)
	is.NoErr(err)
	is.Equal(rep.Removed, len(old)) // the old runs alone
	is.Equal(rep.Skipped, 0)
	for _, id := range old {
		_, err := e.db.GetRunRow(ctx, "acme", id)
		is.True(err != nil) // gone from the live tables
		err = e.eng.Archived(ctx, "acme", id)
		var gone *engine.ArchivedError
		is.True(errors.As(err, &gone))                             // with a tombstone
		is.Equal(gone.Tombstone.State, engine.RunCompleted)        // saying what it was
		is.True(strings.HasPrefix(gone.Tombstone.Archive, "acme")) // and where it went
		evs, err := e.db.RunEvents(ctx, "acme", id, 0, 0)
		is.NoErr(err)
		is.Equal(len(evs), 0) // its events are gone
	}
	for _, id := range append(recent, active.ID) {
		_, err := e.db.GetRunRow(ctx, "acme", id)
		is.NoErr(err) // recent and active runs stay
	}
	n, err := engine.Verify(ctx, e.db, func(_, runID string, err error) { t.Errorf("run %s: %v", runID, err) })
	is.NoErr(err)
	is.Equal(n, len(recent)+1) // what stays verifies

	matched := 0
	for _, a := range rep.Archives {
		vr, err := retention.VerifyArchive(ctx, filepath.Join(e.dir, a), e.db)
		is.NoErr(err)
		is.Equal(len(vr.Problems), 0) // each archive's chains fold and match their tombstones
		matched += vr.Matched
	}
	is.Equal(matched, len(old)) // every removed run is in an archive

	v := engine.NewCheckpointVerifier(e.db, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
	for i := range cps {
		bad, err := v.Check(ctx, &cps[i])
		is.NoErr(err)
		is.Equal(len(bad), 0) // the checkpoints signed before still verify: the log's skeleton stayed
	}

	raw, err := sql.Open("sqlite", e.path)
	is.NoErr(err)
	defer raw.Close()
	_, err = raw.Exec(`DELETE FROM events WHERE run_id = ?`, recent[0])
	is.True(err != nil && strings.Contains(err.Error(), "append-only")) // any other delete of events is refused
	_, err = raw.Exec(`DELETE FROM tombstones`)
	is.True(err != nil) // and tombstones stay
	_, err = raw.Exec(`DELETE FROM archived_events`)
	is.True(err != nil) // and so does the log's skeleton
	_, err = raw.Exec(`UPDATE archived_events SET hash = 'x'`)
	is.True(err != nil) // unchanged

	again, err := e.service(t, 24*time.Hour).RunOnce(ctx)
	is.NoErr(err)
	is.Equal(again.Removed, 0) // a second pass finds nothing more
}

// An archive whose record was changed after it was written fails its check.
func TestRetention_TamperedArchiveFailsVerify(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t)
	e.finished(t, 2)
	e.clk.Add(48 * time.Hour)
	rep, err := e.service(t, time.Hour).RunOnce(ctx)
	is.NoErr(err)
	is.Equal(len(rep.Archives), 1)
	path := filepath.Join(e.dir, rep.Archives[0])
	f, err := os.Open(path)
	is.NoErr(err)
	zr, err := gzip.NewReader(f)
	is.NoErr(err)
	var b strings.Builder
	_, err = io.Copy(&b, zr)
	is.NoErr(err)
	f.Close()
	is.True(strings.Contains(b.String(), `"actor":"engine"`))
	text := strings.Replace(b.String(), `"actor":"engine"`, `"actor":"mallory"`, 1) // who did it, rewritten
	out, err := os.Create(path)
	is.NoErr(err)
	zw := gzip.NewWriter(out)
	zw.Write([]byte(text))
	zw.Close()
	out.Close()
	vr, err := retention.VerifyArchive(ctx, path, e.db)
	is.NoErr(err)
	is.True(len(vr.Problems) > 0) // caught: the record no longer has the digest its tombstone holds
	off, err := retention.VerifyArchive(ctx, path, nil)
	is.NoErr(err)
	is.True(len(off.Problems) > 0)                                   // and without the database: its chain breaks
	is.True(strings.Contains(off.Problems[0].Problem, "hash chain")) // saying so
}

// A record checks on its own, and one whose definition no longer compiles
// fails, naming the workflow and version its run pinned.
func TestRecord_CheckDefinition(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t)
	e.finished(t, 1)
	e.clk.Add(48 * time.Hour)
	e.finished(t, 1) // the newest event stays live
	rep, err := e.service(t, time.Hour).RunOnce(ctx)
	is.NoErr(err)
	is.Equal(len(rep.Archives), 1)
	var recs []*retention.Record
	err = retention.ReadArchive(filepath.Join(e.dir, rep.Archives[0]), func(_ int, l *retention.Line) error {
		recs = append(recs, l.Record)
		return nil
	})
	is.NoErr(err)
	is.Equal(len(recs), 1)
	r := recs[0]
	is.NoErr(r.Check()) // as archived

	r.Definition = []byte(`{"name":"wf","tasks":[{"id":"a","type":"noop","depends_on":["a"]}]}`)
	err = r.Check()
	var ve *definition.ValidationError
	is.True(errors.As(err, &ve))                                                    // the definition's problems
	is.True(strings.HasPrefix(err.Error(), "definition wf v1: invalid definition")) // under the run's workflow and version
}

// A pass that would remove the run holding the newest event leaves it
// live: SQLite numbers a new event max(id)+1, so removing the newest would
// give the next events the ids of archived ones (the log's positions would
// go back), and the pass that archives those runs then failed for ever on
// the skeleton's unique id, writing a new archive file each time.
func TestRetention_NeverReusesTheIDsOfArchivedEvents(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t)
	first := e.finished(t, 3) // nothing happens after them: the last holds the newest event
	e.clk.Add(48 * time.Hour)
	rep, err := e.service(t, 24*time.Hour).RunOnce(ctx)
	is.NoErr(err)
	is.Equal(rep.Removed, len(first)-1) // all but the run with the newest event
	_, err = e.db.GetRunRow(ctx, "acme", first[len(first)-1])
	is.NoErr(err) // which stays live

	raw, err := sql.Open("sqlite", e.path+"?_pragma=query_only(1)")
	is.NoErr(err)
	defer raw.Close()
	var archivedTop int64
	is.NoErr(raw.QueryRow(`SELECT COALESCE(max(id), 0) FROM archived_events`).Scan(&archivedTop))
	second := e.finished(t, 3)
	var reused int
	is.NoErr(raw.QueryRow(`SELECT count(*) FROM events WHERE id <= ? AND run_id IN (?, ?, ?)`,
		archivedTop, second[0], second[1], second[2]).Scan(&reused))
	is.Equal(reused, 0) // new events come after every archived one

	e.clk.Add(48 * time.Hour)
	for range 2 {
		rep, err = e.service(t, 24*time.Hour).RunOnce(ctx)
		is.NoErr(err) // and later passes go on removing
	}
	n, err := engine.Verify(ctx, e.db, func(_, runID string, err error) { t.Errorf("run %s: %v", runID, err) })
	is.NoErr(err)
	is.Equal(n, 1) // the newest run alone stays
}

// A backfill over slots whose runs retention removed since answers those
// runs (replayed) instead of firing the slots again: retention removes a
// run's idempotency keys with it, but the schedule's log still says which
// run each slot fired.
func TestRetention_BackfillDoesNotFireArchivedSlotsAgain(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t)
	by := engine.Caller{Actor: "local"}
	_, err := e.eng.CreateSchedule(ctx, by, "acme", "yearly", engine.ScheduleSpec{Cron: "0 0 1 1 *", Workflow: "wf"})
	is.NoErr(err)
	from, to := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first, err := e.eng.BackfillSchedule(ctx, by, "acme", "yearly", from, to)
	is.NoErr(err)
	is.Equal(len(first), 7) // 2020 to 2026
	for _, b := range first {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := e.eng.Wait(wctx, "acme", b.RunID)
		cancel()
		is.NoErr(err)
	}
	e.clk.Add(48 * time.Hour)
	rep, err := e.service(t, 24*time.Hour).RunOnce(ctx)
	is.NoErr(err)
	is.True(rep.Removed >= 6) // the slots' runs are archived (but the newest)

	again, err := e.eng.BackfillSchedule(ctx, by, "acme", "yearly", from, to)
	is.NoErr(err)
	is.Equal(len(again), len(first))
	for i, b := range again {
		is.True(b.Replayed)               // each slot fired before
		is.Equal(b.RunID, first[i].RunID) // with the run it fired then
	}
}
