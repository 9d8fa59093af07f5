package client_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
	"github.com/orchestrator/orchestrator/engine/definition"
)

func TestOrchestratorClient_Definitions(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t, client.WithTenant("defs"))
	ctx := ctxFor(t)

	t.Run("registers versions and reads them back", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		v1, err := c.RegisterDefinition(ctx, def("versioned", "noop"))
		is.NoErr(err)                   // register
		is.True(v1.Created)             // new
		is.Equal(v1.Name, "versioned")  // name
		is.Equal(v1.Version, 1)         // first version
		is.True(v1.Hash != "")          // content hash
		is.True(len(v1.Definition) > 0) // the stored JSON
		again, err := c.RegisterDefinition(ctx, def("versioned", "noop"))
		is.NoErr(err)                 // unchanged
		is.True(!again.Created)       // not stored again
		is.Equal(again.Version, 1)    // same version
		is.Equal(again.Hash, v1.Hash) // same hash
		v2, err := c.RegisterDefinition(ctx, def("versioned", typeHold))
		is.NoErr(err)           // changed
		is.True(v2.Created)     // stored
		is.Equal(v2.Version, 2) // next version

		got, err := c.GetDefinitionVersion(ctx, "versioned", 1)
		is.NoErr(err)                                             // version 1
		is.Equal(got.Version, 1)                                  // it
		is.True(strings.Contains(string(got.Definition), "noop")) // its JSON
		latest, err := c.GetDefinitionVersion(ctx, "versioned", 0)
		is.NoErr(err)               // latest
		is.Equal(latest.Version, 2) // version 2
		var d definition.Definition
		is.NoErr(json.Unmarshal(latest.Definition, &d)) // a definition
		is.Equal(d.Tasks[0].Type, typeHold)             // the changed one

		_, err = c.GetDefinitionVersion(ctx, "versioned", 3)
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.GetDefinitionVersion(ctx, "unknown", 0)
		wantProblem(t, err, http.StatusNotFound, wire.CodeNotFound)
		_, err = c.GetDefinitionVersion(ctx, "versioned", -1)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "version")
		_, err = c.Do(ctx, http.MethodGet, "/api/v1/tenants/defs/definitions/versioned/versions/first", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "version")
	})

	t.Run("lists the latest version of each", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		lc := env.client(t, client.WithTenant("listing"))
		defs, err := lc.ListDefinitions(ctx)
		is.NoErr(err)          // empty tenant
		is.Equal(len(defs), 0) // nothing
		mustRegister(t, lc, def("alpha", "noop"))
		mustRegister(t, lc, def("beta", "noop"))
		mustRegister(t, lc, def("beta", typeHold))
		defs, err = lc.ListDefinitions(ctx)
		is.NoErr(err) // list
		got := map[string]int{}
		for _, d := range defs {
			got[d.Name] = d.Version
			is.Equal(len(d.Definition), 0) // lists leave the JSON out
		}
		is.Equal(got, map[string]int{"alpha": 1, "beta": 2}) // latest of each
		_, err = lc.Do(ctx, http.MethodGet, "/api/v1/tenants/listing/definitions?page=2", nil, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidRequest, "page")
	})

	t.Run("refuses malformed and invalid definitions", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, err := c.RegisterDefinition(ctx, json.RawMessage(`{"name":`))
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidJSON)
		_, err = c.RegisterDefinition(ctx, nil)
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidJSON)
		_, err = c.RegisterDefinition(ctx, json.RawMessage(`{"name":"bad","colour":"red","tasks":[{"id":"a","type":"noop","timeout":5}]}`))
		e := wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidDefinition)
		fields := strings.Join(e.Fields(), ",")
		is.True(strings.Contains(fields, "colour"))  // the unknown field
		is.True(strings.Contains(fields, "timeout")) // the wrong type
	})
}

func TestOrchestratorClient_ValidateDAG(t *testing.T) {
	t.Parallel()
	env := newEnv(t, envOptions{})
	c := env.client(t)
	ctx := ctxFor(t)

	t.Run("a valid DAG has levels", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		v, err := c.ValidateDAG(ctx, json.RawMessage(`{"name":"d","tasks":[
			{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]},{"id":"c","type":"noop","depends_on":["a"]}]}`))
		is.NoErr(err)                                     // validate
		is.True(v.Valid)                                  // valid
		is.Equal(len(v.Errors), 0)                        // no problems
		is.Equal(v.Levels, [][]string{{"a"}, {"b", "c"}}) // levels
		defs, err := c.ListDefinitions(ctx)
		is.NoErr(err)          // list
		is.Equal(len(defs), 0) // nothing was stored
	})

	t.Run("the definition may come wrapped", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		v, err := c.ValidateDAG(ctx, json.RawMessage(`{"definition":{"name":"w","tasks":[{"id":"a","type":"noop"}]}}`))
		is.NoErr(err)                         // validate
		is.True(v.Valid)                      // valid
		is.Equal(v.Levels, [][]string{{"a"}}) // one level
	})

	t.Run("an invalid DAG lists every problem", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		v, err := c.ValidateDAG(ctx, json.RawMessage(`{"name":"cyc","tasks":[
			{"id":"a","type":"noop","depends_on":["c"]},{"id":"b","type":"noop","depends_on":["a"]},
			{"id":"c","type":"noop","depends_on":["b"]},{"id":"d","type":"noop","depends_on":["d"]}]}`))
		is.NoErr(err)              // 200 with the verdict
		is.True(!v.Valid)          // invalid
		is.Equal(len(v.Levels), 0) // no levels
		var msgs []string
		for _, p := range v.Errors {
			msgs = append(msgs, p.Task+": "+p.Field+": "+p.Message)
		}
		all := strings.Join(msgs, "\n")
		is.True(strings.Contains(all, "cycle: a -> c -> b -> a")) // the cycle spelled out
		is.True(strings.Contains(all, "d: depends_on"))           // the self-dependency
	})

	t.Run("malformed JSON is 400", func(t *testing.T) {
		t.Parallel()
		_, err := c.ValidateDAG(ctx, json.RawMessage(`{"name":"x",`))
		wantProblem(t, err, http.StatusBadRequest, wire.CodeInvalidJSON)
	})
}
