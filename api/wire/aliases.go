package wire

import (
	"encoding/json"
	"time"
)

// AliasTarget is one version an alias points at and its share of the runs
// in percent; the shares of an alias sum to 100.
type AliasTarget struct {
	Version int `json:"version"`
	Weight  int `json:"weight"`
}

// RollbackPolicy moves a split alias back to its older version when, over
// the last Window finished runs of each version started through the alias
// since it was set, the newer version's failure rate exceeds the older's by
// more than Margin, once the newer has MinRuns of them. Defaults: window 20,
// margin 0.2, min_runs the window.
type RollbackPolicy struct {
	Window  int     `json:"window,omitempty"`
	Margin  float64 `json:"margin,omitempty"`
	MinRuns int     `json:"min_runs,omitempty"`
}

// VersionOutcomes are a version's figures as an automatic rollback saw them.
type VersionOutcomes struct {
	Version     int     `json:"version"`
	Runs        int     `json:"runs"`
	Failed      int     `json:"failed"`
	FailureRate float64 `json:"failure_rate"`
}

// RollbackRecord is the last automatic rollback of an alias.
type RollbackRecord struct {
	At     time.Time       `json:"at"`
	From   []AliasTarget   `json:"from"`
	Newer  VersionOutcomes `json:"newer"`
	Older  VersionOutcomes `json:"older"`
	Margin float64         `json:"margin"`
	Window int             `json:"window"`
}

// SetAliasRequest is the body of PUT .../definitions/{name}/aliases/{alias}:
// either Version alone, or Versions (one, or two with weights summing to
// 100). Revision, when given, makes the change a compare-and-set (409
// conflict unless the alias is at it).
type SetAliasRequest struct {
	Version   int             `json:"version,omitempty"`
	Versions  []AliasTarget   `json:"versions,omitempty"`
	StickyKey string          `json:"sticky_key,omitempty"`
	Rollback  *RollbackPolicy `json:"rollback,omitempty"`
	Revision  int64           `json:"revision,omitempty"`
}

// Alias is an alias of a definition name.
type Alias struct {
	Name       string          `json:"name"`
	Alias      string          `json:"alias"`
	Versions   []AliasTarget   `json:"versions"`
	StickyKey  string          `json:"sticky_key,omitempty"`
	Rollback   *RollbackPolicy `json:"rollback,omitempty"`
	RolledBack *RollbackRecord `json:"rolled_back,omitempty"`
	Revision   int64           `json:"revision"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	UpdatedBy  string          `json:"updated_by"`
}

// AliasesPage lists the aliases of a definition name.
type AliasesPage struct {
	Aliases []Alias `json:"aliases"`
}

// VersionsPage lists versions of a definition name, oldest first, without
// their JSON; NextAfter, when set, is the after of the next page.
type VersionsPage struct {
	Versions  []DefinitionVersion `json:"versions"`
	NextAfter int                 `json:"next_after,omitempty"`
}

// FieldChange is one field that differs between two versions: its JSON in
// each, absent where the field is not set.
type FieldChange struct {
	Field string          `json:"field"`
	From  json.RawMessage `json:"from,omitempty"`
	To    json.RawMessage `json:"to,omitempty"`
}

// TaskChange is a task of both versions whose fields differ.
type TaskChange struct {
	ID     string        `json:"id"`
	Fields []FieldChange `json:"fields"`
}

// DefinitionDiff answers GET .../definitions/{name}/diff?from=&to=.
type DefinitionDiff struct {
	Name         string        `json:"name"`
	From         int           `json:"from"`
	To           int           `json:"to"`
	FromHash     string        `json:"from_hash"`
	ToHash       string        `json:"to_hash"`
	Same         bool          `json:"same"`
	Workflow     []FieldChange `json:"workflow"`
	TasksAdded   []string      `json:"tasks_added"`
	TasksRemoved []string      `json:"tasks_removed"`
	TasksChanged []TaskChange  `json:"tasks_changed"`
}
