package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// RecoverAfter is how long writes must go without a storage failure, and at
// least one succeed, before the store reports its storage available again.
// A nearly full disk lets small writes through and refuses large ones; this
// keeps the state, and its log lines, from flapping with each of them.
const RecoverAfter = 2 * time.Second

// health tracks the outcome of the writer's transactions. It logs once when
// the storage becomes unavailable and once when it is available again, not
// once per failed write. It is safe for concurrent use.
type health struct {
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex // protects the fields below
	down     bool
	since    time.Time // first storage failure of this episode
	lastFail time.Time
	lastOK   time.Time
	reason   string
}

// failed records a write that failed for the storage's sake.
func (h *health) failed(reason string, err error) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		h.down, h.since = true, now
		h.log.Error("storage unavailable: writes fail until it recovers", "reason", reason, "err", err)
	}
	h.lastFail, h.reason = now, reason
}

// succeeded records a write that committed.
func (h *health) succeeded() {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		return
	}
	h.lastOK = now
	h.settle(now)
}

// settle ends an episode once writes have succeeded and none failed for
// RecoverAfter. h.mu must be held.
func (h *health) settle(now time.Time) {
	if h.down && h.lastOK.After(h.lastFail) && now.Sub(h.lastFail) >= RecoverAfter {
		h.log.Info("storage available again", "reason", h.reason, "unavailable_for", h.lastOK.Sub(h.since).Round(time.Millisecond).String())
		h.down, h.since, h.reason = false, time.Time{}, ""
	}
}

func (h *health) get() engine.StorageHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settle(h.now())
	if !h.down {
		return engine.StorageHealth{Writable: true}
	}
	return engine.StorageHealth{Since: h.since, Reason: h.reason}
}

// Health implements engine.Store: it reports whether writes succeed. It changes with their outcome only:
// a store nothing writes to stays as its last write left it, and a store
// whose storage failed reports it available again once a write has
// committed and none has failed for RecoverAfter.
func (db *DB) Health() engine.StorageHealth { return db.health.get() }

// LimitPages caps the database file at n pages (SQLite's max_page_count on
// the write connection; never below the pages in use) and returns the cap
// now in force. Writes that need more pages then fail as on a full disk, with
// engine.ErrStorageUnavailable, until the cap is raised. It bounds a
// database's size, and lets tests fill a real database.
func (db *DB) LimitPages(ctx context.Context, n int64) (int64, error) {
	if n < 1 {
		return 0, fmt.Errorf("limit pages: %d: want at least 1", n)
	}
	var got int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRow(fmt.Sprintf("PRAGMA max_page_count = %d", n)).Scan(&got)
	})
	if err != nil {
		return 0, fmt.Errorf("limit pages: %w", err)
	}
	return got, nil
}
