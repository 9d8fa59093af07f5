package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// execServerEnv makes the test binary stand in for a server with an
// environment of the test's choosing: it runs one exec task, the shell
// command this variable holds, and prints the output.
const execServerEnv = "TASKS_TEST_EXEC_SERVER"

func TestMain(m *testing.M) {
	if command := os.Getenv(execServerEnv); command != "" {
		os.Exit(execServer(command))
	}
	os.Exit(m.Run())
}

// execServer runs command as an exec task and prints its output.
func execServer(command string) int {
	x := NewExec(ExecConfig{Enabled: true})
	a := attempt(map[string]any{"command": command, "shell": true, "timeout": "1m"}, nil)
	a.Type = TypeExec
	out, err := x.Run(context.Background(), a)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Stdout.Write(out)
	return 0
}

// startExecServer starts the test binary as a server running command, with
// env added to this process's environment.
func startExecServer(t *testing.T, command string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), execServerEnv+"="+command), env...)
	cmd.Stdout, cmd.Stderr = new(bytes.Buffer), new(bytes.Buffer)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the server: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// readPid waits until path holds a pid and returns it; the process is
// killed when the test ends, should it outlive what the test expects.
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	if !waitFor(t, 10*time.Second, func() bool {
		data, err := os.ReadFile(path)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil && pid > 0
	}) {
		t.Fatalf("no pid in %s", path)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// escapee is a shell command line that starts a process in a session of its
// own (setsid), out of the command's process group, which writes its pid to
// pidFile and sleeps; the line goes on once the pid is written.
func escapee(pidFile string) string {
	return fmt.Sprintf(`setsid sh -c 'echo $$ > "$0"; exec sleep 300' '%[1]s' & while [ ! -s '%[1]s' ]; do sleep 0.01; done; `, pidFile)
}

// execOut decodes an exec task's output.
func execOut(t *testing.T, raw json.RawMessage) execOutput {
	t.Helper()
	var o execOutput
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("output %s: %v", raw, err)
	}
	return o
}

