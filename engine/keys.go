package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// Defaults of KeysConfig.
const (
	// DefaultKeyCacheTTL is how long a key and its tenant, once read, are
	// trusted without reading them again. It bounds how long a revocation
	// or suspension made by another process takes to hold here.
	DefaultKeyCacheTTL = time.Second
	// MaxKeyCacheTTL is the longest cache time accepted.
	MaxKeyCacheTTL = 5 * time.Second
	// DefaultKeyFlushInterval is how often the last-use times of keys are
	// written, in one write for all keys used since.
	DefaultKeyFlushInterval = 10 * time.Second
	// keyFlushTimeout bounds the last write when Keys stops.
	keyFlushTimeout = 5 * time.Second
)

// KeysConfig configures NewKeys.
type KeysConfig struct {
	Store AccessStore
	// CacheTTL is how long a key read from the store is used without
	// reading it again: 0 is DefaultKeyCacheTTL, a negative value reads the
	// store on every call. At most MaxKeyCacheTTL.
	CacheTTL time.Duration
	// FlushInterval is how often Start's loop writes last-use times; 0 is
	// DefaultKeyFlushInterval.
	FlushInterval time.Duration
	NowFunc       func() time.Time // default time.Now
	Logger        *slog.Logger     // default none
}

// Validate returns what is wrong with c, or nil.
func (c *KeysConfig) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("keys: no store")
	case c.CacheTTL > MaxKeyCacheTTL:
		return fmt.Errorf("keys: cache time %s: at most %s, so that a revocation holds soon", c.CacheTTL, MaxKeyCacheTTL)
	case c.FlushInterval < 0:
		return fmt.Errorf("keys: flush interval %s: must not be negative", c.FlushInterval)
	}
	return nil
}

// Keys authenticates API keys. It caches what it reads for a short time
// (revoking a key through an Admin that holds it takes effect here at once)
// and keeps the last-use time of each key in memory, written in one batch
// per FlushInterval rather than once per request. It is safe for concurrent
// use; Start runs the flush loop, Stop writes what is left.
type Keys struct {
	store   AccessStore
	ttl     time.Duration
	every   time.Duration
	now     func() time.Time
	log     *slog.Logger
	cache   bool
	flushMu sync.Mutex // one flush at a time, so times are written in order

	mu      sync.Mutex // protects the following fields
	keys    map[string]cachedKey
	tenants map[string]cachedTenant
	gen     uint64               // bumped by Forget*: a read begun before it is not cached
	used    map[string]time.Time // key id -> last use not yet written

	runMu   sync.Mutex // protects the following fields
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	stopped bool
}

type cachedKey struct {
	key     *APIKey
	p       *Principal
	expires time.Time
}

type cachedTenant struct {
	t       *Tenant
	expires time.Time
}

// NewKeys returns an authenticator over cfg.Store.
func NewKeys(cfg KeysConfig) (*Keys, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	k := &Keys{store: cfg.Store, ttl: cfg.CacheTTL, every: cfg.FlushInterval, now: cfg.NowFunc, log: cfg.Logger,
		keys: map[string]cachedKey{}, tenants: map[string]cachedTenant{}, used: map[string]time.Time{}}
	if k.ttl == 0 {
		k.ttl = DefaultKeyCacheTTL
	}
	k.cache = k.ttl > 0
	if k.every == 0 {
		k.every = DefaultKeyFlushInterval
	}
	if k.now == nil {
		k.now = time.Now
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	return k, nil
}

// Authenticate returns the principal a bearer token names. Errors, each
// wrapping ErrUnauthenticated unless said: ErrMalformedKey, ErrInvalidKey
// (no such key, or a wrong secret), ErrKeyRevoked, ErrKeyExpired;
// ErrTenantSuspended (wrapping ErrForbidden) when the key's tenant is
// suspended; a storage error otherwise. Revoked, expired and suspended are
// told only to a caller who has the secret.
func (k *Keys) Authenticate(ctx context.Context, token string) (*Principal, error) {
	id, secret, err := ParseAPIKey(token)
	if err != nil {
		return nil, err
	}
	now := k.now()
	c, err := k.key(ctx, id, now)
	if errors.Is(err, ErrNotFound) {
		SecretMatches(secret, "") // the same work as for a known id
		return nil, ErrInvalidKey
	}
	if err != nil {
		return nil, err
	}
	if !SecretMatches(secret, c.key.SecretHash) {
		return nil, ErrInvalidKey
	}
	switch {
	case !c.key.RevokedAt.IsZero():
		return nil, ErrKeyRevoked
	case !c.key.ExpiresAt.IsZero() && !now.Before(c.key.ExpiresAt):
		return nil, ErrKeyExpired
	}
	if c.key.TenantID != "" {
		if _, err := k.CheckTenant(ctx, c.key.TenantID); err != nil {
			return nil, err
		}
	}
	k.mu.Lock()
	k.used[id] = now
	k.mu.Unlock()
	return c.p, nil
}

// key returns a key from the cache or the store.
func (k *Keys) key(ctx context.Context, id string, now time.Time) (cachedKey, error) {
	k.mu.Lock()
	c, ok := k.keys[id]
	gen := k.gen
	k.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c, nil
	}
	key, err := k.store.GetKey(ctx, id)
	if err != nil {
		return cachedKey{}, err
	}
	c = cachedKey{key: key, p: key.Principal(), expires: now.Add(k.ttl)}
	if k.cache {
		k.mu.Lock()
		if k.gen == gen {
			k.keys[id] = c
		}
		k.mu.Unlock()
	}
	return c, nil
}

