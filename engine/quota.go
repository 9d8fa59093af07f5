package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Tenant quotas bound what one tenant may ask of the server: how fast it
// starts runs (a token bucket), how many of its runs are active (running or
// paused) and waiting, and how large a run's input may be. An admin sets
// them on the tenant (TenantSettings.Quotas); the server's defaults
// (Config.DefaultQuotas) apply to every field a tenant leaves 0.

// TenantQuotas are a tenant's quotas. In a tenant's settings 0 means "the
// server's default" and Unlimited lifts the limit for this tenant; in
// Config.DefaultQuotas and in the effective quotas 0 means unlimited.
type TenantQuotas struct {
	// StartRate is how many runs per second the tenant may start, on
	// average; StartBurst how many at once (default: the rate, at least 1).
	StartRate  float64 `json:"start_rate,omitempty"`
	StartBurst int     `json:"start_burst,omitempty"`
	// MaxActiveRuns bounds the tenant's runs running or paused at once.
	MaxActiveRuns int `json:"max_active_runs,omitempty"`
	// MaxPendingRuns bounds the tenant's runs waiting, pending, for a slot
	// (of MaxActiveRuns or of a concurrency key).
	MaxPendingRuns int `json:"max_pending_runs,omitempty"`
	// MaxInputBytes bounds the input of one run.
	MaxInputBytes int64 `json:"max_input_bytes,omitempty"`
	// OnActiveLimit says what a start finds at MaxActiveRuns: OnActiveReject
	// (the default) refuses it, OnActiveQueue records it pending and starts
	// it when a slot frees, first in first out.
	OnActiveLimit string `json:"on_active_limit,omitempty"`
}

// Unlimited, as a field of a tenant's quotas, lifts that limit for the
// tenant whatever the server's default.
const Unlimited = -1

// What a start finds at the active-run cap.
const (
	OnActiveReject = "reject"
	OnActiveQueue  = "queue"
)

// Bounds of the quota settings.
const (
	MaxQuotaStartRate  = 1e6
	MaxQuotaCount      = 10_000_000
	MaxQuotaInputBytes = 1 << 30
)

// Names of the quotas, as errors and answers name them.
const (
	QuotaStartRate      = "start_rate"
	QuotaMaxActiveRuns  = "max_active_runs"
	QuotaMaxPendingRuns = "max_pending_runs"
	QuotaMaxInputBytes  = "max_input_bytes"
)