// gone reports whether pid has exited: no such process, or a zombie that
// nobody reaped yet (the container's init may not reap).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func TestExec_Run(t *testing.T) {
	t.Parallel()
	x := NewExec(ExecConfig{Enabled: true})
	run := func(config, input any) (json.RawMessage, error) {
		a := attempt(config, input)
		a.Type = TypeExec
		return x.Run(context.Background(), a)
	}

	t.Run("echo's output is captured", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		raw, err := run(map[string]any{"command": "echo", "args": []string{"hello", "world"}}, nil)
		is.NoErr(err) // exit 0 succeeds
		o := execOut(t, raw)
		is.Equal(o.ExitCode, 0)             // exit code
		is.Equal(o.Stdout, "hello world\n") // stdout
		is.Equal(o.Stderr, "")              // stderr
		is.True(!o.StdoutTruncated)         // all of it
		is.True(o.DurationMS >= 0)          // timed
	})

	t.Run("a nonzero exit is a retryable exit_status error", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		out, err := run(map[string]any{"command": "echo 'disk full' >&2; exit 3", "shell": true}, nil)
		is.Equal(out, nil)                                  // no output
		is.Equal(codeOf(err), "exit_status")                // coded
		is.True(!engine.IsPermanent(err))                   // worth retrying
		is.True(strings.Contains(err.Error(), "status 3"))  // the code is named
		is.True(strings.Contains(err.Error(), "disk full")) // and stderr quoted
	})

	t.Run("args reach the command without a shell", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		raw, err := run(map[string]any{"command": "echo", "args": []string{"$HOME; rm -rf /", "`id`", "*"}}, nil)
		is.NoErr(err)                                                // ran
		is.Equal(execOut(t, raw).Stdout, "$HOME; rm -rf / `id` *\n") // printed literally
	})

	t.Run("shell args are $0 and on", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		raw, err := run(map[string]any{"command": `printf '%s|%s' "$0" "$1"`, "args": []string{"a b", "$c"}, "shell": true}, nil)
		is.NoErr(err)                              // ran
		is.Equal(execOut(t, raw).Stdout, "a b|$c") // as positional parameters, unexpanded
	})

	t.Run("env is added to PATH and HOME only", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		raw, err := run(map[string]any{"command": "env", "env": map[string]string{"GREETING": "hi there"}}, nil)
		is.NoErr(err) // ran
		var names []string
		for line := range strings.Lines(execOut(t, raw).Stdout) {
			name, value, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
			names = append(names, name)
			if name == "GREETING" {
				is.Equal(value, "hi there") // the task's variable
			}
		}
		slices.Sort(names)
		is.Equal(names, []string{"GREETING", "HOME", "PATH"}) // nothing of the server's environment
	})

	t.Run("dir is the working directory", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		dir, err := filepath.EvalSymlinks(t.TempDir())
		is.NoErr(err) // temp dir
		raw, err := run(map[string]any{"command": "pwd", "dir": dir}, nil)
		is.NoErr(err)                              // ran
		is.Equal(execOut(t, raw).Stdout, dir+"\n") // there

		is.NoErr(os.WriteFile(filepath.Join(dir, "hello.sh"), []byte("#!/bin/sh\necho from script\n"), 0o755)) // a script in dir
		raw, err = run(map[string]any{"command": "./hello.sh", "dir": dir}, nil)
		is.NoErr(err)                                     // a relative path is relative to dir
		is.Equal(execOut(t, raw).Stdout, "from script\n") // and ran

		_, err = run(map[string]any{"command": "pwd", "dir": filepath.Join(dir, "missing")}, nil)
		is.True(engine.IsPermanent(err))         // a missing dir will not appear by retrying
		is.Equal(codeOf(err), "invalid_request") // coded
	})

	t.Run("input fields override config fields", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		raw, err := run(map[string]any{"command": "echo", "args": []string{"config"}}, map[string]any{"args": []string{"input"}, "other": 1})
		is.NoErr(err)                               // ran
		is.Equal(execOut(t, raw).Stdout, "input\n") // with the input's args
	})

	t.Run("a timeout kills the whole process group", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
		start := time.Now()
		_, err := run(map[string]any{
			"command": `sleep 60 & echo $! > "$0"; echo waiting; sleep 60`,
			"args":    []string{pidFile}, "shell": true, "timeout": "500ms",
		}, nil)
		elapsed := time.Since(start)
		is.Equal(codeOf(err), "timeout")                  // timed out
		is.True(!engine.IsPermanent(err))                 // worth retrying
		is.True(elapsed < 2500*time.Millisecond)          // Wait did not hang on the grandchild's pipes
		is.True(strings.Contains(err.Error(), "waiting")) // output so far is quoted
		data, err := os.ReadFile(pidFile)
		is.NoErr(err) // the grandchild wrote its pid
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		is.NoErr(err)                                                        // a pid
		is.True(waitFor(t, 5*time.Second, func() bool { return gone(pid) })) // the grandchild died with the group
	})

	t.Run("a command that exits leaves no process behind", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		pidFile := filepath.Join(t.TempDir(), "background.pid")
		start := time.Now()
		raw, err := run(map[string]any{"command": `sleep 60 & echo $! > "$0"; echo started`, "args": []string{pidFile}, "shell": true}, nil)
		is.NoErr(err)                                 // the command itself succeeded
		is.Equal(execOut(t, raw).Stdout, "started\n") // output
		is.True(time.Since(start) < pipeGrace)        // the background sleep holding stdout did not keep Run waiting
		data, err := os.ReadFile(pidFile)
		is.NoErr(err) // pid written
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		is.NoErr(err)                                                        // a pid
		is.True(waitFor(t, 5*time.Second, func() bool { return gone(pid) })) // killed with the group
	})

	t.Run("a cancelled attempt kills the command", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ctx, cancel := context.WithCancel(context.Background())
		a := attempt(map[string]any{"command": "sleep", "args": []string{"60"}}, nil)
		done := make(chan error, 1)
		go func() {
			_, err := x.Run(ctx, a)
			done <- err
		}()
		cancel()
		select {
		case err := <-done:
			is.True(errors.Is(err, context.Canceled)) // the engine sees the cancellation
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})

	t.Run("output is cut at the limit", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		small := NewExec(ExecConfig{Enabled: true, MaxOutputBytes: 1000})
		raw, err := small.Run(context.Background(), attempt(map[string]any{"command": "yes | head -c 200000", "shell": true}, nil))
		is.NoErr(err) // yes ran to the end: its output was drained
		o := execOut(t, raw)
		is.Equal(len(o.Stdout), 1000)    // kept up to the limit
		is.True(o.StdoutTruncated)       // and said so
		is.True(!o.StderrTruncated)      // stderr was short
		is.Equal(o.Stdout[:4], "y\ny\n") // the start is kept
	})

	t.Run("a command that cannot be started fails permanently, saying why", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		dir := t.TempDir()
		is.NoErr(os.WriteFile(filepath.Join(dir, "bad.sh"), []byte("#!/no/such/interpreter\n"), 0o755)) // an interpreter that does not exist
		_, err := run(map[string]any{"command": "./bad.sh", "dir": dir}, nil)
		is.True(engine.IsPermanent(err))                                    // retrying cannot help
		is.Equal(codeOf(err), "command_not_found")                          // coded by errno
		is.True(strings.Contains(err.Error(), "no such file or directory")) // and saying why
	})

	t.Run("a command killed by a signal says which", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := run(map[string]any{"command": "echo bye; kill -TERM $$", "shell": true}, nil)
		is.Equal(codeOf(err), "exit_status")                                  // coded
		is.True(!engine.IsPermanent(err))                                     // worth retrying
		is.True(strings.Contains(err.Error(), "killed by signal terminated")) // the signal is named
		is.True(strings.Contains(err.Error(), "bye"))                         // and the output quoted
	})

	t.Run("a missing command fails permanently", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := run(map[string]any{"command": "no-such-command-4f2a"}, nil)
		is.True(engine.IsPermanent(err))                               // retrying cannot help
		is.Equal(codeOf(err), "command_not_found")                     // coded
		is.True(strings.Contains(err.Error(), "no-such-command-4f2a")) // named

		_, err = run(map[string]any{"command": "/no/such/path"}, nil)
		is.Equal(codeOf(err), "command_not_found") // a path too

		_, err = run(map[string]any{"command": "no-such-command-4f2a", "shell": true}, nil)
		is.True(engine.IsPermanent(err))           // the shell's 127 too
		is.Equal(codeOf(err), "command_not_found") // coded the same

		_, err = run(nil, nil)
		is.Equal(codeOf(err), "invalid_request") // a command is required by run time
		is.True(engine.IsPermanent(err))         // permanently
	})
}

