package store_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// tenantRuns runs wfJSON n times for tenant on e (registering it first) and
// returns the run ids.
func tenantRuns(t *testing.T, e *engine.Engine, tenant string, n int) []string {
	t.Helper()
	ctx := context.Background()
	if _, _, err := e.RegisterDefinition(ctx, tenant, []byte(wfJSON)); err != nil {
		t.Fatalf("register: %v", err)
	}
	var ids []string
	for i := 0; i < n; i++ {
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "wf", Input: json.RawMessage(`{"n":1}`), By: engine.By("alice")})
		if err != nil {
			t.Fatalf("start run: %v", err)
		}
		if run, err = e.Wait(ctx, tenant, run.ID); err != nil || run.State != engine.RunCompleted {
			t.Fatalf("wait run: %v %v", run, err)
		}
		ids = append(ids, run.ID)
	}
	return ids
}

func newSigningKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// exported reads every stored checkpoint, as checkpoints export writes them.
func exported(t *testing.T, db *store.DB) []engine.Checkpoint {
	t.Helper()
	var out []engine.Checkpoint
	if err := db.Checkpoints(context.Background(), func(cp *engine.Checkpoint) error {
		out = append(out, *cp)
		return nil
	}); err != nil {
		t.Fatalf("checkpoints: %v", err)
	}
	return out
}

// verifyCheckpoints checks db against cps and returns what differs.
func verifyCheckpoints(t *testing.T, db *store.DB, cps []engine.Checkpoint, trusted ...ed25519.PublicKey) []engine.CheckpointMismatch {
	t.Helper()
	v := engine.NewCheckpointVerifier(db, trusted)
	var out []engine.CheckpointMismatch
	for i := range cps {
		m, err := v.Check(context.Background(), &cps[i])
		if err != nil {
			t.Fatalf("verify checkpoint: %v", err)
		}
		out = append(out, m...)
	}
	return out
}

func TestCheckpointer_SignsEveryTenantsLog(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngine(t, db)
	tenantRuns(t, e, "default", 3)
	tenantRuns(t, e, "acme", 2)
	key := newSigningKey(t)
	cpr, err := engine.NewCheckpointer(engine.CheckpointerConfig{Store: db, Key: key, MaxEvents: 7})
	is.NoErr(err)

	cps, err := cpr.Checkpoint(ctx)
	is.NoErr(err)
	raw := rawDB(t, db.Path())
	last := map[string]engine.Checkpoint{}
	for _, cp := range cps {
		prev, seen := last[cp.TenantID]
		is.Equal(cp.Seq, prev.Seq+1)                                      // numbered 1..n per tenant
		is.Equal(cp.PrevDigest, prev.Digest)                              // chained to the previous one
		is.Equal(cp.FromEventID, prev.HeadEventID)                        // starting where it ended
		is.True(cp.Events-prev.Events <= 7)                               // at most MaxEvents each
		is.NoErr(cp.CheckSignature([]ed25519.PublicKey{cpr.PublicKey()})) // signed by the key
		is.True(seen || cp.Seq == 1)
		last[cp.TenantID] = cp
	}
	for _, tenant := range []string{"default", "acme"} {
		cp := last[tenant]
		is.Equal(cp.Events, int64(count(t, raw, `SELECT count(*) FROM events WHERE tenant_id = ?`, tenant))) // every event counted
		is.Equal(cp.Runs, int64(count(t, raw, `SELECT count(*) FROM runs WHERE tenant_id = ?`, tenant)))     // every run
		is.Equal(cp.HeadEventID, int64(count(t, raw, `SELECT max(id) FROM events WHERE tenant_id = ?`, tenant)))
	}
	is.True(len(cps) > 2) // MaxEvents split the logs

	again, err := cpr.Checkpoint(ctx)
	is.NoErr(err)
	is.Equal(len(again), 0) // a log that did not grow gets no checkpoint

	tenantRuns(t, e, "acme", 1)
	more, err := cpr.Checkpoint(ctx)
	is.NoErr(err)
	is.True(len(more) > 0) // the tenant that grew
	for _, cp := range more {
		is.Equal(cp.TenantID, "acme") // and only it
	}

	out := exported(t, db)
	is.Equal(len(out), len(cps)+len(more)) // the store holds every checkpoint
	for i, cp := range append(cps, more...) {
		is.Equal(out[i].Digest, cp.Digest)         // in the order appended
		is.Equal(len(out[i].Heads), len(cp.Heads)) // with its heads
		is.NoErr(out[i].CheckSignature(nil))       // whole
	}
	is.Equal(verifyCheckpoints(t, db, out, cpr.PublicKey()), []engine.CheckpointMismatch(nil)) // the log matches

	_, err = raw.Exec(`UPDATE checkpoints SET events = events + 1`)
	is.True(err != nil && strings.Contains(err.Error(), "append-only")) // the table refuses changes
}

