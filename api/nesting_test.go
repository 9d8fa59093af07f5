package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
)

// TestAPI_Nesting checks that JSON nested deeper than the engine accepts is
// refused as invalid, naming the field, instead of reaching the database,
// which refuses it with a conflict that says "try again" forever.
func TestAPI_Nesting(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n) }

	t.Run("a definition nested 998 levels deep is invalid, naming the task and field", func(t *testing.T) {
		is := is.New(t)
		def := `{"name":"deep","tasks":[{"id":"t","type":"noop","input":` + deep(998) + `}]}`
		var v struct {
			Valid  bool
			Errors []struct{ Task, Field, Message string }
		}
		decodeJSON(t, ts.postJSON(t, "/api/v1/dag/validate", def), http.StatusOK, &v)
		is.True(!v.Valid)                    // validation says no
		is.Equal(len(v.Errors), 1)           // with one problem
		is.Equal(v.Errors[0].Task, "t")      // at the task
		is.Equal(v.Errors[0].Field, "input") // and field
		p := problemOf(t, ts.postJSON(t, "/v1/workflows", def), http.StatusBadRequest, wire.CodeInvalidDefinition)
		is.Equal(p.Errors[0].Field, "input")      // registering is refused the same way
		is.Equal(ts.countRows(t, "workflows"), 0) // and stores nothing
	})

	t.Run("a run input nested 998 levels deep is refused, naming input", func(t *testing.T) {
		is := is.New(t)
		ts.register(t, `{"name":"shallow","tasks":[{"id":"t","type":"noop"}]}`)
		for _, path := range []string{"/v1/run", "/api/v1/tenants/default/workflows"} {
			r := ts.postJSON(t, path, `{"workflow":"shallow","input":`+deep(998)+`}`)
			is.Equal(r.Status, http.StatusBadRequest)          // 400
			is.True(strings.Contains(string(r.Body), `input`)) // naming the field
			is.True(strings.Contains(string(r.Body), "levels deep"))
		}
		is.Equal(ts.countRows(t, "runs"), 0) // no run was started
	})
}
