package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
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
		{"METRICS_PUBLIC", "yes"},
		{"AUTH", "open"},
		{"AUTH", "Required"},
		{"CHECKPOINT_INTERVAL", "hourly"},
		{"ADAPTIVE", "yes"},
		{"ADAPTIVE_MIN", "one"},
		{"ADAPTIVE_TOLERANCE", "50%"},
		{"ADAPTIVE_MAX_WAIT", "10"},
		{"OVERLOAD_HOLD", "2"},
		{"OVERLOAD_ACTIVE_RUNS", "many"},
		{"OVERLOAD_COMMIT_LATENCY", "5"},
	} {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			is := is.New(t)
			t.Setenv(tc.env, tc.value)
			stderr := serveRefused(t)
			is.True(strings.Contains(stderr, tc.env))       // the message names the variable
			is.True(strings.Contains(stderr, tc.value))     // and its value
			is.True(!strings.Contains(stderr, "listening")) // nothing was served
		})
	}

	for _, tc := range []struct {
		name string
		env  [][2]string
		why  string
	}{
		{"a negative checkpoint interval is refused", [][2]string{{"CHECKPOINT_INTERVAL", "-1m"}}, "checkpoint-interval -1m0s: want"},
		{"adaptive limits out of order are refused", [][2]string{{"ADAPTIVE_MIN", "50"}, {"ADAPTIVE_MAX", "10"}}, "adaptive min limit 50 is over the max limit 10"},
		{"an overload limit of 0 is refused, by name", [][2]string{{"OVERLOAD_READY_TASKS", "0"}}, "overload-ready-tasks (OVERLOAD_READY_TASKS) must not be 0"},
		{"each overload limit is named", [][2]string{{"OVERLOAD_COMMIT_LATENCY", "0s"}}, "overload-commit-latency (OVERLOAD_COMMIT_LATENCY) must not be 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range tc.env {
				t.Setenv(kv[0], kv[1])
			}
			is.New(t).True(strings.Contains(serveRefused(t), tc.why)) // saying why
		})
	}

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

// TestConfig_BesideDatabase: the archive directory, the backup directory
// and the checkpoint key are each their own setting when it is set, else a
// name of their own beside the database.
func TestConfig_BesideDatabase(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	c := &config{databasePath: filepath.Join(dir, "live.db")}
	is.Equal(archiveDir(c), filepath.Join(dir, "archives"))              // archives/ beside the database
	is.Equal(backupDir(c), filepath.Join(dir, "backups"))                // backups/ beside it
	is.Equal(checkpointKeyPath(c), filepath.Join(dir, "checkpoint.key")) // and the key beside it

	c.archiveDir, c.backupDir, c.checkpointKey = "/a/arch", "rel/backups", "/k/key.pem"
	is.Equal(archiveDir(c), "/a/arch")           // ARCHIVE_DIR as given
	is.Equal(backupDir(c), "rel/backups")        // BACKUP_DIR as given, relative too
	is.Equal(checkpointKeyPath(c), "/k/key.pem") // CHECKPOINT_KEY_FILE as given

	bare := &config{databasePath: "orchestrator.db"}
	is.Equal(archiveDir(bare), "archives") // a database in the working directory: archives/ there too
}

// TestConfig_PolicyFile: a policy file that is missing or does not compile
// stops the server at start, naming the file (and the line).
func TestConfig_PolicyFile(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.rego")
	is.NoErr(os.WriteFile(bad, []byte("package orchestrator\n\nallow if {\n"), 0o644))
	for _, c := range []struct {
		file, want string
		code       int
	}{
		{filepath.Join(dir, "none.rego"), "none.rego", 2},
		{bad, "bad.rego:", 1},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"serve", "--host", "127.0.0.1", "--port", "0", "--policy-file", c.file,
			"--database-url", filepath.Join(dir, "p.db")}, io.Discard, &stderr, nil)
		is.Equal(code, c.code)                                   // the server does not start
		is.True(strings.Contains(stderr.String(), c.want))       // naming the file
		is.True(!strings.Contains(stderr.String(), "listening")) // nothing was served
	}
}

// serveLog runs the server with args until it listens and returns its log
// lines up to then.
func serveLog(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		code := run(ctx, append([]string{"serve", "--port", "0", "--log-format", "json"}, args...), io.Discard, pw, nil)
		pw.Close()
		exit <- code
	}()
	var lines []map[string]any
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		lines = append(lines, m)
		if m["msg"] == "listening" {
			break
		}
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if code := <-exit; code != 0 {
		t.Fatalf("server exited %d; log: %v", code, lines)
	}
	return lines
}

// TestServe_LogsAccessControl: the server says its mode at start, and warns
// when it listens beyond loopback in AUTH=local before any key exists.
func TestServe_LogsAccessControl(t *testing.T) {
	is := is.New(t)
	db := filepath.Join(t.TempDir(), "mode.db")
	find := func(lines []map[string]any, msg string) map[string]any {
		for _, l := range lines {
			if l["msg"] == msg || strings.HasPrefix(l["msg"].(string), msg) {
				return l
			}
		}
		return nil
	}
	lines := serveLog(t, "--host", "127.0.0.1", "--database-url", db)
	mode := find(lines, "access control")
	is.True(mode != nil)                                                    // the mode is logged
	is.Equal(mode["auth"], "local")                                         // local by default
	is.True(find(lines, "AUTH=local and listening beyond loopback") == nil) // no warning on loopback

	lines = serveLog(t, "--host", "0.0.0.0", "--database-url", db)
	w := find(lines, "AUTH=local and listening beyond loopback")
	is.True(w != nil) // beyond loopback with no key: warned
	is.Equal(w["level"], "WARN")

	lines = serveLog(t, "--host", "0.0.0.0", "--database-url", db, "--auth", "required")
	is.Equal(find(lines, "access control")["auth"], "required")             // the mode as set
	is.True(find(lines, "AUTH=local and listening beyond loopback") == nil) // and no warning

	code, _, _ := runCmd("keys", "create", "--role", "admin", "--name", "ops", "--database-url", db)
	is.Equal(code, 0)
	lines = serveLog(t, "--host", "0.0.0.0", "--database-url", db)
	is.True(find(lines, "AUTH=local and listening beyond loopback") == nil) // once a key exists, no warning
}

// serveRefused runs serve with the environment as the test set it, checks
// that the server does not start (exit code 2) and returns its stderr.
func serveRefused(t *testing.T) string {
	t.Helper()
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--host", "127.0.0.1", "--port", "0",
		"--database-url", filepath.Join(t.TempDir(), "config.db")}, io.Discard, &stderr, nil)
	is.New(t).Equal(code, 2) // the server does not start
	return stderr.String()
}
