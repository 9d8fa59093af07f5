package engine

// PlanCacheStats returns how many compiled plans the engine keeps and their
// counted size, for the tests of the cache's bounds in package engine_test.
func (e *Engine) PlanCacheStats() (n int, bytes int64) { return e.plans.stats() }

// SetResolveHook makes every resolver call f before it renders a template.
// It must be called before Start.
func (e *Engine) SetResolveHook(f func()) { e.resolveHook = f }
