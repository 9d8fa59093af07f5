package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Resolution of "name@alias" and "name@N" at start, and the cache that
// keeps alias lookups off the store. A start by plain name never looks at
// either.

// Bounds of the alias cache: an entry is read again from the store after
// aliasCacheTTL (changes made through this engine forget it at once), and
// the cache starts over once it holds maxAliasCache entries.
const (
	aliasCacheTTL = 5 * time.Second
	maxAliasCache = 10_000
)

type aliasKey struct{ tenant, name, alias string }

// aliasEntry is a cached lookup: the alias, or nil when there is none.
type aliasEntry struct {
	a  *Alias
	at time.Time
}

// aliasCache caches alias lookups. It is safe for concurrent use. A change
// of an alias runs between begin and end: meanwhile lookups of it read the
// store, and no lookup that read the store before the change ends caches
// what it read, so that once a change is durable no start gets the alias as
// it was before.
type aliasCache struct {
	mu       sync.Mutex // protects the fields below
	m        map[aliasKey]aliasEntry
	gen      uint64 // bumped when a change begins and ends
	changing int    // changes begun and not ended
}

func newAliasCache() *aliasCache { return &aliasCache{m: map[aliasKey]aliasEntry{}} }

// begin marks a change of an alias as under way.
func (c *aliasCache) begin(tenant, name, alias string) {
	c.mu.Lock()
	c.changing++
	c.gen++
	delete(c.m, aliasKey{tenant, name, alias})
	c.mu.Unlock()
}

// end marks the change begin marked as over, whatever its outcome.
func (c *aliasCache) end(tenant, name, alias string) {
	c.mu.Lock()
	c.changing--
	c.gen++
	delete(c.m, aliasKey{tenant, name, alias})
	c.mu.Unlock()
}

// lookupAlias returns an alias through the cache: ErrAliasNotFound when
// there is none.
func (e *Engine) lookupAlias(ctx context.Context, tenantID, name, alias string) (*Alias, error) {
	k := aliasKey{tenantID, name, alias}
	now := time.Now()
	c := e.aliases
	c.mu.Lock()
	ent, ok := c.m[k]
	gen := c.gen
	c.mu.Unlock()
	if !ok || now.Sub(ent.at) > aliasCacheTTL {
		as, err := e.aliasStore()
		if err != nil {
			return nil, err
		}
		a, err := as.GetAlias(ctx, tenantID, name, alias)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		ent = aliasEntry{a: a, at: now}
		c.mu.Lock()
		if c.gen == gen && c.changing == 0 {
			if len(c.m) >= maxAliasCache {
				clear(c.m)
			}
			c.m[k] = ent
		}
		c.mu.Unlock()
	}
	if ent.a == nil {
		return nil, fmt.Errorf("%s@%s: %w", name, alias, ErrAliasNotFound)
	}
	return ent.a, nil
}

// ResolveWorkflow resolves a workflow reference for a run: "name" and
// "name@latest" to the latest version (version 0), "name@N" to version N,
// "name@alias" to the version the alias picks for the run, by the hash of
// its sticky key rendered from input or, without one, of runID. Starts that
// name a reference in StartRequest.Workflow get this done by StartRun;
// starters that must know the version before they start can call it.
// Errors: *FieldError (a malformed reference, field "workflow"; a sticky
// key referencing a field input lacks, field "input.FIELD"),
// ErrAliasNotFound, ErrAliasesUnsupported.
func (e *Engine) ResolveWorkflow(ctx context.Context, tenantID, ref string, input json.RawMessage, runID string) (name string, version int, alias string, err error) {
	r, err := ParseWorkflowRef("workflow", ref)
	if err != nil {
		return "", 0, "", err
	}
	if r.Alias == "" {
		return r.Name, r.Version, "", nil
	}
	a, err := e.lookupAlias(ctx, tenantID, r.Name, r.Alias)
	if err != nil {
		return "", 0, "", err
	}
	key := []byte(runID)
	if a.StickyKey != "" {
		key, err = definition.RenderInputTemplate(a.StickyKey, input, MaxStickyValue)
		var mf *definition.MissingFieldError
		switch {
		case errors.As(err, &mf):
			return "", 0, "", &FieldError{Field: mf.Field, Reason: fmt.Sprintf("alias %s@%s picks its version by the sticky key %s: %v", r.Name, r.Alias, a.StickyKey, mf.Err)}
		case err != nil:
			return "", 0, "", &FieldError{Field: "input", Reason: fmt.Sprintf("alias %s@%s: sticky key %s: %v", r.Name, r.Alias, a.StickyKey, err)}
		}
	}
	return r.Name, a.Pick(key), r.Alias, nil
}

// resolveStart resolves a start's "name@..." workflow into its name,
// version and alias.
func (e *Engine) resolveStart(ctx context.Context, req *StartRequest, runID string) error {
	name, version, alias, err := e.ResolveWorkflow(ctx, req.TenantID, req.Workflow, req.Input, runID)
	if err != nil {
		return err
	}
	if req.Version != 0 && (version != 0 || alias != "") {
		return &FieldError{Field: "version", Reason: fmt.Sprintf("workflow %q names its version; leave version out", req.Workflow)}
	}
	if req.Alias != "" && alias != "" && req.Alias != alias {
		return &FieldError{Field: "alias", Reason: fmt.Sprintf("workflow %q names alias %s, the request %s", req.Workflow, alias, req.Alias)}
	}
	req.Workflow = name
	if version != 0 {
		req.Version = version
	}
	if alias != "" {
		req.Alias = alias
	}
	return nil
}

// isWorkflowRef reports whether a start's workflow is more than a plain name.
func isWorkflowRef(workflow string) bool { return strings.IndexByte(workflow, '@') >= 0 }
