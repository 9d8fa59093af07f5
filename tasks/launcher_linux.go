package tasks

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// selfExe is the binary to start as the launcher: this process's own, even
// if its file was replaced since it started.
func selfExe() (string, error) { return "/proc/self/exe", nil }

// becomeSubreaper makes the orphaned descendants of this process its
// children rather than init's, so that none escapes killAll.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// liveDescendants returns the pids of this process's descendants that are
// not zombies, read from /proc.
func liveDescendants() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := make(map[int][]int)
	live := make(map[int]bool)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], pid)
		live[pid] = f[0] != "Z" && f[0] != "X"
	}
	var out []int
	queue := children[os.Getpid()]
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if live[pid] {
			out = append(out, pid)
		}
		queue = append(queue, children[pid]...)
	}
	return out
}
