package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// archive run removes finished runs past RETENTION from a database file
// into archives beside it; archive verify checks each against its
// tombstone; verify still passes; a server answers 410 for a removed run.
func TestCommand_ArchiveRunAndVerify(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "live.db")
	ids := makeRuns(t, db, 5) // the newest (holding the newest event) stays live
	code, out, _ := runCmd("archive", "run", "--database-url", db)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "0 runs removed")) // without a retention nothing goes

	code, _, errOut := runCmd("tenants", "update", "default", "--retention-days", "-1", "--database-url", db)
	is.Equal(errOut, "")
	is.Equal(code, 0)
	code, out, _ = runCmd("archive", "run", "--database-url", db, "--retention", "1ns")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "0 runs removed")) // the tenant keeps its runs forever, whatever RETENTION says
	code, _, _ = runCmd("tenants", "update", "default", "--retention-days", "0", "--database-url", db)
	is.Equal(code, 0) // back to the server's retention

	code, out, errOut = runCmd("archive", "run", "--database-url", db, "--retention", "1ns")
	is.Equal(errOut, "")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "4 runs removed into 1 archives under "+filepath.Join(dir, "archives")))
	files, err := filepath.Glob(filepath.Join(dir, "archives", "default", "*.ndjson.gz"))
	is.NoErr(err)
	is.Equal(len(files), 1) // one file for the tenant and day

	code, out, errOut = runCmd("archive", "verify", files[0], "--database-url", db)
	is.Equal(errOut, "")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "4 runs, chains and folds checked; 4 match their tombstones")) // every run matched
	code, out, _ = runCmd("archive", "verify", files[0], "--offline")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "4 runs, chains and folds checked\n")) // alone, without the database

	code, out, errOut = runCmd("verify", "--database-url", db)
	is.Equal(code, 0) // what stays verifies
	_ = out
	_ = errOut

	code, _, errOut = runCmd("archive", "verify", filepath.Join(dir, "nope.gz"), "--database-url", db)
	is.Equal(code, 1) // a missing archive fails
	is.True(strings.Contains(errOut, "nope.gz"))

	c := startChild(t, db)
	defer c.kill(t)
	resp, err := newClient().Get(c.url("/v1/runs/" + ids[0]))
	is.NoErr(err)
	var body strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	body.Write(buf[:n])
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusGone)                        // a removed run is gone, not unknown
	is.True(strings.Contains(body.String(), `"code":"run_archived"`)) // saying so
	is.True(strings.Contains(body.String(), filepath.Base(files[0]))) // and where it went
	_, err = os.Stat(files[0])
	is.NoErr(err)
}
