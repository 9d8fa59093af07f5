package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// TypeExec is the task type of Exec.
const TypeExec = "exec"

// Exec task defaults.
const (
	// DefaultExecTimeout bounds a command whose task sets no "timeout".
	DefaultExecTimeout = 60 * time.Second
	// DefaultMaxOutputBytes caps what is kept of stdout and of stderr, each,
	// when ExecConfig does not say.
	DefaultMaxOutputBytes = 64 << 10
	// pipeGrace is how long output is still read after the command's process
	// group is gone, for a process that left the group but kept the pipes.
	pipeGrace = time.Second
	// maxErrorTail is how much of the output an error message quotes.
	maxErrorTail = 1024
)

// ExecDisabledMessage is the problem and the error of an exec task on a
// server that does not run commands.
const ExecDisabledMessage = "exec tasks are disabled on this server; start it with --enable-exec (ENABLE_EXEC=true) to run commands on the host"

// defaultPath is the PATH of commands when the server has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ExecConfig configures Exec. Running commands on the host is off unless
// Enabled: a definition is data that API clients send, and exec turns it into
// code running with the server's privileges.
type ExecConfig struct {
	// Enabled lets exec tasks run. When false, definitions with exec tasks
	// are refused and attempts fail permanently, both with
	// ExecDisabledMessage.
	Enabled bool
	// DefaultTimeout bounds a command whose task sets no "timeout"; default
	// DefaultExecTimeout. The attempt's own timeout still applies.
	DefaultTimeout time.Duration
	// MaxOutputBytes caps what is kept of stdout and of stderr, each; the
	// rest is read and dropped. Default DefaultMaxOutputBytes.
	MaxOutputBytes int
}

// Exec runs "exec" tasks: one command on the host per attempt. Its config and
// input fields are "command" (a path, or a name looked up in PATH; required
// by run time), "args" (strings, passed as they are: no shell sees them),
// "env" (an object of strings added to an environment of only PATH and HOME,
// not the server's), "dir" (the working directory), "timeout" (a Go
// duration) and "shell" (true runs /bin/sh -c command, with args as $0, $1,
// ...). The output is {"exit_code", "stdout", "stderr", "stdout_truncated",
// "stderr_truncated", "duration_ms"}.
//
// The command runs in its own process group, which is killed (SIGKILL) when
// the timeout expires, when the attempt's context is done, and when the
// command exits, so no grandchild outlives its task. A nonzero exit is a
// retryable failure, code "exit_status", whose message quotes the end of
// stderr; a timeout is code "timeout"; a command that does not exist
// ("command_not_found", also a shell's exit status 127), cannot be started
// ("start_failed") or a bad request ("invalid_request") fail the task at once.
//
// Exec is safe for concurrent use.
type Exec struct {
	enabled   bool
	timeout   time.Duration
	maxOutput int
	path      string // PATH of the minimal environment
	home      string // HOME of the minimal environment
}

var (
	_ engine.Handler         = (*Exec)(nil)
	_ engine.ConfigValidator = (*Exec)(nil)
)

// execFields are the fields of an exec task's config and input.
var execFields = map[string]bool{
	"command": true, "args": true, "env": true, "dir": true, "timeout": true, "shell": true,
}

// NewExec returns the "exec" handler. Commands get the server's PATH and
// HOME, read here, and nothing else of its environment.
func NewExec(cfg ExecConfig) *Exec {
	e := &Exec{
		enabled:   cfg.Enabled,
		timeout:   cfg.DefaultTimeout,
		maxOutput: cfg.MaxOutputBytes,
		path:      os.Getenv("PATH"),
		home:      os.Getenv("HOME"),
	}
	if e.timeout <= 0 {
		e.timeout = DefaultExecTimeout
	}
	if e.maxOutput <= 0 {
		e.maxOutput = DefaultMaxOutputBytes
	}
	if e.path == "" {
		e.path = defaultPath
	}
	if e.home == "" {
		e.home = "/"
	}
	return e
}

// ValidateConfig checks an exec task's config: field types and unknown
// fields. When exec is disabled it returns ExecDisabledMessage alone. An
// absent config is valid: the command may come from the input at run time.
func (e *Exec) ValidateConfig(config json.RawMessage) []engine.Problem {
	if !e.enabled {
		return []engine.Problem{{Field: "type", Message: ExecDisabledMessage}}
	}
	var ps problems
	f := mergeFields(config, nil, execFields, &ps)
	parseExecRequest(f, false, &ps)
	return ps
}

