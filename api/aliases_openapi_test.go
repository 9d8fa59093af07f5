package api

import (
	"reflect"

	"github.com/orchestrator/orchestrator/api/wire"
)

// The wire types of versions and aliases, checked against their schemas by
// TestOpenAPISchemasMatchWireTypes.
func init() {
	wireSchemas = append(wireSchemas, []struct {
		schema  string
		typ     reflect.Type
		request bool
	}{
		{"AliasTarget", reflect.TypeFor[wire.AliasTarget](), false},
		{"RollbackPolicy", reflect.TypeFor[wire.RollbackPolicy](), true},
		{"VersionOutcomes", reflect.TypeFor[wire.VersionOutcomes](), false},
		{"RollbackRecord", reflect.TypeFor[wire.RollbackRecord](), false},
		{"SetAliasRequest", reflect.TypeFor[wire.SetAliasRequest](), true},
		{"Alias", reflect.TypeFor[wire.Alias](), false},
		{"AliasesPage", reflect.TypeFor[wire.AliasesPage](), false},
		{"VersionsPage", reflect.TypeFor[wire.VersionsPage](), false},
		{"FieldChange", reflect.TypeFor[wire.FieldChange](), false},
		{"TaskChange", reflect.TypeFor[wire.TaskChange](), false},
		{"DefinitionDiff", reflect.TypeFor[wire.DefinitionDiff](), false},
	}...)
}