// Tenant returns a registered tenant, from the cache or the store, or an
// error wrapping ErrTenantNotFound.
func (k *Keys) Tenant(ctx context.Context, id string) (*Tenant, error) {
	now := k.now()
	k.mu.Lock()
	c, ok := k.tenants[id]
	gen := k.gen
	k.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.t, nil
	}
	t, err := k.store.GetTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	if k.cache {
		k.mu.Lock()
		if k.gen == gen {
			k.tenants[id] = cachedTenant{t: t, expires: now.Add(k.ttl)}
		}
		k.mu.Unlock()
	}
	return t, nil
}

// CheckTenant returns a tenant whose calls may be served: an error wrapping
// ErrTenantNotFound when it is not registered, ErrTenantSuspended when it is
// suspended.
func (k *Keys) CheckTenant(ctx context.Context, id string) (*Tenant, error) {
	t, err := k.Tenant(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.State == TenantSuspended {
		return nil, fmt.Errorf("tenant %s: %w", id, ErrTenantSuspended)
	}
	return t, nil
}

// Forget drops what is cached of a key, so that its next use reads the store.
func (k *Keys) Forget(id string) {
	k.mu.Lock()
	delete(k.keys, id)
	k.gen++
	k.mu.Unlock()
}

// ForgetTenant drops what is cached of a tenant.
func (k *Keys) ForgetTenant(id string) {
	k.mu.Lock()
	delete(k.tenants, id)
	k.gen++
	k.mu.Unlock()
}

// Flush writes the last-use times gathered since the last flush, in one
// write. On failure they are kept for the next flush.
func (k *Keys) Flush(ctx context.Context) error {
	k.flushMu.Lock()
	defer k.flushMu.Unlock()
	k.mu.Lock()
	batch := k.used
	if len(batch) == 0 {
		k.mu.Unlock()
		return nil
	}
	k.used = make(map[string]time.Time, len(batch))
	k.mu.Unlock()
	if err := k.store.TouchKeys(ctx, batch); err != nil {
		k.mu.Lock()
		for id, at := range batch {
			if cur, ok := k.used[id]; !ok || at.After(cur) {
				k.used[id] = at
			}
		}
		k.mu.Unlock()
		return fmt.Errorf("record key use: %w", err)
	}
	return nil
}

// Pending returns the last-use times not yet written.
func (k *Keys) Pending() map[string]time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.used)
}

// runOnce is one turn of the loop: write last-use times, drop stale cache
// entries.
func (k *Keys) runOnce(ctx context.Context) {
	if err := k.Flush(ctx); err != nil {
		k.log.Warn("record key use", logErr, err)
	}
	now := k.now()
	k.mu.Lock()
	maps.DeleteFunc(k.keys, func(_ string, c cachedKey) bool { return !now.Before(c.expires) })
	maps.DeleteFunc(k.tenants, func(_ string, c cachedTenant) bool { return !now.Before(c.expires) })
	k.mu.Unlock()
}

// Start runs the loop that writes last-use times every FlushInterval. It is
// safe to call twice; after Stop it does nothing.
func (k *Keys) Start(ctx context.Context) {
	k.runMu.Lock()
	defer k.runMu.Unlock()
	if k.started || k.stopped {
		return
	}
	k.started = true
	ctx, k.cancel = context.WithCancel(ctx)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		t := time.NewTicker(k.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				k.runOnce(ctx)
			}
		}
	}()
}

// Stop ends the loop and writes the last-use times still in memory. It is
// idempotent and safe before Start.
func (k *Keys) Stop() error {
	k.runMu.Lock()
	if k.stopped {
		k.runMu.Unlock()
		return nil
	}
	k.stopped = true
	if k.cancel != nil {
		k.cancel()
	}
	k.runMu.Unlock()
	k.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), keyFlushTimeout)
	defer cancel()
	return k.Flush(ctx)
}
