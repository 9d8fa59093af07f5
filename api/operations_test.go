package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// opsEnv is the API with backups and checkpoints over a real engine and
// SQLite file.
type opsEnv struct {
	srv *api.Server
	url string
	db  *store.DB
	eng *engine.Engine
	dir string // the backup directory
}

func newOpsEnv(t *testing.T, checkpoints bool) *opsEnv {
	t.Helper()
	ctx := context.Background()
	set := metrics.NewSet()
	tmp := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(tmp, "ops.db"), store.Options{Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	eng, err := engine.New(engine.Config{Store: db, Metrics: set})
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
	s := &api.Server{Engine: eng, Metrics: set, Backups: db, BackupDir: filepath.Join(tmp, "backups"), Checkpoints: db}
	if checkpoints {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		if s.Checkpointer, err = engine.NewCheckpointer(engine.CheckpointerConfig{Store: db, Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &opsEnv{srv: s, url: ts.URL, db: db, eng: eng, dir: s.BackupDir}
}

func (e *opsEnv) do(t *testing.T, method, path string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(res.Body)
	return res, buf.Bytes()
}

func (e *opsEnv) startRuns(t *testing.T, n int) {
	t.Helper()
	if _, _, err := e.eng.RegisterDefinition(context.Background(), "acme",
		[]byte(`{"name":"wf","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`)); err != nil {
		t.Fatal(err)
	}
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
	}
}

// POST /api/v1/admin/backup copies the live database while runs keep
// being written, into the backup directory under a name the server picks,
// and the copy verifies.
func TestOperations_BackupUnderWriteLoad(t *testing.T) {
	is := is.New(t)
	e := newOpsEnv(t, false)
	e.startRuns(t, 20)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // keep writing while the backup is taken
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.eng.StartRun(context.Background(), engine.StartRequest{TenantID: "acme", Workflow: "wf"}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	res, body := e.do(t, "POST", "/api/v1/admin/backup")
	close(stop)
	wg.Wait()
	is.Equal(res.StatusCode, http.StatusCreated) // the copy is taken
	var rep wire.BackupReport
	is.NoErr(json.Unmarshal(body, &rep))
	is.True(rep.Check.OK)                                          // and passes its checks
	is.Equal(filepath.Dir(rep.Path), e.dir)                        // in the backup directory
	is.True(rep.Summary.Events > 0 && rep.Check.RunsChecked >= 20) // holding the runs
	fi, err := os.Stat(rep.Path)
	is.NoErr(err)
	is.Equal(fi.Size(), rep.Summary.Bytes) // the file it describes

	release := api.HoldBackup(e.srv)
	res, body = e.do(t, "POST", "/api/v1/admin/backup")
	release()
	is.Equal(res.StatusCode, http.StatusConflict)                      // one backup at a time
	is.True(strings.Contains(string(body), wire.CodeBackupInProgress)) // saying why
	res, _ = e.do(t, "POST", "/api/v1/admin/backup?path=/etc/passwd")
	is.Equal(res.StatusCode, http.StatusBadRequest) // the caller cannot name a path
}

// Checkpoints over HTTP: signed on demand, listed per tenant, exported
// with their heads in the form the offline verifier reads; off when the
// server signs none.
func TestOperations_Checkpoints(t *testing.T) {
	is := is.New(t)
	e := newOpsEnv(t, true)
	e.startRuns(t, 5)
	res, body := e.do(t, "POST", "/api/v1/admin/checkpoints")
	is.Equal(res.StatusCode, http.StatusCreated) // a round is signed
	var made wire.Checkpoints
	is.NoErr(json.Unmarshal(body, &made))
	is.Equal(len(made.Checkpoints), 1)                      // for the one tenant with events
	is.Equal(made.Checkpoints[0].TenantID, "acme")          // acme
	is.True(made.Checkpoints[0].Heads == nil)               // without its heads
	is.Equal(made.PublicKey, made.Checkpoints[0].PublicKey) // signed by the server's key

	res, body = e.do(t, "GET", "/api/v1/admin/checkpoints")
	is.Equal(res.StatusCode, http.StatusOK)
	var listed wire.Checkpoints
	is.NoErr(json.Unmarshal(body, &listed))
	is.Equal(listed.Checkpoints[0].Digest, made.Checkpoints[0].Digest) // the latest is listed

	res, body = e.do(t, "GET", "/api/v1/admin/checkpoints/export")
	is.Equal(res.StatusCode, http.StatusOK)
	is.Equal(res.Header.Get("Content-Type"), "application/x-ndjson")
	key, err := engine.ParsePublicKey(made.PublicKey)
	is.NoErr(err)
	v := engine.NewCheckpointVerifier(e.db, []ed25519.PublicKey{key})
	sc := bufio.NewScanner(bytes.NewReader(body))
	n := 0
	for sc.Scan() {
		var cp engine.Checkpoint
		is.NoErr(json.Unmarshal(sc.Bytes(), &cp))
		is.Equal(len(cp.Heads), 5) // with the head of every run
		bad, err := v.Check(context.Background(), &cp)
		is.NoErr(err)
		is.Equal(len(bad), 0) // and it verifies against the database
		n++
	}
	is.Equal(n, 1) // every checkpoint, once

	off := newOpsEnv(t, false)
	for _, m := range []string{"GET", "POST"} {
		res, body := off.do(t, m, "/api/v1/admin/checkpoints")
		is.Equal(res.StatusCode, http.StatusConflict)                    // no checkpointer
		is.True(strings.Contains(string(body), wire.CodeCheckpointsOff)) // says so
	}
}
