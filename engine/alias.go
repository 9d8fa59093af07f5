package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Aliases: a name for a definition that a start uses instead of a version
// ("wf@live"). An alias points at one version, or splits runs between two by
// integer weights summing to 100. Which version a run gets is a
// deterministic hash of its sticky key (a template over the run's input,
// "${workflow.input.customer}") or, without one, of its run id, so the same
// key always gets the same version. Moving an alias is recorded in the admin
// log (alias.set, alias.deleted, alias.rolled_back) in the same write.

// Limits and defaults of aliases.
const (
	MaxAliasVersions  = 2    // versions one alias splits runs between
	MaxStickyKeyBytes = 1024 // a sticky key template
	MaxStickyValue    = 4096 // a rendered sticky key
	MaxRollbackWindow = 1000 // finished runs per version automatic rollback counts
	// DefaultRollbackWindow and DefaultRollbackMargin fill a rollback
	// policy that leaves them out; MinRuns defaults to the window.
	DefaultRollbackWindow = 20
	DefaultRollbackMargin = 0.2
	// LatestRef is what "name@latest" names: the latest version, no alias.
	LatestRef = "latest"
)

// Admin log actions of aliases.
const (
	AdminAliasSet        AdminAction = "alias.set"
	AdminAliasDeleted    AdminAction = "alias.deleted"
	AdminAliasRolledBack AdminAction = "alias.rolled_back"
)

// ErrAliasNotFound: the definition name has no such alias. It wraps ErrNotFound.
var ErrAliasNotFound = fmt.Errorf("alias %w", ErrNotFound)

// ErrAliasesUnsupported: the engine's store keeps no aliases (it does not
// implement AliasStore).
var ErrAliasesUnsupported = errors.New("this store keeps no aliases")

// AliasTarget is one version an alias points at and its share of the runs,
// in percent.
type AliasTarget struct {
	Version int `json:"version"`
	Weight  int `json:"weight"`
}

// RollbackPolicy moves a split alias back to its older version by itself
// when, over the last Window finished runs of each version started through
// the alias since it was set, the newer version's failure rate exceeds the
// older's by more than Margin, once the newer has MinRuns finished runs.
// Failed and timed-out runs count as failures, completed ones as successes;
// cancelled runs do not count.
type RollbackPolicy struct {
	Window  int     `json:"window"`
	Margin  float64 `json:"margin"`
	MinRuns int     `json:"min_runs"`
}

// VersionOutcomes are the figures of one version a rollback decided on.
type VersionOutcomes struct {
	Version     int     `json:"version"`
	Runs        int     `json:"runs"`
	Failed      int     `json:"failed"`
	FailureRate float64 `json:"failure_rate"`
}

// RollbackRecord is the last automatic rollback of an alias: when, what the
// alias pointed at before, and the figures that decided it.
type RollbackRecord struct {
	At     time.Time       `json:"at"`
	From   []AliasTarget   `json:"from"`
	Newer  VersionOutcomes `json:"newer"`
	Older  VersionOutcomes `json:"older"`
	Margin float64         `json:"margin"`
	Window int             `json:"window"`
}

// AliasSpec is what setting an alias asks for.
type AliasSpec struct {
	Versions  []AliasTarget
	StickyKey string
	Rollback  *RollbackPolicy
	// Revision, when not 0, makes the change a compare-and-set: it fails
	// with ErrConflict unless the alias is at this revision.
	Revision int64
}

// Alias is a stored alias of a definition name.
type Alias struct {
	TenantID   string          `json:"-"`
	Name       string          `json:"-"` // the definition name
	Alias      string          `json:"-"`
	Versions   []AliasTarget   `json:"versions"`
	StickyKey  string          `json:"sticky_key,omitempty"`
	Rollback   *RollbackPolicy `json:"rollback,omitempty"`
	RolledBack *RollbackRecord `json:"rolled_back,omitempty"`
	Revision   int64           `json:"-"` // 1 when created, +1 on each change
	CreatedAt  time.Time       `json:"-"`
	UpdatedAt  time.Time       `json:"-"`
	UpdatedBy  string          `json:"-"` // the actor of the last change
}

