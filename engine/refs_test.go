package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

func TestReferences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("inputs and the run output resolve from the run input and upstream outputs", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		e := startEngine(t, db, nil)
		_, _, err := e.RegisterDefinition(ctx, "default", []byte(`{"name":"refs",
			"output": {"report": "${b.output}", "url": "${workflow.input.url}"},
			"tasks": [
			{"id":"a","type":"noop","input":{"u":"${workflow.input.url}","n":"${workflow.input.nums.1}"}},
			{"id":"b","type":"noop","depends_on":["a"],"input":{"same":"${a.output.u}","text":"got ${a.output.u} and ${a.output.n}!","whole":"${a.output}"}}]}`))
		is.NoErr(err) // register
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "refs",
			Input: json.RawMessage(`{"url":"http://x/y","nums":[1,2,3]}`)})
		is.NoErr(err)
		run, err = e.Wait(ctx, "default", run.ID)
		is.NoErr(err)
		is.Equal(run.State, engine.RunCompleted) // completed
		var out struct {
			Report struct {
				Same, Text string
				Whole      struct {
					U string
					N int
				}
			}
			URL string
		}
		is.NoErr(json.Unmarshal(run.Output, &out))
		is.Equal(out.URL, "http://x/y")                    // the run output template resolved
		is.Equal(out.Report.Same, "http://x/y")            // a whole-string reference keeps the value
		is.Equal(out.Report.Text, "got http://x/y and 2!") // references inside text are replaced by their text
		is.Equal(out.Report.Whole.N, 2)                    // numbers stay numbers
		events, err := db.RunEvents(ctx, "default", run.ID, 0, 0)
		is.NoErr(err)
		recorded := false
		for _, ev := range events {
			if ev.Type == engine.EventTaskReady && ev.TaskID == "b" && bytes.Contains(ev.Data, []byte(`"same":"http://x/y"`)) {
				recorded = true
			}
		}
		is.True(recorded)                                      // the resolved input is in the task.ready event
		is.NoErr(engine.VerifyRun(ctx, db, "default", run.ID)) // and the projection replays
	})

	t.Run("a reference that does not resolve fails the task at once", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		e := startEngine(t, db, nil)
		_, _, err := e.RegisterDefinition(ctx, "default", []byte(`{"name":"miss","tasks":[
			{"id":"a","type":"noop","input":{"x":1}},
			{"id":"b","type":"noop","depends_on":["a"],"input":"${a.output.nope}","retry":{"max_attempts":5}},
			{"id":"c","type":"noop","depends_on":["b"]}]}`))
		is.NoErr(err)
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "miss"})
		is.NoErr(err)
		run, err = e.Wait(ctx, "default", run.ID)
		is.NoErr(err)
		is.Equal(run.State, engine.RunFailed) // failed
		_, tasks, err := db.LoadRun(ctx, "default", run.ID)
		is.NoErr(err)
		is.Equal(tasks[1].State, engine.TaskFailed)                          // b failed
		is.Equal(tasks[1].Attempt, 1)                                        // without retries: retrying cannot help
		is.Equal(tasks[1].Error.Code, engine.CodeBadReference)               // with the reason
		is.True(strings.Contains(tasks[1].Error.Message, `no field "nope"`)) // naming the missing field
		is.Equal(tasks[2].State, engine.TaskSkipped)                         // c skipped
		is.NoErr(engine.VerifyRun(ctx, db, "default", run.ID))
	})

	t.Run("references are checked when the definition is registered", func(t *testing.T) {
		t.Parallel()
		cases := []struct{ name, def, task, field, msg string }{
			{"a task that is not upstream", `{"name":"x","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","input":"${a.output}"}]}`,
				"b", "input", `task "a" is not upstream of "b"`},
			{"an unknown task", `{"name":"x","tasks":[{"id":"a","type":"noop","input":{"k":["${zz.output}"]}}]}`,
				"a", "input", `unknown task "zz"`},
			{"a malformed reference", `{"name":"x","tasks":[{"id":"a","type":"noop","input":"${workflow.output}"}]}`,
				"a", "input", "write ${workflow.input...}"},
			{"an unclosed reference", `{"name":"x","tasks":[{"id":"a","type":"noop","input":"${workflow.input"}]}`,
				"a", "input", "missing }"},
			{"an unknown task in the run output", `{"name":"x","output":"${q.output}","tasks":[{"id":"a","type":"noop"}]}`,
				"", "output", `unknown task "q"`},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				is := is.New(t)
				_, plan, problems := definition.CompileJSON([]byte(c.def), definition.ValidateOptions{})
				is.True(plan == nil)       // refused
				is.Equal(len(problems), 1) // one problem
				is.Equal(problems[0].Task, c.task)
				is.Equal(problems[0].Field, c.field)
				is.True(strings.Contains(problems[0].Message, c.msg)) // naming the reason
			})
		}
		is := is.New(t)
		_, plan, problems := definition.CompileJSON([]byte(`{"name":"ok","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]},
			{"id":"c","type":"noop","depends_on":["b"],"input":{"from_grandparent":"${a.output}"}}]}`), definition.ValidateOptions{})
		is.Equal(len(problems), 0) // an indirect ancestor may be referenced
		is.True(plan.Tasks[2].Refs)
	})
}
