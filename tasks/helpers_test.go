package tasks

import (
	"errors"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// taskError returns the *engine.TaskError inside err, or nil.
func taskError(err error) *engine.TaskError {
	var te *engine.TaskError
	if errors.As(err, &te) {
		return te
	}
	return nil
}

// codeOf returns the TaskError code of err, or "" when it has none.
func codeOf(err error) string {
	if te := taskError(err); te != nil {
		return te.Code
	}
	return ""
}

// retryAfterOf returns the wait engine.RetryAfter asked for, and whether it did.
func retryAfterOf(t *testing.T, err error) (time.Duration, bool) {
	t.Helper()
	return engine.RetryAfterOf(err)
}

// deferredOf returns the reason and wait engine.Deferred recorded, and whether
// err is a deferral.
func deferredOf(t *testing.T, err error) (string, time.Duration, bool) {
	t.Helper()
	return engine.DeferredOf(err)
}

// waitFor polls cond every few milliseconds until it holds or the deadline
// passes.
func waitFor(t *testing.T, within time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}
