package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestConfig_RefusesBadEnvironment: a numeric, duration or boolean setting
// from the environment that does not parse stops the binary at start with
// the variable named, as a bad flag does, instead of falling back to its
// default; the flag of the same setting wins over it.
func TestConfig_RefusesBadEnvironment(t *testing.T) {
	for _, tc := range []struct{ env, value string }{
		{"MAX_BODY_BYTES", "1MB"},
		{"WORKERS", "four"},
		{"SHUTDOWN_GRACE", "30"},
		{"BREAKER_OPEN_FOR", "soon"},
		{"READ_TIMEOUT", "10 s"},
		{"IDLE_TIMEOUT", "forever"},
		{"MAX_CONNECTIONS", "1e3"},
		{"EXTERNAL_TYPES", "yes"},
		{"ENABLE_EXEC", "on"},
		{"MAX_RUN_BYTES", "64MB"},
		{"MAX_ABANDONED", "3.5"},
		{"METRICS_BREAKER_TARGETS", "yes"},
		{"CHECKPOINT_INTERVAL", "hourly"},
	} {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			is := is.New(t)
			t.Setenv(tc.env, tc.value)
			var stderr bytes.Buffer
			code := run(context.Background(), []string{"serve", "--host", "127.0.0.1", "--port", "0",
				"--database-url", filepath.Join(t.TempDir(), "config.db")}, io.Discard, &stderr, nil)
			is.Equal(code, 2)                                        // the server does not start
			is.True(strings.Contains(stderr.String(), tc.env))       // the message names the variable
			is.True(strings.Contains(stderr.String(), tc.value))     // and its value
			is.True(!strings.Contains(stderr.String(), "listening")) // nothing was served
		})
	}

	t.Run("a negative checkpoint interval is refused", func(t *testing.T) {
		is := is.New(t)
		t.Setenv("CHECKPOINT_INTERVAL", "-1m")
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"serve", "--host", "127.0.0.1", "--port", "0",
			"--database-url", filepath.Join(t.TempDir(), "config.db")}, io.Discard, &stderr, nil)
		is.Equal(code, 2)                                                             // the server does not start
		is.True(strings.Contains(stderr.String(), "checkpoint-interval -1m0s: want")) // saying why
	})

	t.Run("a flag wins over a bad environment value", func(t *testing.T) {
		t.Setenv("MAX_BODY_BYTES", "1MB")
		serveInProcess(t, "--max-body-bytes", "1048576") // listens, and exits 0 at cleanup
	})

	t.Run("the run command reads ENABLE_EXEC the same way", func(t *testing.T) {
		is := is.New(t)
		t.Setenv("ENABLE_EXEC", "yes")
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"run", filepath.Join(t.TempDir(), "none.json")}, io.Discard, &stderr, nil)
		is.Equal(code, 2)                                         // refused before reading the file
		is.True(strings.Contains(stderr.String(), "ENABLE_EXEC")) // naming the variable
	})
}

// TestConfig_MaxConnectionsDefault: without MAX_CONNECTIONS the cap leaves
// files for the database and tasks under a low open-file limit.
func TestConfig_MaxConnectionsDefault(t *testing.T) {
	is := is.New(t)
	is.Equal(maxConnectionsFor(1<<20), defaultMaxConnections) // a high limit: the default
	is.Equal(maxConnectionsFor(256), 256-spareFiles)          // a low one: what it leaves spare
	is.Equal(maxConnectionsFor(64), 16)                       // never fewer than 16
}
