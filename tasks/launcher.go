package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// The exec task does not start a command itself: it starts the binary it
// runs in once more, as a launcher (argv[0] launcherArg0), with only the
// command's environment, and the launcher starts the command. So the
// command's parent holds nothing but what the command was given
// (/proc/$PPID/environ is the command's own environment, not the server's),
// and the launcher, a child subreaper on Linux, inherits every process the
// command leaves behind, setsid or double-forked ones included, and kills
// them all when the command exits or the task is stopped.
//
// The launcher's file descriptors 3 and 4 are pipes to the server: it reads
// 3 until EOF, which the server causes by closing its end (timeout,
// cancellation) or by dying, and then kills the command; it writes on 4 one
// JSON launchStatus with the command's pid once started, and one with how it
// ended. Both are close-on-exec in the launcher: the command never sees them.
const (
	launcherArg0      = "orchestrator-exec-launcher"
	launcherControlFD = 3
	launcherStatusFD  = 4
	// killAllWithin bounds how long the launcher keeps killing descendants
	// (a fork bomb may keep forking for a moment) before it gives up.
	killAllWithin = 5 * time.Second
)

// init turns any process started as the launcher into one before main runs.
// It is an init function rather than a call in main so that every binary
// able to construct Exec answers the re-exec, test binaries and programs
// that embed the engine included: one that did not would run its own main
// with a command's arguments.
func init() {
	if len(os.Args) > 0 && os.Args[0] == launcherArg0 {
		// The launcher has nothing to flush, and os.Exit would sleep a
		// second in binaries built with the race detector.
		syscall.Exit(launch(os.Args[1:]))
	}
}

// launchStatus is a message of the launcher to the server.
type launchStatus struct {
	// Pid is the command's pid (and process group), sent once it started.
	Pid int `json:"pid,omitempty"`
	// Done marks the final message, which holds the fields below.
	Done bool `json:"done,omitempty"`
	// ExitCode is the command's exit status; Signal, when not 0, the signal
	// that killed it.
	ExitCode int `json:"exit_code,omitempty"`
	Signal   int `json:"signal,omitempty"`
	// Stopped says the launcher killed the command because the server asked.
	Stopped bool `json:"stopped,omitempty"`
	// StartError is why the command could not be started, Errno its errno.
	StartError string `json:"start_error,omitempty"`
	Errno      int    `json:"errno,omitempty"`
	// Error is a failure of the launcher itself.
	Error string `json:"error,omitempty"`
}

// launch is the launcher's main: args are the command's path and argv.
func launch(args []string) int {
	var st syscall.Stat_t
	if len(args) < 2 || syscall.Fstat(launcherControlFD, &st) != nil || syscall.Fstat(launcherStatusFD, &st) != nil {
		fmt.Fprintln(os.Stderr, launcherArg0+": started without its pipes; only the exec task runs it")
		return 2
	}
	syscall.CloseOnExec(launcherControlFD)
	syscall.CloseOnExec(launcherStatusFD)
	control := os.NewFile(launcherControlFD, "control")
	enc := json.NewEncoder(os.NewFile(launcherStatusFD, "status"))
	report := func(s launchStatus) int {
		s.Done = true
		_ = enc.Encode(s) // the server may be gone; there is no one else to tell
		return 0
	}
	if err := becomeSubreaper(); err != nil {
		return report(launchStatus{Error: "become a child subreaper: " + err.Error()})
	}
	p, err := os.StartProcess(args[0], args[1:], &os.ProcAttr{
		Env:   os.Environ(), // the command's, and all the launcher has
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		var errno syscall.Errno
		errors.As(err, &errno)
		return report(launchStatus{StartError: err.Error(), Errno: int(errno)})
	}
	_ = enc.Encode(launchStatus{Pid: p.Pid})

	// Neither goroutine is waited for: the process exits when launch
	// returns, and a blocked wait4 or read could keep it from exiting.
	exited := make(chan syscall.WaitStatus, 1)
	noChildren := make(chan struct{})
	go reapChildren(p.Pid, exited, noChildren)
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, control) // until EOF: the server closed its end or died
		close(stop)
	}()

	var s launchStatus
	select {
	case ws := <-exited:
		s = statusOf(ws)
	case <-stop:
		killAll(p.Pid, noChildren)
		s = statusOf(<-exited)
		s.Stopped = true
	}
	killAll(p.Pid, noChildren) // whatever the command left behind
	return report(s)
}

// reapChildren waits for every child of the launcher (the command, and the
// orphans that a subreaper inherits), sends the command's status on exited,
// and closes noChildren when no child is left.
func reapChildren(commandPid int, exited chan<- syscall.WaitStatus, noChildren chan<- struct{}) {
	defer close(noChildren)
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
		case err != nil: // ECHILD: no child, and so no descendant, is left
			return
		case pid == commandPid:
			exited <- ws
		}
	}
}

// killAll kills the command's process group and then every descendant of
// the launcher, again and again, until no child is left or killAllWithin
// has passed.
func killAll(pgid int, noChildren <-chan struct{}) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	deadline := time.Now().Add(killAllWithin)
	for {
		for _, pid := range liveDescendants() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-noChildren:
			return
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return
		}
	}
}

// statusOf is how the command ended.
func statusOf(ws syscall.WaitStatus) launchStatus {
	if ws.Signaled() {
		return launchStatus{ExitCode: -1, Signal: int(ws.Signal())}
	}
	return launchStatus{ExitCode: ws.ExitStatus()}
}

// startFailure is a command the launcher could not start.
type startFailure struct {
	msg   string
	errno syscall.Errno
}

func (e *startFailure) Error() string { return e.msg }
func (e *startFailure) Unwrap() error { return e.errno }
