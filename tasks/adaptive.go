package tasks

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// AdaptiveConfig configures adaptive concurrency limits: per target host for
// the http task, per tenant and task type for WithAdaptiveLimit. Each key
// gets its own limit, which an AIMD rule moves after each window of
// answered calls (at least ten, and two of the fastest answers long): it
// shrinks by a tenth when the median latency of two windows in a row rose
// over Tolerance times the lowest latency of the recent windows (their
// tenth percentiles) and they used at least half the limit; it grows by
// one when a window used the whole limit and its median stayed within half
// of that margin (1.2 times the lowest for a Tolerance of 1.4);
// it holds in between. Every 32nd window runs at half the limit, so that
// the lowest latency is measured again at low load. A call reporting
// overload (HTTP 429 or 503, a timeout) shrinks the limit at once, once for
// all the calls started under the same limit, and to no more than the calls
// still in flight (within a halving). A Retry-After stops every call of the
// key until it has passed.
type AdaptiveConfig struct {
	// Enabled turns the limits on; the zero value leaves calls unlimited.
	Enabled bool
	// MinLimit, MaxLimit and InitialLimit bound the limit of a key and
	// set where it starts; defaults DefaultAdaptiveMin, DefaultAdaptiveMax
	// and DefaultAdaptiveInitial.
	MinLimit, MaxLimit, InitialLimit int
	// Tolerance is how many times its lowest latency a key's median latency
	// may reach before the limit shrinks; default DefaultAdaptiveTolerance.
	// The limit grows only while the median stays within half of that
	// margin. A target whose latency varies widely at low load needs more.
	Tolerance float64
	// MaxWait bounds how long an attempt waits for a slot, or for a
	// Retry-After pause to end, before it is deferred (recorded with reason
	// throttled, not charged to the retry budget) so that it frees its
	// worker; default DefaultAdaptiveMaxWait.
	MaxWait time.Duration
}

// Adaptive limit defaults and bounds.
const (
	DefaultAdaptiveMin       = 1
	DefaultAdaptiveMax       = 1000
	DefaultAdaptiveInitial   = 20
	DefaultAdaptiveTolerance = 1.4
	DefaultAdaptiveMaxWait   = 10 * time.Second
	// MaxAdaptiveLimit bounds MaxLimit.
	MaxAdaptiveLimit = 100_000
	// MaxAdaptiveWait bounds MaxWait.
	MaxAdaptiveWait = time.Hour
)

// Tuning of the AIMD rule.
const (
	// adaptiveWindowSamples is the fewest calls a window decides on.
	adaptiveWindowSamples = 10
	// adaptiveBackoff multiplies the limit on overload.
	adaptiveBackoff = 0.9
	// adaptiveBaselineWindows is how many windows the lowest latency is
	// remembered for, so that a target that became slower for good is
	// measured again rather than compared forever with its old self.
	adaptiveBaselineWindows = 64
	// adaptiveProbeEvery is how many windows pass between two windows at
	// half the limit.
	adaptiveProbeEvery = 32
	// adaptiveMaxSamples bounds the latencies a window keeps.
	adaptiveMaxSamples = 256
	// adaptiveMaxWindow bounds a window's length in time.
	adaptiveMaxWindow = time.Second
)

// withDefaults returns c with its zero fields set to the defaults.
func (c AdaptiveConfig) withDefaults() AdaptiveConfig {
	c.MinLimit = orDefault(c.MinLimit, DefaultAdaptiveMin)
	c.MaxLimit = orDefault(c.MaxLimit, DefaultAdaptiveMax)
	c.InitialLimit = orDefault(c.InitialLimit, min(max(DefaultAdaptiveInitial, c.MinLimit), c.MaxLimit))
	c.Tolerance = orDefault(c.Tolerance, DefaultAdaptiveTolerance)
	c.MaxWait = orDefault(c.MaxWait, DefaultAdaptiveMaxWait)
	return c
}

