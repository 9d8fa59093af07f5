package cli_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/cli"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// TestCLI_Health runs the probe a container's HEALTHCHECK uses against a
// real server: 0 while it and its database answer, 1 once the database is
// gone or when nothing listens.
func TestCLI_Health(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "health.db"), store.Options{})
	is.NoErr(err) // open store
	e, err := engine.New(engine.Config{Store: db})
	is.NoErr(err)          // engine
	is.NoErr(e.Start(ctx)) // start engine
	srv := httptest.NewServer((&api.Server{Engine: e, Metrics: metrics.NewSet()}).Handler())
	t.Cleanup(func() {
		srv.Close()
		stop, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		e.Stop(stop)
		db.Close()
	})

	is.True(slices.Contains(cli.Commands, "health")) // the binary dispatches it to this package

	code, out, errOut := run(srv.URL, "health")
	is.Equal(code, 0) // healthy
	is.Equal(errOut, "")
	is.True(strings.Contains(out, "server ok, database ok")) // says so

	code, out, _ = run(srv.URL, "health", "-o", "json")
	is.Equal(code, 0)
	var h struct{ Status, Database string }
	is.NoErr(json.Unmarshal([]byte(out), &h)) // -o json prints the answer
	is.Equal(h.Status, "ok")
	is.Equal(h.Database, "ok")

	code, _, _ = run(srv.URL, "health", "extra")
	is.Equal(code, 2) // takes no argument

	is.NoErr(db.Close()) // the database goes away
	code, _, errOut = run(srv.URL, "health")
	is.Equal(code, 1)                                // unhealthy
	is.True(strings.Contains(errOut, "503"))         // the status
	is.True(strings.Contains(errOut, "unreachable")) // and why

	code, _, errOut = run("http://127.0.0.1:1", "health", "--timeout", "2s")
	is.Equal(code, 1) // nothing listens
	is.True(errOut != "")
}
