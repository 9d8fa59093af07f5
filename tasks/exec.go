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
	"github.com/orchestrator/orchestrator/engine/definition"
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
	// pipeGrace is how long output and the launcher's status are still read
	// after the launcher is gone, for a process that escaped it (it was
	// killed, or this is not Linux) but kept the pipes.
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
// The command is started by a launcher (see launcher.go): the server's binary
// run again with only the command's environment, so that the command's
// parent holds none of the server's. When the timeout expires, when the
// attempt's context is done, when the command exits and when the server
// dies, the launcher kills (SIGKILL) the command's process group and, on
// Linux, where it is a child subreaper, every other process the command
// started, those that left the group or session included, so none outlives
// its task. It is not a sandbox: the command runs as the server's user, with
// its file system and network, and can read what that user may read,
// /proc/<server pid>/environ among it. A nonzero exit is a
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
func (e *Exec) ValidateConfig(config json.RawMessage) []definition.Problem {
	if !e.enabled {
		return []definition.Problem{{Field: "type", Message: ExecDisabledMessage}}
	}
	var ps problems
	f := mergeFields(config, nil, execFields, &ps)
	parseExecRequest(f, false, &ps)
	return ps
}

// AllowedFor implements engine.TenantGate: exec tasks are for the tenants
// whose allow_exec setting an admin turned on.
func (e *Exec) AllowedFor(tenantID string, s engine.TenantSettings) string {
	if s.AllowExec {
		return ""
	}
	return fmt.Sprintf("exec tasks are not allowed for tenant %s: its setting allow_exec is off "+
		"(an admin turns it on: orchestrator tenants update %s --allow-exec, or PATCH /api/v1/tenants/%s)", tenantID, tenantID, tenantID)
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

// run starts the command through the launcher and collects its output.
func (e *Exec) run(ctx context.Context, r *execRequest, path string, argv, env []string, timeout time.Duration) (json.RawMessage, error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var p pipes
	defer p.close()
	outR, outW, err := p.open()
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	errR, errW, err := p.open()
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	controlR, controlW, err := p.open()
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	statusR, statusW, err := p.open()
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	exe, err := selfExe()
	if err != nil {
		return nil, fmt.Errorf("exec: find the launcher: %w", err)
	}

	cmd := exec.CommandContext(tctx, exe)
	cmd.Args = append([]string{launcherArg0, path}, argv...)
	cmd.Env, cmd.Dir = env, r.dir
	cmd.Stdout, cmd.Stderr = outW, errW // files, not writers: Wait does not wait on copying
	cmd.ExtraFiles = []*os.File{controlR, statusW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Closing the control pipe asks the launcher to kill the command and
	// everything it started; should it not exit, Wait kills it.
	cmd.Cancel = func() error { return controlW.Close() }
	cmd.WaitDelay = launcherGrace
	start := time.Now()
	err = cmd.Start()
	for _, f := range []*os.File{outW, errW, controlR, statusW} {
		f.Close() // the launcher holds its own copies
	}
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
	_ = statusR.SetReadDeadline(time.Now().Add(pipeGrace))
	st, pid := readLaunchStatus(statusR)
	if !st.Done && pid != 0 {
		// The launcher died before its command: kill what is left of it.
		_ = killGroup(pid)
	}
	// Every process the command started is dead by now; one that held the
	// pipes and escaped the launcher (it was killed) gets pipeGrace.
	deadline := time.Now().Add(pipeGrace)
	_ = outR.SetReadDeadline(deadline)
	_ = errR.SetReadDeadline(deadline)
	wg.Wait()
	elapsed := time.Since(start)

	out := execOutput{
		ExitCode: st.ExitCode,
		Stdout:   string(stdout.buf), Stderr: string(stderr.buf),
		StdoutTruncated: stdout.truncated, StderrTruncated: stderr.truncated,
		DurationMS: elapsed.Milliseconds(),
	}
	stopped := st.Stopped || !st.Done && tctx.Err() != nil
	switch {
	case stopped && errors.Is(ctx.Err(), context.Canceled):
		return nil, fmt.Errorf("exec %s: %w", r.command, ctx.Err())
	case stopped:
		return nil, &engine.TaskError{Code: "timeout", Message: fmt.Sprintf(
			"%s did not finish within %s; it and every process it started were killed%s", r.command, timeout, quoteOutput(&out))}
	case !st.Done:
		return nil, fmt.Errorf("exec %s: the launcher ended without saying how the command did: %v", r.command, waitErr)
	case st.Error != "":
		return nil, fmt.Errorf("exec %s: launcher: %s", r.command, st.Error)
	case st.StartError != "":
		return nil, startError(r.command, &startFailure{msg: st.StartError, errno: syscall.Errno(st.Errno)})
	case st.Signal != 0:
		return nil, &engine.TaskError{Code: "exit_status", Message: fmt.Sprintf(
			"%s was killed by signal %s%s", r.command, syscall.Signal(st.Signal), quoteOutput(&out))}
	case st.ExitCode != 0:
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

// launcherGrace is how long the launcher may take to kill what the command
// started and exit, once asked, before it is killed itself.
const launcherGrace = 5 * time.Second

// pipes are the pipes of one command, closed together.
type pipes []*os.File

// open returns a new pipe, kept for close.
func (p *pipes) open() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	*p = append(*p, r, w)
	return r, w, nil
}

// close closes every pipe; closing one twice is harmless.
func (p pipes) close() {
	for _, f := range p {
		f.Close()
	}
}

// readLaunchStatus reads the launcher's messages: the final one (Done false
// when the launcher died before sending it), and the command's pid if the
// launcher sent it.
func readLaunchStatus(r io.Reader) (final launchStatus, pid int) {
	dec := json.NewDecoder(io.LimitReader(r, 64<<10))
	for {
		var s launchStatus
		if dec.Decode(&s) != nil {
			return final, pid
		}
		if s.Pid != 0 {
			pid = s.Pid
		}
		if s.Done {
			final = s
		}
	}
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