// Validate returns a *FieldError naming the first field out of bounds,
// prefix before its name (e.g. "settings.quotas."). With defaults, the
// server's defaults are checked: Unlimited is not allowed there (0 is).
func (q TenantQuotas) Validate(prefix string, defaults bool) error {
	low := float64(Unlimited)
	if defaults {
		low = 0
	}
	check := func(field string, v, max float64) error {
		if math.IsNaN(v) || v < low || v > max || (v < 0 && v != Unlimited) {
			if defaults {
				return &FieldError{Field: prefix + field, Reason: fmt.Sprintf("must be between 0 (unlimited) and %g, got %g", max, v)}
			}
			return &FieldError{Field: prefix + field, Reason: fmt.Sprintf("must be between 0 and %g (0: the server's default, -1: unlimited), got %g", max, v)}
		}
		return nil
	}
	for _, f := range []struct {
		name   string
		v, max float64
	}{
		{QuotaStartRate, q.StartRate, MaxQuotaStartRate},
		{"start_burst", float64(q.StartBurst), MaxQuotaCount},
		{QuotaMaxActiveRuns, float64(q.MaxActiveRuns), MaxQuotaCount},
		{QuotaMaxPendingRuns, float64(q.MaxPendingRuns), MaxQuotaCount},
		{QuotaMaxInputBytes, float64(q.MaxInputBytes), MaxQuotaInputBytes},
	} {
		if err := check(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	switch q.OnActiveLimit {
	case "", OnActiveReject, OnActiveQueue:
	default:
		return &FieldError{Field: prefix + "on_active_limit", Reason: fmt.Sprintf("must be %s or %s, got %q", OnActiveReject, OnActiveQueue, q.OnActiveLimit)}
	}
	return nil
}

// Over returns the quotas in force: each field of q, or of d (the server's
// defaults) where q leaves it 0; Unlimited becomes 0. The burst of a rate
// is at least 1 (default the rate, rounded up), and OnActiveLimit is set.
func (q TenantQuotas) Over(d TenantQuotas) TenantQuotas {
	pick := func(v, dv float64) float64 {
		switch {
		case v == Unlimited:
			return 0
		case v == 0:
			return dv
		}
		return v
	}
	e := TenantQuotas{
		StartRate:      pick(q.StartRate, d.StartRate),
		StartBurst:     int(pick(float64(q.StartBurst), float64(d.StartBurst))),
		MaxActiveRuns:  int(pick(float64(q.MaxActiveRuns), float64(d.MaxActiveRuns))),
		MaxPendingRuns: int(pick(float64(q.MaxPendingRuns), float64(d.MaxPendingRuns))),
		MaxInputBytes:  int64(pick(float64(q.MaxInputBytes), float64(d.MaxInputBytes))),
		OnActiveLimit:  q.OnActiveLimit,
	}
	if q.StartRate != 0 {
		// The tenant's own rate: its own burst, or one derived from it.
		e.StartBurst = max(0, q.StartBurst)
	}
	if e.OnActiveLimit == "" {
		e.OnActiveLimit = d.OnActiveLimit
	}
	if e.OnActiveLimit == "" {
		e.OnActiveLimit = OnActiveReject
	}
	if e.StartRate <= 0 {
		e.StartRate, e.StartBurst = 0, 0
	} else if e.StartBurst <= 0 {
		e.StartBurst = max(1, int(math.Ceil(e.StartRate)))
	}
	return e
}

// ErrQuotaExceeded: a tenant quota refused the start. *QuotaError says which.
var ErrQuotaExceeded = errors.New("quota exceeded")

// QuotaError is a start a tenant quota refused. It wraps ErrQuotaExceeded.
type QuotaError struct {
	Quota string // QuotaStartRate, QuotaMaxActiveRuns, QuotaMaxPendingRuns, QuotaMaxInputBytes
	Limit float64
	// RetryAfter is when trying again may succeed (0 for QuotaMaxInputBytes,
	// which waiting does not change).
	RetryAfter time.Duration
	Message    string
	// RateLimit is the tenant's start bucket when the rate refused it.
	RateLimit *RateLimit
}

func (e *QuotaError) Error() string { return "quota exceeded: " + e.Message }

func (e *QuotaError) Unwrap() error { return ErrQuotaExceeded }

// ErrConcurrencyLimited: every slot of the run's concurrency key is taken
// and its strategy is cancel_newest. *ConcurrencyLimitedError says which.
var ErrConcurrencyLimited = errors.New("concurrency limited")

// ConcurrencyLimitedError is a start refused by its concurrency key. It
// wraps ErrConcurrencyLimited.
type ConcurrencyLimitedError struct {
	Workflow, Key string
	Max           int
}

func (e *ConcurrencyLimitedError) Error() string {
	return fmt.Sprintf("concurrency key %q of workflow %s: %d active run(s), the max, and the strategy is cancel_newest", e.Key, e.Workflow, e.Max)
}

func (e *ConcurrencyLimitedError) Unwrap() error { return ErrConcurrencyLimited }

// RateLimit is the state of a tenant's start bucket, as the RateLimit-*
// headers show it: Limit starts at once (the burst), Remaining of them
// available now, and Reset until the bucket is full again.
type RateLimit struct {
	Limit     int
	Remaining int
	Reset     time.Duration
}

// limiterBook holds the start bucket of each tenant with a start rate. A
// bucket is rebuilt (full) when the tenant's rate or burst changes. It is
// safe for concurrent use.
type limiterBook struct {
	n  atomic.Int64 // len(m), read without mu: no bucket, no lock on a start
	mu sync.Mutex   // protects m
	m  map[string]*bucket
}

type bucket struct {
	rate  float64
	burst int
	lim   *rate.Limiter
}

// maxBuckets bounds the book: past it, full buckets (which hold no state a
// new one would not) are dropped.
const maxBuckets = 100_000

// get returns the tenant's bucket under quotas q, nil when q has no rate.
func (lb *limiterBook) get(tenant string, q TenantQuotas, now time.Time) *bucket {
	if q.StartRate <= 0 && lb.n.Load() == 0 {
		return nil
	}
	lb.mu.Lock()
	defer func() {
		lb.n.Store(int64(len(lb.m)))
		lb.mu.Unlock()
	}()
	b := lb.m[tenant]
	if q.StartRate <= 0 {
		if b != nil {
			delete(lb.m, tenant)
		}
		return nil
	}
	if b != nil && b.rate == q.StartRate && b.burst == q.StartBurst {
		return b
	}
	if lb.m == nil {
		lb.m = map[string]*bucket{}
	}
	if b == nil && len(lb.m) >= maxBuckets {
		for id, o := range lb.m {
			if o.lim.TokensAt(now) >= float64(o.burst) {
				delete(lb.m, id)
			}
		}
	}
	b = &bucket{rate: q.StartRate, burst: q.StartBurst, lim: rate.NewLimiter(rate.Limit(q.StartRate), q.StartBurst)}
	lb.m[tenant] = b
	return b
}

// giveBack returns the start a refused run took from its bucket.
func (lb *limiterBook) giveBack(r *rate.Reservation) {
	if r != nil {
		r.Cancel()
	}
}

// peek returns the tenant's bucket, nil when it has none.
func (lb *limiterBook) peek(tenant string) *bucket {
	if lb.n.Load() == 0 {
		return nil
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.m[tenant]
}

// state is the bucket as the headers show it at now.
func (b *bucket) state(now time.Time) RateLimit {
	tokens := b.lim.TokensAt(now)
	rl := RateLimit{Limit: b.burst, Remaining: max(0, int(math.Floor(tokens)))}
	if missing := float64(b.burst) - tokens; missing > 0 {
		// A rate near 0 refills past what a Duration holds: a float that
		// large converts to a negative Duration, so clamp it first.
		rl.Reset = time.Duration(math.MaxInt64)
		if ns := missing / b.rate * float64(time.Second); ns < float64(math.MaxInt64) {
			rl.Reset = time.Duration(ns)
		}
	}
	return rl
}

// take takes one start from the tenant's bucket: the reservation to cancel
// if the start is refused later, nil when q has no rate, or a *QuotaError
// saying when a start will be allowed.
func (lb *limiterBook) take(tenant string, q TenantQuotas, now time.Time) (*rate.Reservation, error) {
	b := lb.get(tenant, q, now)
	if b == nil {
		return nil, nil
	}
	r := b.lim.ReserveN(now, 1)
	if !r.OK() { // cannot happen: the burst is at least 1
		return nil, &QuotaError{Quota: QuotaStartRate, Limit: q.StartRate, RetryAfter: time.Second, Message: "start rate"}
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		st := b.state(now)
		return nil, &QuotaError{Quota: QuotaStartRate, Limit: q.StartRate, RetryAfter: d, RateLimit: &st,
			Message: fmt.Sprintf("tenant %s may start %g runs per second (burst %d); the next start is allowed in %s",
				tenant, q.StartRate, q.StartBurst, d.Round(time.Millisecond))}
	}
	return r, nil
}

// StartRateLimit returns the state of the tenant's start bucket for the
// RateLimit-* headers of a start's answer; ok is false when the tenant has
// no start rate (as of its last start).
func (e *Engine) StartRateLimit(tenantID string) (rl RateLimit, ok bool) {
	b := e.limits.peek(tenantID)
	if b == nil {
		return RateLimit{}, false
	}
	return b.state(e.now()), true
}

// quotasFor returns the quotas in force for a tenant: its own settings
// over the server's defaults. The tenant is read through Config.TenantFunc,
// which caches; an unregistered tenant (an engine without a registry) gets
// the defaults.
func (e *Engine) quotasFor(ctx context.Context, tenantID string) (TenantQuotas, error) {
	if e.tenantFunc == nil {
		return e.defQuotas, nil
	}
	t, err := e.tenantFunc(ctx, tenantID)
	switch {
	case errors.Is(err, ErrNotFound):
		return e.defQuotas, nil
	case err != nil:
		return TenantQuotas{}, fmt.Errorf("tenant %s: %w", tenantID, err)
	}
	return t.Settings.Quotas.Over(e.defQuotas), nil
}