// execRequest is an exec task's request, checked.
type execRequest struct {
	command string
	args    []string
	env     map[string]string
	dir     string
	timeout time.Duration // 0: the default
	shell   bool
}

func parseExecRequest(f fields, runtime bool, ps *problems) *execRequest {
	r := &execRequest{}
	var ok bool
	r.command, ok = f.str("command", ps)
	if ok && r.command == "" && (runtime || f.present("command")) {
		ps.add(fieldName(f, "command"), "required: the command to run, a path or a name looked up in PATH")
	}
	r.args = f.strings("args", ps)
	r.env = f.stringMap("env", checkEnvName, ps)
	r.dir, ok = f.str("dir", ps)
	if ok && r.dir == "" && f.present("dir") {
		ps.add(f["dir"].field, "must not be empty")
	}
	r.timeout = f.duration("timeout", ps)
	r.shell = f.boolean("shell", ps)
	return r
}

// fieldName is where a field came from, or its config name when absent.
func fieldName(f fields, name string) string {
	if v, ok := f[name]; ok {
		return v.field
	}
	return "config." + name
}

// checkEnvName says what is wrong with an environment variable name, or "".
func checkEnvName(name string) string {
	if name == "" || strings.ContainsAny(name, "=\x00") {
		return fmt.Sprintf("invalid environment variable name %q", truncate(name))
	}
	return ""
}

// execOutput is the output of an exec task.
type execOutput struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	DurationMS      int64  `json:"duration_ms"`
}

// Run runs the attempt's command and waits for it.
func (e *Exec) Run(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
	if !e.enabled {
		return nil, engine.Permanent(&engine.TaskError{Code: "exec_disabled", Message: ExecDisabledMessage})
	}
	var ps problems
	f := mergeFields(a.Config, a.Input, execFields, &ps)
	r := parseExecRequest(f, true, &ps)
	if len(ps) > 0 {
		return nil, engine.Permanent(&engine.TaskError{Code: "invalid_request", Message: ps.message()})
	}
	env := e.environ(r.env)
	path, argv := "/bin/sh", append([]string{"sh", "-c", r.command}, r.args...)
	if !r.shell {
		var err error
		if path, err = lookPath(r.command, r.dir, envValue(env, "PATH")); err != nil {
			return nil, engine.Permanent(&engine.TaskError{Code: "command_not_found", Message: err.Error()})
		}
		argv = append([]string{r.command}, r.args...)
	}
	if r.dir != "" {
		if st, err := os.Stat(r.dir); err != nil || !st.IsDir() {
			return nil, engine.Permanent(&engine.TaskError{Code: "invalid_request", Message: fmt.Sprintf("dir %q is not a directory", r.dir)})
		}
	}
	timeout := r.timeout
	if timeout == 0 {
		timeout = e.timeout
	}
	return e.run(ctx, r, path, argv, env, timeout)
}

