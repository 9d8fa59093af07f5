package engine

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DefaultCheckpointMaxEvents is how many events of a tenant one checkpoint
// covers at most: it bounds the heads one checkpoint carries and the write
// that appends it. A tenant further behind gets several checkpoints in a
// round.
const DefaultCheckpointMaxEvents = 10_000

// CheckpointLog is what verifying and exporting checkpoints read. Event ids
// grow with every commit and events never change, so a range of ids up to
// an id already seen reads the same whenever it is read.
type CheckpointLog interface {
	// LogSlice reads a tenant's events with afterID < id <= headID.
	LogSlice(ctx context.Context, tenantID string, afterID, headID int64) (*LogSlice, error)

	// LogCount counts a tenant's events with an id up to headID, and its
	// runs with an event up to headID.
	LogCount(ctx context.Context, tenantID string, headID int64) (events, runs int64, err error)

	// Checkpoints calls fn for every stored checkpoint, with its heads, in
	// the order they were appended, and stops at fn's first error.
	Checkpoints(ctx context.Context, fn func(*Checkpoint) error) error

	// GetCheckpoint returns a tenant's stored checkpoint seq without its
	// heads, or ErrNotFound.
	GetCheckpoint(ctx context.Context, tenantID string, seq int64) (*Checkpoint, error)
}

// CheckpointStore is what a Checkpointer reads and appends.
type CheckpointStore interface {
	// LogTenants calls fn for every tenant with events, by id.
	LogTenants(ctx context.Context, fn func(tenantID string) error) error

	// LastCheckpoint returns a tenant's latest checkpoint without its
	// heads, or ErrNotFound.
	LastCheckpoint(ctx context.Context, tenantID string) (*Checkpoint, error)

	// LogHead returns the id of the tenant's maxEvents-th event after
	// afterID, or of its last one when fewer follow; 0 when none does.
	LogHead(ctx context.Context, tenantID string, afterID int64, maxEvents int) (int64, error)

	// LogSlice is CheckpointLog's.
	LogSlice(ctx context.Context, tenantID string, afterID, headID int64) (*LogSlice, error)

	// AppendCheckpoint stores cp, with its heads, as its tenant's next
	// checkpoint: ErrConflict when the tenant's last stored checkpoint is
	// not cp.Seq-1.
	AppendCheckpoint(ctx context.Context, cp *Checkpoint) error
}

// LogSlice is a range of one tenant's events.
type LogSlice struct {
	Events  int64     // events in the range
	NewRuns int64     // runs whose first event is in the range
	Heads   []RunHead // by run id: every run with events in the range, its last one
}

// CheckpointerConfig configures a Checkpointer.
type CheckpointerConfig struct {
	Store CheckpointStore
	Key   ed25519.PrivateKey
	// Interval is the time between rounds of checkpoints, the first at
	// Start; 0 signs only when Checkpoint is called.
	Interval  time.Duration
	MaxEvents int // events per checkpoint; default DefaultCheckpointMaxEvents
	Logger    *slog.Logger
	NowFunc   func() time.Time // default time.Now
}

// Checkpointer signs the head of every tenant's log, periodically between
// Start and Stop and whenever Checkpoint is called. It is safe for
// concurrent use; one round runs at a time.
type Checkpointer struct {
	store CheckpointStore
	key   ed25519.PrivateKey
	every time.Duration
	max   int
	log   *slog.Logger
	now   func() time.Time

	round sync.Mutex // one round at a time

	mu      sync.Mutex // protects the fields below
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewCheckpointer checks cfg and returns a Checkpointer; call Start for the
// periodic rounds.
func NewCheckpointer(cfg CheckpointerConfig) (*Checkpointer, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("checkpointer config: store is required")
	case len(cfg.Key) != ed25519.PrivateKeySize:
		return nil, errors.New("checkpointer config: key must be an Ed25519 private key")
	case cfg.Interval < 0 || cfg.MaxEvents < 0:
		return nil, errors.New("checkpointer config: interval and max events must not be negative")
	}
	if cfg.MaxEvents == 0 {
		cfg.MaxEvents = DefaultCheckpointMaxEvents
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	return &Checkpointer{store: cfg.Store, key: cfg.Key, every: cfg.Interval, max: cfg.MaxEvents,
		log: cfg.Logger, now: cfg.NowFunc}, nil
}

// PublicKey is the key that verifies this Checkpointer's signatures.
func (c *Checkpointer) PublicKey() ed25519.PublicKey { return c.key.Public().(ed25519.PublicKey) }

// Start begins the periodic rounds, the first at once, unless Interval is 0.
// Calling it again does nothing.
func (c *Checkpointer) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.every <= 0 {
		return
	}
	c.started = true
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.loop(ctx)
	}()
}