func TestExec_Containment(t *testing.T) {
	t.Parallel()
	x := NewExec(ExecConfig{Enabled: true})
	run := func(config any) (json.RawMessage, error) {
		a := attempt(config, nil)
		a.Type = TypeExec
		return x.Run(context.Background(), a)
	}

	t.Run("a command cannot read the server's environment through its parent", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		secret := fmt.Sprintf("s3cret-%d", time.Now().UnixNano())
		srv := startExecServer(t, `tr '\0' '\n' < /proc/$PPID/environ`, "ORCHESTRATOR_TEST_SECRET="+secret)
		err := srv.Wait()
		is.NoErr(err) // the task ran
		o := execOut(t, srv.Stdout.(*bytes.Buffer).Bytes())
		is.True(strings.Contains(o.Stdout, "PATH=")) // the parent's environment was read
		is.True(!strings.Contains(o.Stdout, secret)) // and holds nothing of the server's
		is.True(!strings.Contains(o.Stdout, execServerEnv))
	})

	t.Run("a timeout kills a process that left the command's session", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		pidFile := filepath.Join(t.TempDir(), "escapee.pid")
		_, err := run(map[string]any{"command": escapee(pidFile) + "sleep 60", "shell": true, "timeout": "1s"})
		is.Equal(codeOf(err), "timeout") // timed out
		pid := readPid(t, pidFile)
		is.True(waitFor(t, 10*time.Second, func() bool { return gone(pid) })) // and the escapee died with the task
	})

	t.Run("a command that exits leaves no process that left its session", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		pidFile := filepath.Join(t.TempDir(), "escapee.pid")
		raw, err := run(map[string]any{"command": escapee(pidFile) + "echo started", "shell": true})
		is.NoErr(err)                                 // the command succeeded
		is.Equal(execOut(t, raw).Stdout, "started\n") // with its output
		pid := readPid(t, pidFile)
		is.True(waitFor(t, 10*time.Second, func() bool { return gone(pid) })) // the escapee is dead
	})

	t.Run("a double fork does not escape either", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		pidFile := filepath.Join(t.TempDir(), "daemon.pid")
		_, err := run(map[string]any{"command": `(setsid sh -c 'echo $$ > "$0"; exec sleep 300' "$0" &); while [ ! -s "$0" ]; do sleep 0.01; done`, "args": []string{pidFile}, "shell": true})
		is.NoErr(err) // the command succeeded
		pid := readPid(t, pidFile)
		is.True(waitFor(t, 10*time.Second, func() bool { return gone(pid) })) // the daemon is dead
	})

	t.Run("the server's death kills the command and what it started", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		pidFile := filepath.Join(t.TempDir(), "escapee.pid")
		srv := startExecServer(t, escapee(pidFile)+"sleep 300")
		pid := readPid(t, pidFile)
		is.NoErr(srv.Process.Kill()) // kill -9 the server mid-task
		srv.Wait()
		is.True(waitFor(t, 10*time.Second, func() bool { return gone(pid) })) // the launcher killed what the command started
	})
}

