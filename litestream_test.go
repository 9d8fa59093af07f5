package main

import (
	"bytes"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"
)

// litestreamBinary is the Litestream command named by LITESTREAM or found on
// PATH; the test that needs it is skipped without it (scripts/litestream-check
// builds one and runs that test).
func litestreamBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LITESTREAM"); p != "" {
		return p
	}
	p, err := exec.LookPath("litestream")
	if err != nil {
		t.Skip("litestream is not installed (scripts/litestream-check builds it and runs this test)")
	}
	return p
}

// TestLitestream_ReplicaOfALiveServer runs Litestream beside a server under
// write load: the server answers every start while Litestream replicates,
// a replica restored with Litestream holds every acknowledged run and
// verifies, orchestrator backup works beside it, and orchestrator restore
// refuses the database while Litestream holds it open.
func TestLitestream_ReplicaOfALiveServer(t *testing.T) {
	bin := litestreamBinary(t)
	is := is.New(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "live.db")
	replica := "file://" + filepath.Join(dir, "replica")
	c := startChild(t, dbPath)
	defer c.kill(t)

	var lsLog bytes.Buffer
	ls := exec.Command(bin, "replicate", dbPath, replica)
	ls.Stdout, ls.Stderr = &lsLog, &lsLog
	is.NoErr(ls.Start()) // litestream replicate
	lsDone := make(chan error, 1)
	go func() { lsDone <- ls.Wait() }()
	defer func() {
		ls.Process.Signal(syscall.SIGTERM)
		select {
		case <-lsDone:
		case <-time.After(30 * time.Second):
			ls.Process.Kill()
			<-lsDone
		}
		if t.Failed() {
			t.Logf("litestream:\n%s", lsLog.String())
		}
	}()

	load := startHTTPLoad(t, c, 3) // fails the test on any start not answered 201
	load.waitFor(t, 300)
	load.halt()
	acked := load.ackedNow()

	copyPath := filepath.Join(dir, "copy.db")
	code, out, errOut := runCmd("backup", copyPath, "--database-url", dbPath)
	is.Equal(code, 0) // a backup beside Litestream
	is.Equal(errOut, "")
	is.True(strings.Contains(out, "0 differ"))

	// Litestream ships the WAL on its own schedule: restore its replica
	// until it holds every acknowledged run.
	restored := filepath.Join(dir, "restored.db")
	deadline := time.Now().Add(2 * time.Minute)
	for missing := len(acked); missing > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the replica still misses %d of %d acknowledged runs\n%s", missing, len(acked), lsLog.String())
		}
		time.Sleep(200 * time.Millisecond)
		for _, s := range []string{"", "-wal", "-shm"} {
			os.Remove(restored + s)
		}
		if out, err := exec.Command(bin, "restore", "-o", restored, replica).CombinedOutput(); err != nil {
			t.Logf("litestream restore: %v: %s", err, out)
			continue
		}
		missing = missingRuns(t, restored, acked)
	}
	code, out, _ = runCmd("verify", "--database-url", restored)
	is.Equal(code, 0) // the replica's runs verify
	is.True(strings.Contains(out, "0 differ"))

	c.kill(t)
	code, _, errOut = runCmd("restore", copyPath, "--database-url", dbPath)
	is.Equal(code, 1)                                            // Litestream still holds the database
	is.True(strings.Contains(errOut, "open in another process")) // and restore says so
}

// missingRuns counts the ids that the database at path does not hold.
func missingRuns(t *testing.T, path string, ids []string) int {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT id FROM runs`)
	if err != nil {
		return len(ids)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		have[id] = true
	}
	n := 0
	for _, id := range ids {
		if !have[id] {
			n++
		}
	}
	return n
}