// rewriteRun rewrites who started a run, as someone who can write the file
// would: the triggers dropped, the event changed, the run's hash chain and
// its row recomputed, the triggers put back. Verify cannot tell.
func rewriteRun(t *testing.T, db *store.DB, raw *sql.DB, runID string) {
	t.Helper()
	ctx := context.Background()
	events, err := runEventsOf(ctx, db, runID)
	if err != nil {
		t.Fatal(err)
	}
	var trigger string
	if err := raw.QueryRow(`SELECT sql FROM sqlite_schema WHERE name = 'events_no_update'`).Scan(&trigger); err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := raw.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`DROP TRIGGER events_no_update`)
	events[0].Actor = "mallory"
	prev := ""
	for i := range events {
		events[i].Hash = events[i].ComputeHash(prev)
		prev = events[i].Hash
		exec(`UPDATE events SET actor = ?, hash = ? WHERE id = ?`, events[i].Actor, events[i].Hash, events[i].ID)
	}
	exec(`UPDATE runs SET last_hash = ? WHERE id = ?`, prev, runID)
	exec(trigger)
}

func TestCheckpointVerifier_NamesARewrittenRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngine(t, db)
	ids := tenantRuns(t, e, "default", 4)
	tenantRuns(t, e, "acme", 2)
	key := newSigningKey(t)
	cpr, err := engine.NewCheckpointer(engine.CheckpointerConfig{Store: db, Key: key, MaxEvents: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cpr.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	saved := exported(t, db) // kept elsewhere
	pub := cpr.PublicKey()
	raw := rawDB(t, db.Path())

	t.Run("a log that grew since the export matches it", func(t *testing.T) {
		is := is.New(t)
		tenantRuns(t, e, "default", 2)
		is.Equal(verifyCheckpoints(t, db, saved, pub), []engine.CheckpointMismatch(nil)) // new events are not differences
	})

	t.Run("a run rewritten with its chain recomputed is named", func(t *testing.T) {
		is := is.New(t)
		target := ids[1]
		rewriteRun(t, db, raw, target)
		var bad []string
		_, err := engine.Verify(ctx, db, func(_, id string, err error) { bad = append(bad, id) })
		is.NoErr(err)
		is.Equal(bad, []string(nil)) // the run's own chain and rows still verify

		m := verifyCheckpoints(t, db, saved, pub)
		is.True(len(m) > 0)          // the checkpoints see it
		is.Equal(m[0].RunID, target) // and the first difference names the run
		is.Equal(m[0].TenantID, "default")
		is.True(strings.Contains(m[0].Problem, "history no longer matches"))
		for _, x := range m[1:] {
			is.True(x.RunID != target) // named once
		}
		is.Equal(len(m), 1) // nothing else differs
	})

	t.Run("a forged or foreign checkpoint is refused", func(t *testing.T) {
		is := is.New(t)
		var acme []engine.Checkpoint // a tenant nothing rewrote
		for _, cp := range saved {
			if cp.TenantID == "acme" {
				acme = append(acme, cp)
			}
		}
		is.True(len(acme) >= 2)
		forged := append([]engine.Checkpoint(nil), acme...)
		forged[0].Events++
		m := verifyCheckpoints(t, db, forged[:1], pub)
		is.Equal(len(m), 1)
		is.True(strings.Contains(m[0].Problem, "digest")) // a changed field breaks the digest

		other := newSigningKey(t)
		m = verifyCheckpoints(t, db, acme[:1], other.Public().(ed25519.PublicKey))
		is.Equal(len(m), 1)
		is.True(strings.Contains(m[0].Problem, "not a trusted key")) // a key the verifier does not trust

		resigned := acme[0]
		resigned.Sign(other)
		m = verifyCheckpoints(t, db, []engine.Checkpoint{resigned})
		is.Equal(len(m), 1)
		is.True(strings.Contains(m[0].Problem, "differs in the database")) // not what the database holds

		m = verifyCheckpoints(t, db, acme[1:2], pub)
		is.True(len(m) == 0) // a file may start after the first checkpoint
	})
}

func TestCheckpointer_StartStop(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngine(t, db)
	tenantRuns(t, e, "default", 1)
	var nilCheckpointer *engine.Checkpointer
	nilCheckpointer.Stop() // safe on nil

	cpr, err := engine.NewCheckpointer(engine.CheckpointerConfig{Store: db, Key: newSigningKey(t), Interval: 10 * time.Millisecond})
	is.NoErr(err)
	cpr.Stop() // safe before Start
	cpr.Start()
	cpr.Start() // and Start twice
	tenantRuns(t, e, "default", 1)
	raw := rawDB(t, db.Path())
	deadline := time.Now().Add(patience)
	for { // the rounds go on by themselves until one has signed every event
		head := count(t, raw, `SELECT COALESCE(max(head_event_id), 0) FROM checkpoints`)
		if head == count(t, raw, `SELECT max(id) FROM events`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of the whole log: head %d", head)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cpr.Stop()
	cpr.Stop() // idempotent
	n := count(t, raw, `SELECT count(*) FROM checkpoints`)
	tenantRuns(t, e, "default", 1)
	cps, err := cpr.Checkpoint(ctx) // on demand after Stop
	is.NoErr(err)
	is.Equal(len(cps), 1)
	is.Equal(count(t, raw, `SELECT count(*) FROM checkpoints`), n+1) // no round ran after Stop but this one

	_, err = engine.NewCheckpointer(engine.CheckpointerConfig{Store: db})
	is.True(err != nil) // a key is required
}

// runEventsOf reads every event of a run of whichever tenant holds it.
func runEventsOf(ctx context.Context, db *store.DB, runID string) ([]engine.Event, error) {
	tenant, err := db.RunTenant(ctx, runID)
	if err != nil {
		return nil, err
	}
	return db.RunEvents(ctx, tenant, runID, 0, 0)
}
