package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// rewriteRun rewrites who started a run as someone who can write the
// database file would: the append-only trigger dropped, the event changed,
// the run's hash chain and its row recomputed, the trigger put back, so
// that verify finds nothing wrong.
func rewriteRun(t *testing.T, dbPath, runID string) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	events, err := runEventsOf(ctx, db, runID)
	db.Close()
	if err != nil || len(events) == 0 {
		t.Fatalf("events of %s: %v", runID, err)
	}
	raw, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := raw.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var trigger string
	if err := raw.QueryRow(`SELECT sql FROM sqlite_schema WHERE name = 'events_no_update'`).Scan(&trigger); err != nil {
		t.Fatal(err)
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

func TestCommand_CheckpointsCatchARewrite(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "c.db")
	ids := makeRuns(t, db, 4)
	keyFile := filepath.Join(dir, "checkpoint.key")

	code, _, errOut := runCmd("checkpoints", "pubkey", "--database-url", db)
	is.Equal(code, 1) // no key yet
	is.True(strings.Contains(errOut, keyFile))

	code, out, errOut := runCmd("checkpoints", "create", "--database-url", db)
	is.Equal(code, 0) // signed
	is.Equal(errOut, "")
	is.True(strings.Contains(out, "created checkpoint key "+keyFile))
	is.True(strings.Contains(out, "tenant default checkpoint 1: up to event "))
	fi, err := os.Stat(keyFile)
	is.NoErr(err)
	is.Equal(fi.Mode().Perm(), os.FileMode(0o600)) // only its owner reads the key

	code, pub, _ := runCmd("checkpoints", "pubkey", "--database-url", db)
	is.Equal(code, 0)
	pub = strings.TrimSpace(pub)
	is.True(strings.Contains(out, "public key "+pub)) // the key create printed

	exported := filepath.Join(dir, "checkpoints.jsonl")
	code, out, _ = runCmd("checkpoints", "export", exported, "--database-url", db)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "exported 1 checkpoints to "+exported))

	code, out, _ = runCmd("checkpoints", "verify", exported, "--pubkey", pub, "--database-url", db)
	is.Equal(code, 0) // the database matches what was signed
	is.True(strings.Contains(out, "checked 1 checkpoints of 1 tenants (4 run heads): 0 differences"))

	makeRuns(t, db, 1) // the log grows after the export
	rewriteRun(t, db, ids[2])
	code, out, _ = runCmd("verify", "--database-url", db)
	is.Equal(code, 0) // the rewritten run's own chain and rows verify
	is.True(strings.Contains(out, "0 differ"))

	code, out, _ = runCmd("checkpoints", "verify", exported, "--pubkey", pub, "--database-url", db)
	is.Equal(code, 1) // the checkpoints do not
	is.True(strings.Contains(out, "MISMATCH run "+ids[2]+" (tenant default checkpoint 1): history no longer matches"))
	is.True(strings.Contains(out, "the first run whose history no longer matches: "+ids[2]))
	is.Equal(strings.Count(out, "MISMATCH"), 1) // only that run

	code, out, _ = runCmd("checkpoints", "verify", exported, "--database-url", db)
	is.Equal(code, 1)
	is.True(strings.Contains(out, "pass --pubkey to check who signed")) // without a trusted key it says what it did not check

	code, out, _ = runCmd("checkpoints", "verify", exported, "--pubkey", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "--database-url", db)
	is.Equal(code, 1)
	is.True(strings.Contains(out, "not a trusted key")) // another key's checkpoints are refused

	code, _, errOut = runCmd("checkpoints", "verify", exported, "--pubkey", "nonsense", "--database-url", db)
	is.Equal(code, 2) // a bad flag
	is.True(strings.Contains(errOut, "pubkey"))

	code, _, errOut = runCmd("checkpoints", "frob", "--database-url", db)
	is.Equal(code, 2)
	is.True(strings.Contains(errOut, "usage: orchestrator checkpoints"))

	is.NoErr(os.Chmod(keyFile, 0o644))
	code, _, errOut = runCmd("checkpoints", "pubkey", "--database-url", db)
	is.Equal(code, 1) // a key others can read is refused
	is.True(strings.Contains(errOut, "chmod 600"))
}

func TestServe_SignsCheckpointsPeriodically(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "s.db")
	c := startChild(t, dbPath, "CHECKPOINT_INTERVAL=20ms")
	client := newClient()
	code, _, err := postJSON(client, c.url("/v1/workflows"), backupDef)
	is.NoErr(err)
	is.True(code < 300)
	var last string
	for i := 0; i < 3; i++ {
		code, body, err := postJSON(client, c.url("/v1/run"), `{"workflow":"chain"}`)
		is.NoErr(err)
		is.Equal(code, 201)
		last = jsonField(t, body, "id")
		waitRunState(t, client, c, last, "completed")
	}
	raw, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro&_pragma=busy_timeout(5000)")
	is.NoErr(err)
	defer raw.Close()
	// The rounds go on by themselves until one has signed the whole log.
	waitUntil(t, "a checkpoint of the whole log", func() bool {
		var head, max int64
		raw.QueryRow(`SELECT COALESCE(max(head_event_id), 0) FROM checkpoints WHERE tenant_id = 'default'`).Scan(&head)
		raw.QueryRow(`SELECT max(id) FROM events`).Scan(&max)
		return head > 0 && head == max
	})
	c.kill(t)

	fi, err := os.Stat(filepath.Join(dir, "checkpoint.key"))
	is.NoErr(err)                                  // the key was created beside the database
	is.Equal(fi.Mode().Perm(), os.FileMode(0o600)) // for its owner only
	code, pub, _ := runCmd("checkpoints", "pubkey", "--database-url", dbPath)
	is.Equal(code, 0)
	is.True(strings.Contains(c.logs.String(), `"public_key":"`+strings.TrimSpace(pub)+`"`)) // and its public key logged

	exported := filepath.Join(dir, "c.jsonl")
	code, _, _ = runCmd("checkpoints", "export", exported, "--database-url", dbPath)
	is.Equal(code, 0)
	code, out, _ := runCmd("checkpoints", "verify", exported, "--pubkey", strings.TrimSpace(pub), "--database-url", dbPath)
	is.Equal(code, 0) // what the server signed verifies
	is.True(strings.Contains(out, " 0 differences"))
}

// runEventsOf reads every event of a run of whichever tenant holds it.
func runEventsOf(ctx context.Context, db *store.DB, runID string) ([]engine.Event, error) {
	tenant, err := db.RunTenant(ctx, runID)
	if err != nil {
		return nil, err
	}
	return db.RunEvents(ctx, tenant, runID, 0, 0)
}