// run starts the command in its own process group and collects its output.
func (e *Exec) run(ctx context.Context, r *execRequest, path string, argv, env []string, timeout time.Duration) (json.RawMessage, error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return nil, fmt.Errorf("exec: %w", err)
	}
	defer errR.Close()

	cmd := exec.CommandContext(tctx, path)
	cmd.Args, cmd.Env, cmd.Dir = argv, env, r.dir
	cmd.Stdout, cmd.Stderr = outW, errW // files, not writers: Wait does not wait on copying
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = pipeGrace // should killing the group fail, Wait kills the process itself
	start := time.Now()
	err = cmd.Start()
	outW.Close() // the child holds its own copies
	errW.Close()
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("exec %s: %w", r.command, ctx.Err())
		}
		if tctx.Err() != nil {
			return nil, &engine.TaskError{Code: "timeout", Message: fmt.Sprintf("%s: no time left to start it", r.command)}
		}
		return nil, startError(r.command, err)
	}
	stdout, stderr := capture{limit: e.maxOutput}, capture{limit: e.maxOutput}
	var wg sync.WaitGroup
	wg.Go(func() { stdout.readFrom(outR) })
	wg.Go(func() { stderr.readFrom(errR) })
	waitErr := cmd.Wait()
	// Whatever the command left running in its group dies with it; a process
	// that left the group and kept the pipes gets pipeGrace to close them.
	_ = killGroup(cmd.Process.Pid)
	deadline := time.Now().Add(pipeGrace)
	_ = outR.SetReadDeadline(deadline)
	_ = errR.SetReadDeadline(deadline)
	wg.Wait()
	elapsed := time.Since(start)

	out := execOutput{
		Stdout: string(stdout.buf), Stderr: string(stderr.buf),
		StdoutTruncated: stdout.truncated, StderrTruncated: stderr.truncated,
		DurationMS: elapsed.Milliseconds(),
	}
	switch {
	case waitErr != nil && errors.Is(ctx.Err(), context.Canceled):
		return nil, fmt.Errorf("exec %s: %w", r.command, ctx.Err())
	case waitErr != nil && tctx.Err() != nil:
		return nil, &engine.TaskError{Code: "timeout", Message: fmt.Sprintf(
			"%s did not finish within %s; its process group was killed%s", r.command, timeout, quoteOutput(&out))}
	case waitErr != nil:
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) {
			return nil, fmt.Errorf("exec %s: %w", r.command, waitErr)
		}
		out.ExitCode = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return nil, &engine.TaskError{Code: "exit_status", Message: fmt.Sprintf(
				"%s was killed by signal %s%s", r.command, ws.Signal(), quoteOutput(&out))}
		}
		te := &engine.TaskError{Code: "exit_status", Message: fmt.Sprintf(
			"%s exited with status %d%s", r.command, out.ExitCode, quoteOutput(&out))}
		if r.shell && out.ExitCode == 127 {
			te.Code = "command_not_found"
			return nil, engine.Permanent(te)
		}
		return nil, te
	}
	data, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode output: %w", err)
	}
	return data, nil
}

// quoteOutput is the end of the command's stderr, or of its stdout when
// stderr is empty, for an error message.
func quoteOutput(o *execOutput) string {
	if s := tail(o.Stderr, maxErrorTail); s != "" {
		return "; stderr: " + s
	}
	if s := tail(o.Stdout, maxErrorTail); s != "" {
		return "; stdout: " + s
	}
	return ""
}

// startError classifies a failure to start the command: permanent, unless
// the host was short of processes or memory.
func startError(command string, err error) error {
	te := &engine.TaskError{Code: "start_failed", Message: fmt.Sprintf("start %s: %v", command, err)}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOMEM) {
		return te
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		te.Code = "command_not_found"
	}
	return engine.Permanent(te)
}

// killGroup kills the process group pgid; a group already gone is no error.
func killGroup(pgid int) error {
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// environ is the command's environment: PATH and HOME, then the task's
// variables, which may replace them; sorted, so runs are reproducible.
func (e *Exec) environ(extra map[string]string) []string {
	vars := map[string]string{"PATH": e.path, "HOME": e.home}
	for k, v := range extra {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// envValue returns the value of name in env.
func envValue(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// lookPath resolves command like a shell would, but with the command's own
// PATH rather than the server's, skipping relative PATH entries. A command
// with a slash is taken as a path, relative to dir when dir is set.
func lookPath(command, dir, pathEnv string) (string, error) {
	if strings.Contains(command, "/") {
		p := command
		if dir != "" && !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("command %q: %w", command, unwrapPathError(err))
		}
		return command, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, command)
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in PATH %s", command, pathEnv)
}

// unwrapPathError drops the repeated path of an *exec.Error or *os.PathError.
func unwrapPathError(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// capture keeps the first limit bytes read and notes whether there were more.
type capture struct {
	limit     int
	buf       []byte
	truncated bool
}

// readFrom reads r to its end (or an error, such as its read deadline),
// keeping what fits: the rest is drained so the writer never blocks on a
// full pipe.
func (c *capture) readFrom(r io.Reader) {
	b := make([]byte, 32<<10)
	for {
		n, err := r.Read(b)
		if n > 0 {
			take := min(n, c.limit-len(c.buf))
			c.buf = append(c.buf, b[:take]...)
			if take < n {
				c.truncated = true
			}
		}
		if err != nil {
			return
		}
	}
}
