package engine

import (
	"context"
	"sync"
)

// idemFlights holds the idempotency keys whose start is deciding or
// committing. A start with a key in flight waits for it and then replays
// the first run: before the first is durable the store does not know the
// key, and a copy deciding on its own would count against the slots the
// first holds (a 429 or a 409 instead of the run) or, with
// cancel_in_progress, cancel the first run. The zero value is ready; it is
// safe for concurrent use and never takes Engine.mu.
type idemFlights struct {
	mu sync.Mutex               // protects m
	m  map[string]chan struct{} // closed when the start of the key is done
}

// claim makes the caller the one start of tenant's key in flight, waiting
// while another holds it (waited says so; the caller should then look for
// the run the other started). release ends the claim; it may be called
// more than once. It returns ctx's error if ctx ends while it waits.
func (f *idemFlights) claim(ctx context.Context, tenant, key string) (release func(), waited bool, err error) {
	id := tenant + "\x00" + key
	for {
		f.mu.Lock()
		ch, busy := f.m[id]
		if !busy {
			if f.m == nil {
				f.m = map[string]chan struct{}{}
			}
			ch = make(chan struct{})
			f.m[id] = ch
			f.mu.Unlock()
			return sync.OnceFunc(func() {
				f.mu.Lock()
				delete(f.m, id)
				f.mu.Unlock()
				close(ch)
			}), waited, nil
		}
		f.mu.Unlock()
		waited = true
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, waited, ctx.Err()
		}
	}
}