// Validate reports settings no limiter can run with; zero fields take their
// defaults first.
func (c AdaptiveConfig) Validate() error {
	d := c.withDefaults()
	switch {
	case c.MinLimit < 0 || c.MaxLimit < 0 || c.InitialLimit < 0:
		return errors.New("adaptive limits must not be negative")
	case d.MaxLimit > MaxAdaptiveLimit:
		return fmt.Errorf("adaptive max limit %d: want at most %d", d.MaxLimit, MaxAdaptiveLimit)
	case d.MinLimit > d.MaxLimit:
		return fmt.Errorf("adaptive min limit %d is over the max limit %d", d.MinLimit, d.MaxLimit)
	case d.InitialLimit < d.MinLimit || d.InitialLimit > d.MaxLimit:
		return fmt.Errorf("adaptive initial limit %d: want %d..%d (min..max)", d.InitialLimit, d.MinLimit, d.MaxLimit)
	case math.IsNaN(d.Tolerance) || d.Tolerance <= 1 || d.Tolerance > 10:
		return fmt.Errorf("adaptive tolerance %g: want more than 1, at most 10", d.Tolerance)
	case d.MaxWait < 0 || d.MaxWait > MaxAdaptiveWait:
		return fmt.Errorf("adaptive max wait %s: want more than 0, at most %s", d.MaxWait, MaxAdaptiveWait)
	}
	return nil
}

// signal is what a finished call says about its key's health.
type signal int

const (
	// signalIgnore says nothing: the call failed before reaching the
	// target, or for a reason of its own.
	signalIgnore signal = iota
	// signalSample is a call the target answered: its latency counts.
	signalSample
	// signalOverload is a call the target refused for load or did not
	// answer in time.
	signalOverload
)

// waitError is why acquire gave up: no slot within MaxWait, or a pause
// (Retry-After) that outlasts what the attempt may wait.
type waitError struct {
	paused  bool
	retryIn time.Duration
}

func (e *waitError) Error() string {
	if e.paused {
		return fmt.Sprintf("the target asked for no calls for %s (Retry-After)", e.retryIn.Round(time.Millisecond))
	}
	return "no concurrency slot became free in time"
}

// limiter is the adaptive concurrency limit of one key. It is safe for
// concurrent use.
type limiter struct {
	cfg AdaptiveConfig // with defaults
	now func() time.Time

	mu          sync.Mutex // protects the fields below
	limit       float64
	inflight    int
	waiters     list.List // of *waiter, first come first served
	pausedUntil time.Time
	pauseTimer  *time.Timer
	epoch       uint64 // counts decreases: an overload only counts for calls started since the last one
	drops       uint64
	// The current window of answered calls.
	winStart       time.Time
	winN           int
	winRTTs        []time.Duration // the first adaptiveMaxSamples latencies, for the median
	winMin         time.Duration
	winMaxInflight int
	slowWindows    int  // windows in a row over Tolerance
	probing        bool // this window runs at half the limit to measure the low-load latency
	sinceProbe     int  // windows since the last probe
	// mins holds the low (tenth percentile) latency of the last windows;
	// baseline is their minimum.
	mins  [adaptiveBaselineWindows]time.Duration
	minsN int
	minsI int
}

// waiter is an acquire waiting in line.
type waiter struct {
	ready    chan struct{} // closed when granted or kicked out
	granted  bool
	giveUpAt time.Time // when the waiter leaves the line by itself
	kicked   *waitError
	epoch    uint64
}

func newLimiter(cfg AdaptiveConfig, now func() time.Time) *limiter {
	return &limiter{cfg: cfg, now: now, limit: float64(cfg.InitialLimit)}
}

// permit is a slot taken from a limiter; release it exactly once.
type permit struct {
	l     *limiter
	start time.Time
	epoch uint64
}

// slots is the whole number of calls the limit lets through. Called with
// l.mu held.
func (l *limiter) slots() int {
	if l.probing {
		return max(1, int(l.limit)/2)
	}
	return max(1, int(l.limit))
}

