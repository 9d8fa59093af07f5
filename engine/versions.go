package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Versions of a definition name and the difference between two of them.

// MaxVersionsPage bounds a page of ListVersions.
const MaxVersionsPage = 1000

// ListVersions returns up to limit versions of a definition name after
// version after (limit 0 or over MaxVersionsPage: MaxVersionsPage), oldest
// first, with their hashes and times but without their JSON, and the after
// of the next page (0 on the last). Errors: ErrNotFound (no version of that
// name at all), ErrAliasesUnsupported.
func (e *Engine) ListVersions(ctx context.Context, tenantID, name string, after, limit int) (versions []StoredDefinition, nextAfter int, err error) {
	as, err := e.aliasStore()
	if err != nil {
		return nil, 0, err
	}
	if limit <= 0 || limit > MaxVersionsPage {
		limit = MaxVersionsPage
	}
	out, err := as.ListDefinitionVersions(ctx, tenantID, name, after, limit+1)
	if err != nil {
		return nil, 0, err
	}
	if len(out) == 0 {
		if _, err := e.store.GetDefinition(ctx, tenantID, name, 0); err != nil {
			return nil, 0, fmt.Errorf("definition %s: %w", name, err)
		}
	}
	if len(out) > limit {
		out = out[:limit]
		nextAfter = out[limit-1].Version
	}
	return out, nextAfter, nil
}

// FieldChange is one field that differs between two versions, with its
// value in each (absent: the field is not set there).
type FieldChange struct {
	Field string          `json:"field"`
	From  json.RawMessage `json:"from,omitempty"`
	To    json.RawMessage `json:"to,omitempty"`
}

// TaskChange is a task present in both versions whose fields differ.
type TaskChange struct {
	ID     string        `json:"id"`
	Fields []FieldChange `json:"fields"`
}

// DefinitionDiff is what changed from one version of a definition to
// another: workflow-level fields (description, timeout, max_parallel,
// output), tasks added and removed (by id, in the order of the version that
// has them), and tasks in both whose fields changed (type, depends_on as a
// set, priority, retry, timeout, input, config), in the order of To.
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

// DiffVersions compares two stored versions of a definition. Errors:
// *FieldError (a version that does not exist: field from or to).
func (e *Engine) DiffVersions(ctx context.Context, tenantID, name string, from, to int) (*DefinitionDiff, error) {
	var defs [2]*definition.Definition
	var hashes [2]string
	for i, v := range []int{from, to} {
		field := [2]string{"from", "to"}[i]
		if v < 1 {
			return nil, &FieldError{Field: field, Reason: "must be a version number (1 or more)"}
		}
		sd, err := e.store.GetDefinition(ctx, tenantID, name, v)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, &FieldError{Field: field, Reason: fmt.Sprintf("definition %s has no version %d", name, v)}
			}
			return nil, err
		}
		var d definition.Definition
		if err := json.Unmarshal(sd.Definition, &d); err != nil {
			return nil, fmt.Errorf("definition %s v%d: %w", name, v, err)
		}
		defs[i], hashes[i] = &d, sd.Hash
	}
	return diffDefinitions(name, from, to, hashes, defs[0], defs[1]), nil
}

func diffDefinitions(name string, from, to int, hashes [2]string, a, b *definition.Definition) *DefinitionDiff {
	d := &DefinitionDiff{Name: name, From: from, To: to, FromHash: hashes[0], ToHash: hashes[1],
		Workflow: []FieldChange{}, TasksAdded: []string{}, TasksRemoved: []string{}, TasksChanged: []TaskChange{}}
	d.Workflow = compareFields(d.Workflow, [][3]any{
		{"description", a.Description, b.Description},
		{"timeout", a.Timeout, b.Timeout},
		{"max_parallel", a.MaxParallel, b.MaxParallel},
		{"output", a.Output, b.Output},
	})
	old := map[string]*definition.TaskDef{}
	for i := range a.Tasks {
		old[a.Tasks[i].ID] = &a.Tasks[i]
	}
	seen := map[string]bool{}
	for i := range b.Tasks {
		t := &b.Tasks[i]
		seen[t.ID] = true
		o, ok := old[t.ID]
		if !ok {
			d.TasksAdded = append(d.TasksAdded, t.ID)
			continue
		}
		fields := compareFields(nil, [][3]any{
			{"type", o.Type, t.Type},
			{"depends_on", sortedIDs(o.DependsOn), sortedIDs(t.DependsOn)},
			{"priority", o.Priority, t.Priority},
			{"retry", o.Retry, t.Retry},
			{"timeout", o.Timeout, t.Timeout},
			{"input", o.Input, t.Input},
			{"config", o.Config, t.Config},
		})
		if len(fields) > 0 {
			d.TasksChanged = append(d.TasksChanged, TaskChange{ID: t.ID, Fields: fields})
		}
	}
	for _, t := range a.Tasks {
		if !seen[t.ID] {
			d.TasksRemoved = append(d.TasksRemoved, t.ID)
		}
	}
	d.Same = len(d.Workflow) == 0 && len(d.TasksAdded) == 0 && len(d.TasksRemoved) == 0 && len(d.TasksChanged) == 0
	return d
}

func sortedIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// compareFields appends a change for each {field, from, to} whose values
// differ as JSON (objects compared whatever their key order); a zero value
// is an absent field.
func compareFields(out []FieldChange, fields [][3]any) []FieldChange {
	for _, f := range fields {
		x, y := canonicalJSON(f[1]), canonicalJSON(f[2])
		if !bytes.Equal(x, y) {
			out = append(out, FieldChange{Field: f[0].(string), From: x, To: y})
		}
	}
	return out
}

// canonicalJSON encodes v with object keys sorted; nil for a zero value
// (an empty string, 0, null, an empty list).
func canonicalJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	x, err := decodeNumbers(b)
	if err != nil {
		return nil
	}
	switch y := x.(type) {
	case nil:
		return nil
	case string:
		if y == "" {
			return nil
		}
	case json.Number:
		if y == "0" {
			return nil
		}
	case []any:
		if len(y) == 0 {
			return nil
		}
	}
	out, err := json.Marshal(x) // maps encode with sorted keys
	if err != nil {
		return nil
	}
	return out
}
