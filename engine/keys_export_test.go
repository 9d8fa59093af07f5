package engine

import "context"

// RunOnce runs one turn of the Keys loop, for the tests in package
// engine_test that drive it step by step.
func (k *Keys) RunOnce(ctx context.Context) { k.runOnce(ctx) }

// Cached returns how many keys and tenants Keys holds in its cache.
func (k *Keys) Cached() (keys, tenants int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys), len(k.tenants)
}
