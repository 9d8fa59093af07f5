//go:build !linux

package tasks

import "os"

// selfExe is the binary to start as the launcher.
func selfExe() (string, error) { return os.Executable() }

// becomeSubreaper does nothing: child subreapers are a Linux feature, so
// elsewhere a process that leaves the command's process group escapes.
func becomeSubreaper() error { return nil }

// liveDescendants finds none: only the command's process group is killed.
func liveDescendants() []int { return nil }