// AliasStore keeps aliases and answers what versions and rollback read. A
// write takes the admin log entry that records it and writes both in one
// transaction, or neither. The engine uses the aliases of a Store that
// implements it (store.DB does). Every method is safe for concurrent use.
type AliasStore interface {
	// PutAlias stores a as revision prev+1: prev 0 creates it (ErrConflict
	// when it exists), any other prev replaces revision prev (ErrConflict
	// when the stored revision differs, ErrAliasNotFound when there is none).
	PutAlias(ctx context.Context, a *Alias, prev int64, ev *AdminEvent) error
	// GetAlias returns an alias, or an error wrapping ErrAliasNotFound.
	GetAlias(ctx context.Context, tenantID, name, alias string) (*Alias, error)
	// ListAliases returns the aliases of a definition name, by alias.
	ListAliases(ctx context.Context, tenantID, name string) ([]Alias, error)
	// DeleteAlias deletes an alias at revision rev (0: at any):
	// ErrAliasNotFound, ErrConflict.
	DeleteAlias(ctx context.Context, tenantID, name, alias string, rev int64, ev *AdminEvent) error
	// ListDefinitionVersions returns up to limit versions of a definition
	// name after version after, oldest first, without their JSON.
	ListDefinitionVersions(ctx context.Context, tenantID, name string, after, limit int) ([]StoredDefinition, error)
	// AliasOutcomes returns the outcomes of the last limit runs of a
	// version started through an alias and created at or after since that
	// completed, failed or timed out, newest first.
	AliasOutcomes(ctx context.Context, tenantID, name, alias string, version int, since time.Time, limit int) ([]RunOutcome, error)
}

// RunOutcome is how one finished run ended, as automatic rollback counts it.
type RunOutcome struct {
	RunID  string
	Failed bool // failed or timed out
}

