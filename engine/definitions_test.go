package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

func TestCompileStored(t *testing.T) {
	t.Parallel()
	t.Run("a stored definition compiles whatever handlers are registered", func(t *testing.T) {
		is := is.New(t)
		plan, err := engine.CompileStored([]byte(`{"name":"wf","tasks":[{"id":"a","type":"python"},
			{"id":"b","type":"noop","depends_on":["a"]}]}`))
		is.NoErr(err)                          // a type no handler has is still a stored definition
		is.Equal(plan.Def.Name, "wf")          // the plan is of this definition
		is.Equal(plan.Index["b"], 1)           // in topological order
		is.Equal(plan.Tasks[0].Type, "python") // with its types
	})
	for name, data := range map[string]string{
		"a field it does not know fails":    `{"name":"wf","tasks":[{"id":"a","type":"noop"}],"colour":"red"}`,
		"a cycle fails":                     `{"name":"wf","tasks":[{"id":"a","type":"noop","depends_on":["b"]},{"id":"b","type":"noop","depends_on":["a"]}]}`,
		"a document that is not JSON fails": `{"name":`,
	} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			plan, err := engine.CompileStored([]byte(data))
			var ve *definition.ValidationError
			is.True(errors.As(err, &ve))                                  // a validation error
			is.True(len(ve.Problems) > 0)                                 // naming its problems
			is.True(errors.Is(err, definition.ErrInvalidDefinition))      // that callers can test for
			is.True(strings.HasPrefix(err.Error(), "invalid definition")) // with no context added: callers add theirs
			is.True(plan == nil)                                          // and no plan
		})
	}
}