func TestExec_Disabled(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	x := NewExec(ExecConfig{})
	ps := x.ValidateConfig(json.RawMessage(`{"command":"echo"}`))
	is.Equal(ps, []definition.Problem{{Field: "type", Message: ExecDisabledMessage}}) // one problem on the type
	is.True(strings.Contains(ExecDisabledMessage, "--enable-exec"))                   // saying how to enable it

	_, err := x.Run(context.Background(), attempt(map[string]any{"command": "echo"}, nil))
	is.True(engine.IsPermanent(err))                      // no retry will enable it
	is.Equal(taskError(err).Message, ExecDisabledMessage) // same message
}

func TestExec_ValidateConfig(t *testing.T) {
	t.Parallel()
	x := NewExec(ExecConfig{Enabled: true})
	cases := []struct {
		name   string
		config string
		field  string // "" = valid
		msg    string
	}{
		{"an absent config is valid", ``, "", ""},
		{"a full config is valid", `{"command":"ls","args":["-l"],"env":{"A":"b"},"dir":"/tmp","timeout":"5s","shell":false}`, "", ""},
		{"an unknown field is refused", `{"command":"ls","user":"root"}`, "config.user", "unknown field"},
		{"an empty command is refused", `{"command":""}`, "config.command", "required"},
		{"args must be strings, numbers or booleans", `{"args":["a",{"x":1}]}`, "config.args[1]", "string"},
		{"numbers in args stand for their text", `{"command":"echo","args":["a",1,true]}`, "", ""},
		{"args must be an array", `{"args":"-l"}`, "config.args", "array"},
		{"env values must be strings", `{"env":{"N":1}}`, "config.env.N", "string"},
		{"env names must not hold =", `{"env":{"A=B":"c"}}`, "config.env.A=B", "name"},
		{"shell must be a boolean", `{"shell":"yes"}`, "config.shell", "true or false"},
		{"a bad timeout is refused", `{"timeout":"1 minute"}`, "config.timeout", "duration"},
		{"an empty dir is refused", `{"dir":""}`, "config.dir", "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			ps := x.ValidateConfig(json.RawMessage(c.config))
			if c.field == "" {
				is.Equal(len(ps), 0) // valid
				return
			}
			is.Equal(len(ps), 1)                            // one problem
			is.Equal(ps[0].Field, c.field)                  // naming the field
			is.True(strings.Contains(ps[0].Message, c.msg)) // saying what is wrong
		})
	}
}

// TestExec_AllowedFor: exec tasks are for the tenants whose allow_exec is
// on, and the circuit breaker that wraps the handler keeps saying so.
func TestExec_AllowedFor(t *testing.T) {
	is := is.New(t)
	h := NewExec(ExecConfig{Enabled: true})
	is.Equal(h.AllowedFor("acme", engine.TenantSettings{AllowExec: true}), "") // allowed
	msg := h.AllowedFor("acme", engine.TenantSettings{})
	is.True(strings.Contains(msg, "allow_exec") && strings.Contains(msg, "acme")) // refused, naming the setting and tenant
	wrapped, ok := WithBreaker(TypeExec, h, BreakerConfig{}, metrics.NewSet()).(engine.TenantGate)
	is.True(ok)                                                        // the breaker keeps the gate
	is.Equal(wrapped.AllowedFor("acme", engine.TenantSettings{}), msg) // passing it through
	_, ok = WithBreaker("other", engine.HandlerFunc(nil), BreakerConfig{}, metrics.NewSet()).(engine.TenantGate)
	is.True(!ok) // and gives none to a handler without one
}
