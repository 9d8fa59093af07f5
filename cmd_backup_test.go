package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// backupDef is a short chain the load of these tests starts again and again.
const backupDef = `{"name":"chain","tasks":[{"id":"a","type":"noop","input":{"n":1}},{"id":"b","type":"noop","depends_on":["a"]}]}`

// httpLoad starts runs on a server from a few clients until stopped and
// records every start the server acknowledged.
type httpLoad struct {
	mu    sync.Mutex // protects acked
	acked []string
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startHTTPLoad(t *testing.T, c *child, clients int) *httpLoad {
	t.Helper()
	client := newClient()
	if code, body, err := postJSON(client, c.url("/v1/workflows"), backupDef); err != nil || code >= 300 {
		t.Fatalf("register: %d %s %v", code, body, err)
	}
	l := &httpLoad{stop: make(chan struct{})}
	for g := 0; g < clients; g++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				code, body, err := postJSON(client, c.url("/v1/run"), fmt.Sprintf(`{"workflow":"chain","input":{"g":%d,"i":%d}}`, g, i))
				if err != nil || code != http.StatusCreated {
					t.Errorf("start run: %d %s %v", code, body, err)
					return
				}
				var run struct{ ID string }
				json.Unmarshal(body, &run)
				l.mu.Lock()
				l.acked = append(l.acked, run.ID)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *httpLoad) ackedNow() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...)
}

// waitFor polls until n starts are acknowledged.
func (l *httpLoad) waitFor(t *testing.T, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d runs acknowledged", n), func() bool { return len(l.ackedNow()) >= n })
}

func (l *httpLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

func TestCommand_BackupOfALiveServer(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "live.db")
	c := startChild(t, dbPath)
	defer c.kill(t)
	load := startHTTPLoad(t, c, 3)
	load.waitFor(t, 100)
	before := load.ackedNow()
	copyPath := filepath.Join(dir, "copy.db")
	code, out, errOut := runCmd("backup", copyPath, "--database-url", dbPath)
	after := len(load.ackedNow())
	load.waitFor(t, after+20) // the server kept writing
	load.halt()
	t.Logf("%d runs acknowledged before the backup, %d when it ended\n%s", len(before), after, out)

	is.Equal(code, 0)                                      // the copy was made and passes its checks
	is.Equal(errOut, "")                                   // without complaint
	is.True(strings.Contains(out, "written to "+copyPath)) // says where
	is.True(strings.Contains(out, "integrity       ok"))   // SQLite's check
	is.True(strings.Contains(out, "0 differ"))             // every run verifies
	is.True(strings.Contains(out, "schema version  "+fmt.Sprint(store.LatestSchemaVersion())))

	db, err := store.Open(context.Background(), copyPath, store.Options{})
	is.NoErr(err)
	defer db.Close()
	for _, id := range before {
		_, _, err := loadAnyRun(context.Background(), db, id)
		is.NoErr(err) // a run acknowledged before the backup is in the copy
	}

	code, _, errOut = runCmd("backup", copyPath, "--database-url", dbPath)
	is.Equal(code, 1)                           // an existing file is not overwritten
	is.True(strings.Contains(errOut, "exists")) // and the refusal says why
	code, _, errOut = runCmd("backup", "--database-url", dbPath)
	is.Equal(code, 2) // FILE is required
	is.True(strings.Contains(errOut, "usage: orchestrator backup"))
	code, _, errOut = runCmd("help")
	is.Equal(code, 0)
	is.True(strings.Contains(errOut, "\n  backup [flags] FILE: ")) // the help lists the operations
	is.True(strings.Contains(errOut, "\n  restore [flags] FILE: "))
}

func TestCommand_Restore(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	saved := makeRuns(t, src, 3)
	backupFile := filepath.Join(dir, "backup.db")
	code, out, errOut := runCmd("backup", backupFile, "--database-url", src)
	is.Equal(code, 0) // backup of an idle database
	is.Equal(errOut, "")
	is.True(strings.Contains(out, "runs            3: completed 3"))

	target := filepath.Join(dir, "target.db")
	client := newClient()
	c := startChild(t, target)
	code, body, err := postJSON(client, c.url("/v1/workflows"), backupDef)
	is.NoErr(err)
	is.True(code < 300) // registered on the target
	code, body, err = postJSON(client, c.url("/v1/run"), `{"workflow":"chain"}`)
	is.NoErr(err)
	is.Equal(code, http.StatusCreated) // a run of the target's own
	own := jsonField(t, body, "id")
	waitRunState(t, client, c, own, "completed")

	// While the server has the database open, restore refuses.
	code, out, errOut = runCmd("restore", backupFile, "--database-url", target)
	is.Equal(code, 1)                                            // refused
	is.True(strings.Contains(errOut, "open in another process")) // saying why
	is.True(strings.Contains(errOut, "stop it first"))           // and what to do
	is.True(!strings.Contains(out, "restored"))                  // nothing restored
	is.Equal(getRun(t, client, c, own).State, "completed")       // the server still serves its run
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		is.True(!strings.Contains(e.Name(), "restore-")) // no temporary copy is left behind
	}

	// Once the server is gone (killed: its WAL is left), restore replaces
	// the database and keeps the old one aside.
	c.kill(t)
	lsState := filepath.Join(dir, ".target.db-litestream")
	is.NoErr(os.Mkdir(lsState, 0o700)) // as Litestream leaves it beside a database it replicates
	code, out, errOut = runCmd("restore", backupFile, "--database-url", target)
	is.Equal(code, 0) // restored
	is.Equal(errOut, "")
	is.True(strings.Contains(out, "restored "+backupFile+" to "+target))
	is.True(strings.Contains(out, "kept as "+target+".replaced-"))
	is.True(strings.Contains(out, "0 differ"))
	is.True(strings.Contains(out, lsState+" is Litestream's record of the replaced database")) // the operator is told

	// The restored database serves: the backup's runs are there, the
	// replaced database's are not, and new runs complete.
	c = startChild(t, target)
	defer c.kill(t)
	for _, id := range saved {
		is.Equal(getRun(t, client, c, id).State, "completed") // a run from the backup
	}
	resp, err := client.Get(c.url("/v1/runs/" + own))
	is.NoErr(err)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusNotFound) // the replaced database's run is gone from this one
	code, body, err = postJSON(client, c.url("/v1/run"), `{"workflow":"two"}`)
	is.NoErr(err)
	is.Equal(code, http.StatusCreated) // a new run of a definition from the backup
	waitRunState(t, client, c, jsonField(t, body, "id"), "completed")
}

// waitUntil polls cond until it holds, failing the test after a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// loadAnyRun loads a run of whichever tenant holds it.
func loadAnyRun(ctx context.Context, db *store.DB, runID string) (*engine.Run, []engine.Task, error) {
	tenant, err := db.RunTenant(ctx, runID)
	if err != nil {
		return nil, nil, err
	}
	return db.LoadRun(ctx, tenant, runID)
}