// ValidAliasName reports why s cannot name an alias, or "": a name
// ([A-Za-z0-9_.-]{1,64}) that is not a number (name@3 is a version) nor
// "latest".
func ValidAliasName(s string) string {
	switch {
	case !definition.ValidName(s):
		return "must match [A-Za-z0-9_.-]{1,64}"
	case isDigits(s):
		return "must not be a number: name@N names version N"
	case s == LatestRef:
		return "latest is reserved: name@latest names the latest version"
	}
	return ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// normalize checks an alias spec and fills its defaults: a single version
// without a weight weighs 100. Errors: *FieldError naming the field.
func (s *AliasSpec) normalize() error {
	switch n := len(s.Versions); {
	case n == 0:
		return &FieldError{Field: "versions", Reason: "name one version, or two with weights"}
	case n > MaxAliasVersions:
		return &FieldError{Field: "versions", Reason: fmt.Sprintf("%d versions: an alias splits runs between at most %d", n, MaxAliasVersions)}
	case n == 1 && s.Versions[0].Weight == 0:
		s.Versions[0].Weight = 100
	}
	sum := 0
	for i, t := range s.Versions {
		at := fmt.Sprintf("versions[%d]", i)
		if t.Version < 1 {
			return &FieldError{Field: at + ".version", Reason: "must be a version number (1 or more)"}
		}
		if t.Weight < 1 || t.Weight > 100 {
			return &FieldError{Field: at + ".weight", Reason: fmt.Sprintf("%d: must be 1 to 100", t.Weight)}
		}
		if i > 0 && t.Version == s.Versions[0].Version {
			return &FieldError{Field: at + ".version", Reason: fmt.Sprintf("version %d is named twice", t.Version)}
		}
		sum += t.Weight
	}
	if sum != 100 {
		return &FieldError{Field: "versions", Reason: fmt.Sprintf("weights sum to %d, not 100", sum)}
	}
	if s.StickyKey != "" {
		if len(s.StickyKey) > MaxStickyKeyBytes {
			return &FieldError{Field: "sticky_key", Reason: fmt.Sprintf("%d bytes, over the limit of %d", len(s.StickyKey), MaxStickyKeyBytes)}
		}
		if err := definition.CheckInputTemplate(s.StickyKey); err != nil {
			return &FieldError{Field: "sticky_key", Reason: err.Error()}
		}
	}
	if r := s.Rollback; r != nil {
		if len(s.Versions) != 2 {
			return &FieldError{Field: "rollback", Reason: "needs two versions to roll back between"}
		}
		if r.Window == 0 {
			r.Window = DefaultRollbackWindow
		}
		if r.Margin == 0 {
			r.Margin = DefaultRollbackMargin
		}
		if r.MinRuns == 0 {
			r.MinRuns = r.Window
		}
		switch {
		case r.Window < 1 || r.Window > MaxRollbackWindow:
			return &FieldError{Field: "rollback.window", Reason: fmt.Sprintf("%d: must be 1 to %d runs", r.Window, MaxRollbackWindow)}
		case r.Margin <= 0 || r.Margin >= 1:
			return &FieldError{Field: "rollback.margin", Reason: fmt.Sprintf("%g: must be a failure rate difference above 0 and below 1", r.Margin)}
		case r.MinRuns < 1 || r.MinRuns > r.Window:
			return &FieldError{Field: "rollback.min_runs", Reason: fmt.Sprintf("%d: must be 1 to the window (%d)", r.MinRuns, r.Window)}
		}
	}
	return nil
}

// Pick returns the version a run with this sticky key (or, without a
// sticky key template, run id) gets: the key's hash picks a percent bucket
// 0..99, and the versions take consecutive buckets in the order listed, so
// moving weight from the first version to the second keeps every key the
// second had on it.
func (a *Alias) Pick(key []byte) int {
	h := sha256.New()
	for _, s := range []string{a.TenantID, a.Name, a.Alias} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(key)
	bucket := int(binary.BigEndian.Uint64(h.Sum(nil)[:8]) % 100)
	for _, t := range a.Versions {
		if bucket < t.Weight {
			return t.Version
		}
		bucket -= t.Weight
	}
	return a.Versions[len(a.Versions)-1].Version
}

// aliasStore returns the store's AliasStore, or ErrAliasesUnsupported.
func (e *Engine) aliasStore() (AliasStore, error) {
	if as, ok := e.store.(AliasStore); ok {
		return as, nil
	}
	return nil, ErrAliasesUnsupported
}

// checkAliasNames checks a definition name and alias from a request.
func checkAliasNames(name, alias string) error {
	if !definition.ValidName(name) {
		return &FieldError{Field: "name", Reason: "must match [A-Za-z0-9_.-]{1,64}"}
	}
	if why := ValidAliasName(alias); why != "" {
		return &FieldError{Field: "alias", Reason: fmt.Sprintf("%q: %s", alias, why)}
	}
	return nil
}

// SetAlias creates or moves an alias of a definition name to the versions
// spec names, recording alias.set in the admin log with the old and new
// versions. Errors: *FieldError (bad names, weights, versions that do not
// exist, sticky key, rollback policy), ErrNotFound (no definition of that
// name), ErrConflict (spec.Revision is not the alias's), ErrAliasesUnsupported.
func (e *Engine) SetAlias(ctx context.Context, by Caller, tenantID, name, alias string, spec AliasSpec) (*Alias, error) {
	as, err := e.aliasStore()
	if err != nil {
		return nil, err
	}
	if err := checkAliasNames(name, alias); err != nil {
		return nil, err
	}
	if err := spec.normalize(); err != nil {
		return nil, err
	}
	if _, err := e.store.GetDefinition(ctx, tenantID, name, 0); err != nil {
		return nil, fmt.Errorf("definition %s: %w", name, err)
	}
	for i, t := range spec.Versions {
		if _, err := e.store.GetDefinition(ctx, tenantID, name, t.Version); errors.Is(err, ErrNotFound) {
			return nil, &FieldError{Field: fmt.Sprintf("versions[%d].version", i), Reason: fmt.Sprintf("definition %s has no version %d", name, t.Version)}
		} else if err != nil {
			return nil, err
		}
	}
	for try := 0; ; try++ {
		cur, err := as.GetAlias(ctx, tenantID, name, alias)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		var prev int64
		data := map[string]any{"name": name, "alias": alias, "to": spec.Versions}
		if cur != nil {
			prev = cur.Revision
			data["from"] = cur.Versions
		}
		if spec.Revision != 0 && spec.Revision != prev {
			return nil, fmt.Errorf("alias %s@%s is at revision %d, not %d: %w", name, alias, prev, spec.Revision, ErrConflict)
		}
		now := e.clock()
		a := &Alias{TenantID: tenantID, Name: name, Alias: alias, Versions: spec.Versions, StickyKey: spec.StickyKey,
			Rollback: spec.Rollback, Revision: prev + 1, CreatedAt: now, UpdatedAt: now, UpdatedBy: by.actor()}
		if cur != nil {
			a.CreatedAt, a.RolledBack = cur.CreatedAt, cur.RolledBack
		}
		if spec.StickyKey != "" {
			data["sticky_key"] = spec.StickyKey
		}
		if spec.Rollback != nil {
			data["rollback"] = spec.Rollback
		}
		data["revision"] = a.Revision
		ev, err := aliasEvent(by, AdminAliasSet, tenantID, data, now)
		if err != nil {
			return nil, err
		}
		e.aliases.begin(tenantID, name, alias)
		err = as.PutAlias(ctx, a, prev, ev)
		e.aliases.end(tenantID, name, alias)
		if errors.Is(err, ErrConflict) && spec.Revision == 0 && try < 3 {
			continue // a concurrent change: decide again on what it left
		}
		if err != nil {
			return nil, err
		}
		return a, nil
	}
}

// aliasEvent makes the admin log entry of a change of an alias.
func aliasEvent(by Caller, action AdminAction, tenantID string, data map[string]any, at time.Time) (*AdminEvent, error) {
	if by.OnBehalf != "" {
		data["on_behalf"] = by.OnBehalf
	}
	return (&Admin{}).event(&Principal{Name: by.actor()}, action, tenantID, data, at)
}

// GetAlias returns an alias of a definition name. Errors: *FieldError,
// ErrAliasNotFound, ErrAliasesUnsupported.
func (e *Engine) GetAlias(ctx context.Context, tenantID, name, alias string) (*Alias, error) {
	as, err := e.aliasStore()
	if err != nil {
		return nil, err
	}
	if err := checkAliasNames(name, alias); err != nil {
		return nil, err
	}
	return as.GetAlias(ctx, tenantID, name, alias)
}

// ListAliases returns the aliases of a definition name. Errors: ErrNotFound
// (no definition of that name), ErrAliasesUnsupported.
func (e *Engine) ListAliases(ctx context.Context, tenantID, name string) ([]Alias, error) {
	as, err := e.aliasStore()
	if err != nil {
		return nil, err
	}
	if _, err := e.store.GetDefinition(ctx, tenantID, name, 0); err != nil {
		return nil, fmt.Errorf("definition %s: %w", name, err)
	}
	return as.ListAliases(ctx, tenantID, name)
}

// DeleteAlias deletes an alias (at revision rev, unless 0), recording
// alias.deleted with the versions it pointed at. Errors: *FieldError,
// ErrAliasNotFound, ErrConflict, ErrAliasesUnsupported.
func (e *Engine) DeleteAlias(ctx context.Context, by Caller, tenantID, name, alias string, rev int64) error {
	as, err := e.aliasStore()
	if err != nil {
		return err
	}
	if err := checkAliasNames(name, alias); err != nil {
		return err
	}
	cur, err := as.GetAlias(ctx, tenantID, name, alias)
	if err != nil {
		return err
	}
	if rev != 0 && rev != cur.Revision {
		return fmt.Errorf("alias %s@%s is at revision %d, not %d: %w", name, alias, cur.Revision, rev, ErrConflict)
	}
	ev, err := aliasEvent(by, AdminAliasDeleted, tenantID, map[string]any{"name": name, "alias": alias,
		"from": cur.Versions, "revision": cur.Revision}, e.clock())
	if err != nil {
		return err
	}
	e.aliases.begin(tenantID, name, alias)
	err = as.DeleteAlias(ctx, tenantID, name, alias, cur.Revision, ev)
	e.aliases.end(tenantID, name, alias)
	return err
}

// WorkflowRef is a parsed workflow reference: "name", "name@N",
// "name@latest" or "name@alias".
type WorkflowRef struct {
	Name    string
	Version int    // 0: the latest, or as the alias picks
	Alias   string // "" unless the reference names an alias
}

// ParseWorkflowRef reads a workflow reference, for starters that check one
// when it is configured (a schedule, a trigger) rather than when it starts.
// Errors: *FieldError naming field.
func ParseWorkflowRef(field, ref string) (WorkflowRef, error) {
	name, suffix, at := cutAt(ref)
	if !definition.ValidName(name) {
		return WorkflowRef{}, &FieldError{Field: field, Reason: fmt.Sprintf("%q: the name must match [A-Za-z0-9_.-]{1,64}; write name, name@VERSION or name@ALIAS", ref)}
	}
	r := WorkflowRef{Name: name}
	switch {
	case !at:
	case suffix == LatestRef:
	case isDigits(suffix):
		v, err := strconv.Atoi(suffix)
		if err != nil || v < 1 {
			return WorkflowRef{}, &FieldError{Field: field, Reason: fmt.Sprintf("%q: version must be 1 or more", ref)}
		}
		r.Version = v
	default:
		if why := ValidAliasName(suffix); why != "" {
			return WorkflowRef{}, &FieldError{Field: field, Reason: fmt.Sprintf("%q: alias %s", ref, why)}
		}
		r.Alias = suffix
	}
	return r, nil
}

// cutAt splits "name@suffix".
func cutAt(ref string) (name, suffix string, found bool) {
	for i := 0; i < len(ref); i++ {
		if ref[i] == '@' {
			return ref[:i], ref[i+1:], true
		}
	}
	return ref, "", false
}
