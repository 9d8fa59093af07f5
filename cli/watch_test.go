package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/cli"
)

// syncBuffer is a bytes.Buffer safe for a command writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitOutput waits until the output holds want.
func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output never showed %q:\n%s", want, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCLI_WorkflowsWatch(t *testing.T) {
	t.Parallel()
	url := newServer(t)
	dir := t.TempDir()
	def := filepath.Join(dir, "d.json")
	os.WriteFile(def, []byte(`{"name":"w","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"python","depends_on":["a"]}]}`), 0o600)
	done := filepath.Join(dir, "done.json")
	os.WriteFile(done, []byte(`{"name":"quick","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`), 0o600)
	startRun := func(t *testing.T, name string) string {
		t.Helper()
		code, out, errOut := run(url, "workflows", "start", name, "-o", "json")
		if code != 0 {
			t.Fatalf("start %s: %s", name, errOut)
		}
		var r wire.Run
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	for _, f := range []string{def, done} {
		if code, _, errOut := run(url, "definitions", "register", f); code != 0 {
			t.Fatal(errOut)
		}
	}

	t.Run("a live run: events line by line, ending non-zero when cancelled", func(t *testing.T) {
		is := is.New(t)
		id := startRun(t, "w") // b waits for a python worker
		var out, errOut syncBuffer
		exit := make(chan int, 1)
		go func() {
			exit <- cli.Run(context.Background(), "workflows", []string{"watch", id, "--server", url}, &out, &errOut)
		}()
		waitOutput(t, &out, "tasks done") // the header, with the progress
		code, _, _ := run(url, "workflows", "pause", id)
		is.Equal(code, 0)
		waitOutput(t, &out, "run.paused") // arrives live
		code, _, _ = run(url, "workflows", "cancel", id)
		is.Equal(code, 0)
		select {
		case code := <-exit:
			is.Equal(code, 1) // a cancelled run exits non-zero
		case <-time.After(10 * time.Second):
			t.Fatalf("watch did not end with the run:\n%s", out.String())
		}
		text := out.String()
		is.True(strings.Contains(text, "run.cancelled"))         // the terminal event
		is.True(strings.Contains(text, "ended: cancelled"))      // and the end
		is.True(strings.Contains(text, "[###############.....")) // 1 of 2 tasks done: a half bar, then...
		is.True(!strings.Contains(text, "\033["))                // no terminal codes when stdout is not a terminal
	})

	t.Run("a completed run ends at once with exit 0", func(t *testing.T) {
		is := is.New(t)
		id := startRun(t, "quick")
		code, out, errOut := run(url, "workflows", "watch", id)
		is.Equal(code, 0) // completed
		is.Equal(errOut, "")
		is.True(strings.Contains(out, "ended: completed"))
		is.True(strings.Contains(out, "2/2 tasks done"))
	})

	t.Run("-o json prints each event", func(t *testing.T) {
		is := is.New(t)
		id := startRun(t, "quick")
		code, out, _ := run(url, "workflows", "watch", id, "-o", "json")
		is.Equal(code, 0)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var last map[string]json.RawMessage
		is.NoErr(json.Unmarshal([]byte(lines[len(lines)-1]), &last))
		is.True(last["end"] != nil) // the last line is the end
	})

	t.Run("an unknown run", func(t *testing.T) {
		code, _, errOut := run(url, "workflows", "watch", "nope")
		is.New(t).Equal(code, 1)
		is.New(t).True(strings.Contains(errOut, "404"))
	})
}

func TestCLI_WorkflowsExplain(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	url := newServer(t)
	def := filepath.Join(t.TempDir(), "d.json")
	os.WriteFile(def, []byte(`{"name":"w","tasks":[{"id":"a","type":"python"},{"id":"b","type":"noop","depends_on":["a"]}]}`), 0o600)
	code, _, errOut := run(url, "definitions", "register", def)
	is.Equal(code, 0)
	is.Equal(errOut, "")
	code, out, _ := run(url, "workflows", "start", "w", "-o", "json")
	is.Equal(code, 0)
	var r wire.Run
	is.NoErr(json.Unmarshal([]byte(out), &r))

	code, out, _ = run(url, "workflows", "explain", r.ID)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "TASK"))                 // a table
	is.True(strings.Contains(out, "no_worker"))            // a waits for a python worker
	is.True(strings.Contains(out, "dependencies"))         // b for a
	is.True(strings.Contains(out, "waiting on a (ready)")) // named, with its state
	code, out, _ = run(url, "workflows", "explain", r.ID, "-o", "json")
	is.Equal(code, 0)
	var x wire.Explanation
	is.NoErr(json.Unmarshal([]byte(out), &x)) // -o json prints the answer
	is.Equal(len(x.Waiting), 2)
	code, _, errOut = run(url, "workflows", "explain", "nope")
	is.Equal(code, 1)
	is.True(strings.Contains(errOut, "404"))
}
