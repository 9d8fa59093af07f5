// Package storetest is the conformance suite of engine.Store. Every backend
// runs it in its own tests, against a real database:
//
//	func TestStore_Conformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) engine.Store { return openTestStore(t) })
//	}
//
// It exercises each method's contract as engine/store.go documents it, with
// rows and events built through the engine's own state machines, so that a
// store that passes holds what the engine, the API and verification expect:
// compare-and-set commits, group commits in which a bad change fails alone,
// idempotency keys, definition versions, tenant filters, pagination without
// gaps or repeats, an append-only log, and the reads verification folds.
package storetest

import (
	"io"
	"testing"

	"github.com/orchestrator/orchestrator/engine"
)

// Run runs the suite. open must return a new, empty, migrated store each
// time it is called, and close it at the test's cleanup; the suite may have
// closed it already (a store that is an io.Closer is checked to refuse
// commits once closed), so closing must be idempotent. Subtests run in
// parallel, each on a store of its own.
func Run(t *testing.T, open func(t *testing.T) engine.Store) {
	t.Run("Commit", func(t *testing.T) { t.Parallel(); testCommit(t, open) })
	t.Run("GroupCommit", func(t *testing.T) { t.Parallel(); testGroupCommit(t, open) })
	t.Run("IdempotencyKeys", func(t *testing.T) { t.Parallel(); testIdempotencyKeys(t, open) })
	t.Run("Definitions", func(t *testing.T) { t.Parallel(); testDefinitions(t, open) })
	t.Run("Runs", func(t *testing.T) { t.Parallel(); testRuns(t, open) })
	t.Run("RunEvents", func(t *testing.T) { t.Parallel(); testRunEvents(t, open) })
	t.Run("ListRuns", func(t *testing.T) { t.Parallel(); testListRuns(t, open) })
	t.Run("ListEvents", func(t *testing.T) { t.Parallel(); testListEvents(t, open) })
	t.Run("StreamEvents", func(t *testing.T) { t.Parallel(); testStreamEvents(t, open) })
	t.Run("Audit", func(t *testing.T) { t.Parallel(); testAudit(t, open) })
	t.Run("Schedules", func(t *testing.T) { t.Parallel(); testSchedules(t, open) })
	t.Run("Triggers", func(t *testing.T) { t.Parallel(); testTriggers(t, open) })
	t.Run("PingAndHealth", func(t *testing.T) { t.Parallel(); testPingAndHealth(t, open) })
	t.Run("Retention", func(t *testing.T) { t.Parallel(); testRetention(t, open) })
}

// closer is the store's Close, when it has one.
func closer(s engine.Store) (io.Closer, bool) {
	c, ok := s.(io.Closer)
	return c, ok
}
