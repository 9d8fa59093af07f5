package engine_test

import (
	"context"
	"errors"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

func TestVersions_ListAndDiff(t *testing.T) {
	is := is.New(t)
	db := openTestStore(t)
	e := startEngine(t, db, nil)
	ctx := context.Background()
	v1 := `{"name":"wf","timeout":"10m","tasks":[
		{"id":"a","type":"sleep","config":{"duration":"1s"},"input":{"k":"${workflow.input.k}"}},
		{"id":"b","type":"noop","depends_on":["a"]},
		{"id":"c","type":"noop","depends_on":["a","b"],"priority":1}]}`
	v2 := `{"name":"wf","timeout":"5m","max_parallel":2,"tasks":[
		{"id":"a","type":"noop","input":{"k":"${workflow.input.k}"}},
		{"id":"b","type":"noop","depends_on":["a"]},
		{"id":"c","type":"noop","depends_on":["b","a"],"priority":1,"retry":{"max_attempts":3}},
		{"id":"d","type":"noop","timeout":"1s"}]}`
	for _, d := range []string{v1, v2} {
		_, _, err := e.RegisterDefinition(ctx, tenant, []byte(d))
		is.NoErr(err)
	}
	vs, next, err := e.ListVersions(ctx, tenant, "wf", 0, 0)
	is.NoErr(err)
	is.Equal(next, 0)                  // one page
	is.Equal(len(vs), 2)               // both versions
	is.Equal(vs[0].Version, 1)         // oldest first
	is.True(len(vs[0].Hash) == 64)     // with its hash
	is.True(vs[0].Hash != vs[1].Hash)  // which differ
	is.True(!vs[1].CreatedAt.IsZero()) // and its time
	is.Equal(len(vs[0].Definition), 0) // without the JSON
	vs, next, err = e.ListVersions(ctx, tenant, "wf", 0, 1)
	is.NoErr(err)
	is.Equal(len(vs), 1) // a page of one
	is.Equal(next, 1)    // the next starts after version 1
	vs, _, err = e.ListVersions(ctx, tenant, "wf", 1, 10)
	is.NoErr(err)
	is.Equal(len(vs), 1) // after version 1: the next page
	_, _, err = e.ListVersions(ctx, tenant, "nope", 0, 0)
	is.True(errors.Is(err, engine.ErrNotFound)) // an unknown name

	d, err := e.DiffVersions(ctx, tenant, "wf", 1, 2)
	is.NoErr(err)
	is.Equal(d.Same, false)
	is.Equal(d.TasksAdded, []string{"d"}) // d is new
	is.Equal(len(d.TasksRemoved), 0)      // nothing removed
	fields := map[string][]string{}
	for _, tc := range d.TasksChanged {
		for _, f := range tc.Fields {
			fields[tc.ID] = append(fields[tc.ID], f.Field)
		}
	}
	is.Equal(fields["a"], []string{"type", "config"}) // a's type and config changed
	is.Equal(fields["c"], []string{"retry"})          // c's retry; depends_on is the same set
	is.Equal(len(fields["b"]), 0)                     // b is unchanged
	var wf []string
	for _, f := range d.Workflow {
		wf = append(wf, f.Field)
	}
	is.Equal(wf, []string{"timeout", "max_parallel"}) // the workflow's fields
	is.Equal(string(d.Workflow[0].From), `"10m"`)     // from
	is.Equal(string(d.Workflow[0].To), `"5m"`)        // to
	is.Equal(d.Workflow[1].From == nil, true)         // max_parallel was not set

	back, err := e.DiffVersions(ctx, tenant, "wf", 2, 1)
	is.NoErr(err)
	is.Equal(back.TasksRemoved, []string{"d"}) // the other way round d is removed
	same, err := e.DiffVersions(ctx, tenant, "wf", 2, 2)
	is.NoErr(err)
	is.True(same.Same) // a version is the same as itself
	_, err = e.DiffVersions(ctx, tenant, "wf", 1, 9)
	var fe *engine.FieldError
	is.True(errors.As(err, &fe) && fe.Field == "to") // a missing version names the field
}