// acquire takes a slot, waiting in line at most maxWait and while ctx
// lasts. It returns ctx's error when ctx ends first, or a *waitError.
func (l *limiter) acquire(ctx context.Context, maxWait time.Duration) (*permit, error) {
	l.mu.Lock()
	now := l.now()
	giveUpAt := now.Add(maxWait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(giveUpAt) {
		giveUpAt = dl
	}
	if l.pausedUntil.After(now) && l.pausedUntil.After(giveUpAt) {
		d := l.pausedUntil.Sub(now)
		l.mu.Unlock()
		return nil, &waitError{paused: true, retryIn: d}
	}
	if !l.pausedUntil.After(now) && l.waiters.Len() == 0 && l.inflight < l.slots() {
		p := l.grantLocked(now)
		l.mu.Unlock()
		return p, nil
	}
	w := &waiter{ready: make(chan struct{}), giveUpAt: giveUpAt}
	el := l.waiters.PushBack(w)
	l.mu.Unlock()

	timer := time.NewTimer(giveUpAt.Sub(now))
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = &waitError{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case w.granted && err == nil:
		return &permit{l: l, start: l.now(), epoch: w.epoch}, nil
	case w.granted: // granted as it gave up: pass the slot on
		l.inflight--
		l.dispatchLocked()
		return nil, err
	case w.kicked != nil:
		return nil, w.kicked
	}
	l.waiters.Remove(el)
	return nil, err
}

// grantLocked takes a slot. Called with l.mu held.
func (l *limiter) grantLocked(now time.Time) *permit {
	l.inflight++
	l.winMaxInflight = max(l.winMaxInflight, l.inflight)
	return &permit{l: l, start: now, epoch: l.epoch}
}

// dispatchLocked hands free slots to the waiters in line, unless a pause
// holds them. Called with l.mu held.
func (l *limiter) dispatchLocked() {
	if l.pausedUntil.After(l.now()) {
		return
	}
	for l.waiters.Len() > 0 && l.inflight < l.slots() {
		w := l.waiters.Remove(l.waiters.Front()).(*waiter)
		l.inflight++
		l.winMaxInflight = max(l.winMaxInflight, l.inflight)
		w.granted, w.epoch = true, l.epoch
		close(w.ready)
	}
}

// release gives the slot back with what the call said about the key;
// retryAfter > 0 pauses the key that long. A nil permit (limits off) does
// nothing.
func (p *permit) release(s signal, retryAfter time.Duration) {
	if p == nil {
		return
	}
	l := p.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.inflight--
	switch s {
	case signalSample:
		l.sampleLocked(now, now.Sub(p.start))
	case signalOverload:
		l.drops++
		if p.epoch == l.epoch { // calls started before the last decrease already paid for it
			l.decreaseLocked(now)
		}
		// The target refused while this many calls of ours were still in
		// flight: let no more through until they end (within a halving),
		// or the slot this call frees goes at once to a waiter the target
		// refuses in turn.
		l.limit = max(float64(l.cfg.MinLimit), l.limit/2, min(l.limit, float64(l.inflight)))
	}
	if retryAfter > 0 {
		l.pauseLocked(now, retryAfter)
	}
	l.dispatchLocked()
}

// decreaseLocked shrinks the limit and starts a new window. Called with
// l.mu held.
func (l *limiter) decreaseLocked(now time.Time) {
	l.limit = max(float64(l.cfg.MinLimit), l.limit*adaptiveBackoff)
	l.epoch++
	l.slowWindows, l.probing, l.sinceProbe = 0, false, 0
	l.resetWindowLocked(now)
}

// resetWindowLocked starts a new window. Called with l.mu held.
func (l *limiter) resetWindowLocked(now time.Time) {
	l.winStart, l.winN, l.winRTTs, l.winMin, l.winMaxInflight = now, 0, l.winRTTs[:0], 0, l.inflight
}

// baselineLocked is the lowest latency of the last windows, 0 before the
// first. Called with l.mu held.
func (l *limiter) baselineLocked() time.Duration {
	var b time.Duration
	for i := range l.minsN {
		if b == 0 || l.mins[i] < b {
			b = l.mins[i]
		}
	}
	return b
}

// sampleLocked adds an answered call's latency to the window and, once the
// window is complete, moves the limit. Called with l.mu held.
func (l *limiter) sampleLocked(now time.Time, rtt time.Duration) {
	rtt = max(rtt, time.Microsecond)
	if l.winN == 0 || rtt < l.winMin {
		l.winMin = rtt
	}
	l.winN++
	if len(l.winRTTs) < adaptiveMaxSamples {
		l.winRTTs = append(l.winRTTs, rtt)
	}
	base := l.baselineLocked()
	if base == 0 || l.winMin < base {
		base = l.winMin
	}
	// A window spans at least two of the target's fastest answers, so that
	// most of its calls started under the limit it judges.
	if l.winN < adaptiveWindowSamples || now.Sub(l.winStart) < min(2*base, adaptiveMaxWindow) {
		return
	}
	slices.Sort(l.winRTTs)
	// The tenth percentile is the window's low latency (a lucky call
	// alone does not set it), the median its typical latency (a few calls
	// slowed by our own process do not move it).
	low, median := l.winRTTs[len(l.winRTTs)/10], l.winRTTs[len(l.winRTTs)/2]
	l.mins[l.minsI] = low
	l.minsI = (l.minsI + 1) % len(l.mins)
	l.minsN = min(l.minsN+1, len(l.mins))
	if l.probing {
		// The window at half the limit measured the target's latency at
		// low load as it is now; it judges nothing.
		l.probing, l.sinceProbe = false, 0
		l.resetWindowLocked(now)
		return
	}
	base = l.baselineLocked()
	switch {
	case float64(median) > l.cfg.Tolerance*float64(base) && 2*l.winMaxInflight >= l.slots():
		// Shrinking a limit the calls do not come near would change
		// nothing now and starve them later; one slow window alone may be
		// a pause of our own process rather than the target's queue.
		if l.slowWindows++; l.slowWindows >= 2 {
			l.decreaseLocked(now)
			return
		}
	case l.winMaxInflight >= l.slots() && float64(median) <= (1+(l.cfg.Tolerance-1)/2)*float64(base):
		l.limit = min(float64(l.cfg.MaxLimit), l.limit+1)
		l.slowWindows = 0
	default:
		l.slowWindows = 0
	}
	// Now and then a window runs at half the limit, so that the lowest
	// latency stays that of the target at low load rather than creeping up
	// to its latency at the limit, or lagging behind our own process's
	// delays as the machine gets busy.
	if l.sinceProbe++; l.sinceProbe >= adaptiveProbeEvery && l.slots() >= 4 {
		l.probing = true
	}
	l.resetWindowLocked(now)
}

// pauseLocked stops calls until now+d, sending away the waiters that would
// give up before then. Called with l.mu held.
func (l *limiter) pauseLocked(now time.Time, d time.Duration) {
	until := now.Add(d)
	if !until.After(l.pausedUntil) {
		return
	}
	l.pausedUntil = until
	for el := l.waiters.Front(); el != nil; {
		next := el.Next()
		if w := el.Value.(*waiter); w.giveUpAt.Before(until) {
			l.waiters.Remove(el)
			w.kicked = &waitError{paused: true, retryIn: d}
			close(w.ready)
		}
		el = next
	}
	if l.pauseTimer != nil {
		l.pauseTimer.Stop()
	}
	l.pauseTimer = time.AfterFunc(d, l.resume)
}

// resume lets the waiters in once a pause is over.
func (l *limiter) resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dispatchLocked()
}

// idle reports whether the limiter holds nothing a new one would not:
// nothing in flight, no one waiting, no pause.
func (l *limiter) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight == 0 && l.waiters.Len() == 0 && !l.pausedUntil.After(l.now())
}

// state is what gauges and tests read: the limit (the whole number of
// calls let through at once), the calls in flight and waiting, and the
// calls that reported overload.
func (l *limiter) state() (limit, inflight, waiting int, drops uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(1, int(l.limit)), l.inflight, l.waiters.Len(), l.drops
}
