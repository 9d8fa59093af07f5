package wire

import (
	"encoding/json"
	"time"
)

// DefinitionVersion is a stored version of a definition.
type DefinitionVersion struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
	// Definition is the stored JSON; left out in lists.
	Definition json.RawMessage `json:"definition,omitempty"`
	// CreatedBy is who registered the version (the API key's actor),
	// OnBehalf whom they acted for, Policy the decision that allowed it;
	// absent for versions stored before they were recorded and in lists.
	CreatedBy string          `json:"created_by,omitempty"`
	OnBehalf  string          `json:"on_behalf,omitempty"`
	Policy    *PolicyDecision `json:"policy,omitempty"`
}

// Registration answers a registration (POST .../definitions, POST
// /v1/workflows): the version stored, and whether this call stored it.
type Registration struct {
	DefinitionVersion
	// Created is true when the call stored a new version (201), false when
	// the definition was unchanged and kept its version (200).
	Created bool `json:"created"`
}

// DefinitionsPage lists a tenant's definitions, the latest version of each,
// without their JSON: GET .../definitions.
type DefinitionsPage struct {
	Definitions []DefinitionVersion `json:"definitions"`
}

// Validation is the verdict of POST /api/v1/dag/validate.
type Validation struct {
	Valid  bool         `json:"valid"`
	Errors []FieldError `json:"errors"`
	// Levels are the topological levels of a valid DAG, ids sorted within
	// a level.
	Levels [][]string `json:"levels"`
}