// Stop ends the periodic rounds and waits for one in progress to end (its
// write is cancelled). It is idempotent, and safe before Start and on a nil
// Checkpointer.
func (c *Checkpointer) Stop() {
	if c == nil {
		return
	}
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
}

func (c *Checkpointer) loop(ctx context.Context) {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		c.runOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runOnce signs a round and logs what it did.
func (c *Checkpointer) runOnce(ctx context.Context) {
	cps, err := c.Checkpoint(ctx)
	if err != nil && ctx.Err() == nil {
		c.log.Error("checkpoint", logErr, err)
	}
	for i := range cps {
		c.log.Info("checkpoint signed", logTenant, cps[i].TenantID, "seq", cps[i].Seq,
			"head_event_id", cps[i].HeadEventID, "events", cps[i].Events, "runs", cps[i].Runs)
	}
}

// Checkpoint signs and appends a checkpoint for every tenant whose log grew
// since its last one (several when it grew by more than MaxEvents) and
// returns them. A tenant another process checkpointed meanwhile is left to
// it. An error stops the round; what was appended before stays.
func (c *Checkpointer) Checkpoint(ctx context.Context) ([]Checkpoint, error) {
	c.round.Lock()
	defer c.round.Unlock()
	var out []Checkpoint
	err := c.store.LogTenants(ctx, func(tenantID string) error {
		cps, err := c.tenant(ctx, tenantID)
		out = append(out, cps...)
		if errors.Is(err, ErrConflict) {
			c.log.Warn("checkpoint appended elsewhere meanwhile", logTenant, tenantID)
			return nil
		}
		return err
	})
	return out, err
}

// tenant signs the tenant's log from its last checkpoint to its head.
func (c *Checkpointer) tenant(ctx context.Context, tenantID string) ([]Checkpoint, error) {
	prev, err := c.store.LastCheckpoint(ctx, tenantID)
	if errors.Is(err, ErrNotFound) {
		prev, err = &Checkpoint{TenantID: tenantID}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint tenant %s: %w", tenantID, err)
	}
	var out []Checkpoint
	for {
		head, err := c.store.LogHead(ctx, tenantID, prev.HeadEventID, c.max)
		if err != nil || head == 0 {
			return out, err
		}
		slice, err := c.store.LogSlice(ctx, tenantID, prev.HeadEventID, head)
		if err != nil {
			return out, err
		}
		cp := Checkpoint{TenantID: tenantID, Seq: prev.Seq + 1, At: c.now(), FromEventID: prev.HeadEventID,
			HeadEventID: head, Events: prev.Events + slice.Events, Runs: prev.Runs + slice.NewRuns,
			Heads: slice.Heads, PrevDigest: prev.Digest}
		cp.Sign(c.key)
		if err := c.store.AppendCheckpoint(ctx, &cp); err != nil {
			return out, fmt.Errorf("checkpoint tenant %s: %w", tenantID, err)
		}
		out = append(out, cp)
		prev = &cp
	}
}

// Latest returns every tenant's last checkpoint, without its heads, by
// tenant id; tenants with events but no checkpoint yet are left out.
func (c *Checkpointer) Latest(ctx context.Context) ([]Checkpoint, error) {
	var out []Checkpoint
	err := c.store.LogTenants(ctx, func(tenantID string) error {
		cp, err := c.store.LastCheckpoint(ctx, tenantID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("last checkpoint of %s: %w", tenantID, err)
		}
		cp.Heads = nil
		out = append(out, *cp)
		return nil
	})
	return out, err
}
