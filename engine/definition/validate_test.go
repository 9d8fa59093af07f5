package definition

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// wf returns a definition named "wf" with the given task objects.
func wf(tasks ...string) string {
	return `{"name":"wf","tasks":[` + strings.Join(tasks, ",") + `]}`
}

// problemsString prints problems one a line for failure messages.
func problemsString(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\n  %q %q %q", p.Task, p.Field, p.Message)
	}
	return b.String()
}

// chainDef returns a definition of n tasks t00000 <- t00001 <- ... each depending on the previous one.
func chainDef(n int) *Definition {
	def := &Definition{Name: "chain", Tasks: make([]TaskDef, n)}
	for i := range n {
		def.Tasks[i] = TaskDef{ID: fmt.Sprintf("t%05d", i), Type: TypeNoop}
		if i > 0 {
			def.Tasks[i].DependsOn = []string{def.Tasks[i-1].ID}
		}
	}
	return def
}

func TestCompileJSON_Rules(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxIDLength+1)
	onlyHTTP := ValidateOptions{KnownTypeFunc: func(typ string) bool { return typ == "http" }}
	tests := []struct {
		name  string
		doc   string
		opts  ValidateOptions
		task  string
		field string
		msg   string
	}{
		// The definition as a whole.
		{"name is required", `{"tasks":[{"id":"a","type":"noop"}]}`, ValidateOptions{},
			"", "name", "required"},
		{"name must be well formed", `{"name":"my flow","tasks":[{"id":"a","type":"noop"}]}`, ValidateOptions{},
			"", "name", `must match [A-Za-z0-9_.-]{1,64}, got "my flow"`},
		{"name must be at most 64 bytes", `{"name":"` + long + `","tasks":[{"id":"a","type":"noop"}]}`, ValidateOptions{},
			"", "name", "must match [A-Za-z0-9_.-]{1,64}"},
		{"tasks are required", `{"name":"wf"}`, ValidateOptions{},
			"", "tasks", "at least one task is required"},
		{"tasks must not be empty", `{"name":"wf","tasks":[]}`, ValidateOptions{},
			"", "tasks", "at least one task is required"},
		{"definition timeout must parse", `{"name":"wf","timeout":"abc","tasks":[{"id":"a","type":"noop"}]}`, ValidateOptions{},
			"", "timeout", `invalid duration "abc": `},
		{"definition timeout must be positive", `{"name":"wf","timeout":"0s","tasks":[{"id":"a","type":"noop"}]}`, ValidateOptions{},
			"", "timeout", `must be positive, got "0s"`},
		{"definition timeout has a ceiling", `{"name":"wf","timeout":"9000h","tasks":[{"id":"a","type":"noop"}]}`, ValidateOptions{},
			"", "timeout", `must be at most 8784h0m0s, got "9000h"`},
		{"max_parallel must not be negative", `{"name":"wf","max_parallel":-1,"tasks":[{"id":"a","type":"noop"}]}`, ValidateOptions{},
			"", "max_parallel", "must be between 0 and 10000 (0 means no cap), got -1"},
		{"max_parallel has a ceiling", `{"name":"wf","max_parallel":10001,"tasks":[{"id":"a","type":"noop"}]}`, ValidateOptions{},
			"", "max_parallel", "got 10001"},

		// Ids.
		{"id is required", wf(`{"type":"noop"}`), ValidateOptions{},
			"tasks[0]", "id", "required"},
		{"empty id is named by position", wf(`{"id":"a","type":"noop"}`, `{"id":"","type":"noop"}`), ValidateOptions{},
			"tasks[1]", "id", "required"},
		{"id must be well formed", wf(`{"id":"a/b","type":"noop"}`), ValidateOptions{},
			"tasks[0]", "id", `must match [A-Za-z0-9_.-]{1,64}, got "a/b"`},
		{"id must be at most 64 bytes", wf(`{"id":"` + long + `","type":"noop"}`), ValidateOptions{},
			"tasks[0]", "id", "must match [A-Za-z0-9_.-]{1,64}"},
		{"non-ascii id is refused", wf(`{"id":"tâche","type":"noop"}`), ValidateOptions{},
			"tasks[0]", "id", `got "tâche"`},
		{"ids must be unique", wf(`{"id":"a","type":"noop"}`, `{"id":"b","type":"noop"}`, `{"id":"a","type":"noop"}`), ValidateOptions{},
			"a", "id", `duplicate task id "a" (first at tasks[0])`},

		// Types.
		{"type is required", wf(`{"id":"a"}`), ValidateOptions{},
			"a", "type", "required"},
		{"type must be well formed", wf(`{"id":"a","type":"no op"}`), ValidateOptions{},
			"a", "type", `must match [A-Za-z0-9_.-]{1,64}, got "no op"`},
		{"type must have a handler", wf(`{"id":"a","type":"foo"}`), onlyHTTP,
			"a", "type", `unknown task type "foo": no handler is registered for it`},

		// Dependencies.
		{"dependency must exist", wf(`{"id":"a","type":"noop"}`, `{"id":"b","type":"noop","depends_on":["a","x"]}`), ValidateOptions{},
			"b", "depends_on", `unknown task "x"`},
		{"task must not depend on itself", wf(`{"id":"a","type":"noop","depends_on":["a"]}`), ValidateOptions{},
			"a", "depends_on", "task depends on itself"},
		{"dependency must not repeat", wf(`{"id":"a","type":"noop"}`, `{"id":"b","type":"noop","depends_on":["a","a"]}`), ValidateOptions{},
			"b", "depends_on", `duplicate dependency "a"`},
		{"dependencies must not form a cycle", wf(`{"id":"b","type":"noop","depends_on":["a"]}`, `{"id":"a","type":"noop","depends_on":["b"]}`), ValidateOptions{},
			"a", "depends_on", "cycle: a -> b -> a"},

		// Priority.
		{"priority has a ceiling", wf(`{"id":"a","type":"noop","priority":1000001}`), ValidateOptions{},
			"a", "priority", "must be between -1000000 and 1000000, got 1000001"},
		{"priority has a floor", wf(`{"id":"a","type":"noop","priority":-1000001}`), ValidateOptions{},
			"a", "priority", "got -1000001"},

		// Task timeout.
		{"task timeout must parse", wf(`{"id":"a","type":"noop","timeout":"5x"}`), ValidateOptions{},
			"a", "timeout", `invalid duration "5x": unknown unit`},
		{"task timeout needs a unit", wf(`{"id":"a","type":"noop","timeout":"5"}`), ValidateOptions{},
			"a", "timeout", `invalid duration "5": missing unit`},
		{"task timeout must be positive", wf(`{"id":"a","type":"noop","timeout":"-1s"}`), ValidateOptions{},
			"a", "timeout", `must be positive, got "-1s"`},
		{"task timeout has a ceiling", wf(`{"id":"a","type":"noop","timeout":"8785h"}`), ValidateOptions{},
			"a", "timeout", "must be at most 8784h0m0s"},

		// Retry.
		{"max_attempts must not be negative", wf(`{"id":"a","type":"noop","retry":{"max_attempts":-1}}`), ValidateOptions{},
			"a", "retry.max_attempts", "must be between 1 and 1000 (0 means the default of 1), got -1"},
		{"max_attempts has a ceiling", wf(`{"id":"a","type":"noop","retry":{"max_attempts":1001}}`), ValidateOptions{},
			"a", "retry.max_attempts", "got 1001"},
		{"initial_interval must parse", wf(`{"id":"a","type":"noop","retry":{"initial_interval":"soon"}}`), ValidateOptions{},
			"a", "retry.initial_interval", `invalid duration "soon"`},
		{"initial_interval has a ceiling", wf(`{"id":"a","type":"noop","retry":{"initial_interval":"9000h"}}`), ValidateOptions{},
			"a", "retry.initial_interval", "must be at most"},
		{"max_interval must be positive", wf(`{"id":"a","type":"noop","retry":{"max_interval":"0s"}}`), ValidateOptions{},
			"a", "retry.max_interval", "must be positive"},
		{"max_interval must not be below initial_interval", wf(`{"id":"a","type":"noop","retry":{"initial_interval":"10s","max_interval":"1s"}}`), ValidateOptions{},
			"a", "retry.max_interval", "must not be less than initial_interval (1s < 10s)"},
		{"backoff has a floor", wf(`{"id":"a","type":"noop","retry":{"backoff":0.5}}`), ValidateOptions{},
			"a", "retry.backoff", "must be between 1 and 100 (0 means the default of 2), got 0.5"},
		{"backoff has a ceiling", wf(`{"id":"a","type":"noop","retry":{"backoff":101}}`), ValidateOptions{},
			"a", "retry.backoff", "got 101"},
		{"jitter must not be negative", wf(`{"id":"a","type":"noop","retry":{"jitter":-0.1}}`), ValidateOptions{},
			"a", "retry.jitter", "must be between 0 and 1, got -0.1"},
		{"jitter has a ceiling", wf(`{"id":"a","type":"noop","retry":{"jitter":1.5}}`), ValidateOptions{},
			"a", "retry.jitter", "got 1.5"},

		// Config.
		{"config must be an object", wf(`{"id":"a","type":"http","config":[1]}`), ValidateOptions{},
			"a", "config", "must be a JSON object or null, got array"},
		{"sleep needs a config", wf(`{"id":"a","type":"sleep"}`), ValidateOptions{},
			"a", "config.duration", `required for type "sleep"`},
		{"sleep needs a duration", wf(`{"id":"a","type":"sleep","config":{}}`), ValidateOptions{},
			"a", "config.duration", `required for type "sleep"`},
		{"sleep duration must parse", wf(`{"id":"a","type":"sleep","config":{"duration":"soon"}}`), ValidateOptions{},
			"a", "config.duration", `invalid duration "soon"`},
		{"sleep duration must be positive", wf(`{"id":"a","type":"sleep","config":{"duration":"0s"}}`), ValidateOptions{},
			"a", "config.duration", "must be positive"},
		{"sleep duration has a ceiling", wf(`{"id":"a","type":"sleep","config":{"duration":"9000h"}}`), ValidateOptions{},
			"a", "config.duration", "must be at most"},
		{"sleep duration must be a string", wf(`{"id":"a","type":"sleep","config":{"duration":5}}`), ValidateOptions{},
			"a", "config.duration", "must be a string, got number"},
		{"sleep config has no other field", wf(`{"id":"a","type":"sleep","config":{"duration":"1s","extra":1}}`), ValidateOptions{},
			"a", "config.extra", `unknown field "extra"`},
		{"noop config has no field", wf(`{"id":"a","type":"noop","config":{"x":1}}`), ValidateOptions{},
			"a", "config.x", `unknown field "x"`},

		// The document.
		{"document must be a JSON object", `[1,2]`, ValidateOptions{},
			"", "", "definition must be a JSON object, got array"},
		{"document must be JSON", `{"name":`, ValidateOptions{},
			"", "", "invalid JSON"},
		{"document must not be empty", ``, ValidateOptions{},
			"", "", "empty document"},
		{"document must not be over the size limit", `{"name":"wf","description":"` + strings.Repeat("x", MaxDefinitionBytes) + `"}`, ValidateOptions{},
			"", "", "over the limit of 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			_, plan, problems := CompileJSON([]byte(tt.doc), tt.opts)
			is.True(plan == nil) // no plan for an invalid definition
			if len(problems) != 1 {
				t.Log(problemsString(problems))
			}
			is.Equal(len(problems), 1)            // exactly the one problem of the rule
			is.Equal(problems[0].Task, tt.task)   // problem names the task
			is.Equal(problems[0].Field, tt.field) // problem names the field
			if !strings.Contains(problems[0].Message, tt.msg) {
				t.Logf("message %q lacks %q", problems[0].Message, tt.msg)
			}
			is.True(strings.Contains(problems[0].Message, tt.msg)) // message is specific
		})
	}
}

func TestCompileJSON_Accepts(t *testing.T) {
	t.Parallel()
	onlyHTTP := ValidateOptions{KnownTypeFunc: func(typ string) bool { return typ == "http" }}
	tests := []struct {
		name string
		doc  string
		opts ValidateOptions
	}{
		{"a minimal definition", wf(`{"id":"a","type":"noop"}`), ValidateOptions{}},
		{"any well-formed type without KnownTypeFunc", wf(`{"id":"a","type":"anything.v2"}`), ValidateOptions{}},
		{"built-in types whatever KnownTypeFunc says", wf(`{"id":"a","type":"noop"}`, `{"id":"b","type":"sleep","config":{"duration":"1s"}}`),
			ValidateOptions{KnownTypeFunc: func(string) bool { return false }}},
		{"a type KnownTypeFunc knows", wf(`{"id":"a","type":"http","config":{"url":"x","nested":{"deep":[1]}}}`), onlyHTTP},
		{"any input", wf(`{"id":"a","type":"noop","input":[1,"two",{"three":null}]}`, `{"id":"b","type":"noop","input":"s"}`), ValidateOptions{}},
		{"a null config and an empty noop config", wf(`{"id":"a","type":"http","config":null}`, `{"id":"b","type":"noop","config":{}}`), ValidateOptions{}},
		{"null for optional fields", wf(`{"id":"a","type":"noop","depends_on":null,"retry":null,"priority":null,"timeout":null,"input":null}`), ValidateOptions{}},
		{"limits themselves", `{"name":"` + strings.Repeat("n", 64) + `","timeout":"8784h","max_parallel":10000,"tasks":[` +
			`{"id":"` + strings.Repeat("i", 64) + `","type":"noop","priority":-1000000,"timeout":"1ns",` +
			`"retry":{"max_attempts":1000,"initial_interval":"8784h","max_interval":"8784h","backoff":100,"jitter":1}}]}`, ValidateOptions{}},
		{"any output", `{"name":"wf","output":{"x":"{{a}}"},"tasks":[{"id":"a","type":"noop"}]}`, ValidateOptions{}},
		{"surrounding whitespace", " \n\t" + wf(`{"id":"a","type":"noop"}`) + "\n\r ", ValidateOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			def, plan, problems := CompileJSON([]byte(tt.doc), tt.opts)
			if len(problems) > 0 {
				t.Log(problemsString(problems))
			}
			is.Equal(len(problems), 0) // a valid definition has no problem
			is.True(def != nil)        // the definition is returned
			is.True(plan != nil)       // a valid definition compiles
		})
	}
}

func TestCompileJSON_ReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	doc := `{"name":"bad name","timeout":"never","max_parallel":-2,"extra":true,"tasks":[
		{"type":"noop"},
		{"id":"a","type":"noop","priority":"high"},
		{"id":"a","type":"sleep"},
		{"id":"b","type":"ghost","depends_on":["a","missing","b","a"],"retry":{"max_attempts":0,"jitter":2,"bogus":1}},
		{"id":"c","type":"noop","depends_on":["d"]},
		{"id":"d","type":"noop","depends_on":["c"],"timeout":"1y"}
	]}`
	opts := ValidateOptions{KnownTypeFunc: func(string) bool { return false }}
	_, plan, problems := CompileJSON([]byte(doc), opts)
	want := []Problem{
		{Task: "", Field: "extra", Message: `unknown field "extra"`},
		{Task: "", Field: "name", Message: `must match [A-Za-z0-9_.-]{1,64}, got "bad name"`},
		{Task: "", Field: "timeout", Message: `invalid duration "never": want a Go duration such as "90s" or "1h30m"`},
		{Task: "", Field: "max_parallel", Message: "must be between 0 and 10000 (0 means no cap), got -2"},
		{Task: "tasks[0]", Field: "id", Message: "required"},
		{Task: "a", Field: "priority", Message: "must be an integer, got string"},
		{Task: "a", Field: "id", Message: `duplicate task id "a" (first at tasks[1])`},
		{Task: "a", Field: "config.duration", Message: `required for type "sleep", e.g. {"duration":"5s"}`},
		{Task: "b", Field: "retry.bogus", Message: `unknown field "bogus"`},
		{Task: "b", Field: "type", Message: `unknown task type "ghost": no handler is registered for it`},
		{Task: "b", Field: "depends_on", Message: `unknown task "missing"`},
		{Task: "b", Field: "depends_on", Message: "task depends on itself"},
		{Task: "b", Field: "depends_on", Message: `duplicate dependency "a"`},
		{Task: "b", Field: "retry.jitter", Message: "must be between 0 and 1, got 2"},
		{Task: "d", Field: "timeout", Message: `invalid duration "1y": unknown unit: use ns, us, ms, s, m or h`},
		{Task: "c", Field: "depends_on", Message: "cycle: c -> d -> c"},
	}
	is.True(plan == nil) // no plan with problems
	if len(problems) != len(want) {
		t.Log(problemsString(problems))
	}
	is.Equal(problems, want) // every problem, definition first, then tasks in order, then cycles
}

func TestCompile_Cycles(t *testing.T) {
	t.Parallel()
	compile := func(t *testing.T, tasks ...string) []Problem {
		t.Helper()
		_, _, problems := CompileJSON([]byte(wf(tasks...)), ValidateOptions{})
		return problems
	}

	t.Run("a three-task cycle is spelled from its smallest id along depends_on", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		problems := compile(t,
			`{"id":"c","type":"noop","depends_on":["a"]}`,
			`{"id":"b","type":"noop","depends_on":["c"]}`,
			`{"id":"a","type":"noop","depends_on":["b"]}`)
		is.Equal(problems, []Problem{{Task: "a", Field: "depends_on", Message: "cycle: a -> b -> c -> a"}}) // a depends on b, b on c, c on a
	})

	t.Run("tasks that only hang off a cycle are not part of it", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		problems := compile(t,
			`{"id":"root","type":"noop"}`,
			`{"id":"x","type":"noop","depends_on":["root","y"]}`,
			`{"id":"y","type":"noop","depends_on":["x"]}`,
			`{"id":"leaf","type":"noop","depends_on":["x"]}`)
		is.Equal(problems, []Problem{{Task: "x", Field: "depends_on", Message: "cycle: x -> y -> x"}}) // only the cycle itself
	})

	t.Run("each strongly connected component is reported once, sorted by first id", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		problems := compile(t,
			`{"id":"q","type":"noop","depends_on":["p"]}`,
			`{"id":"p","type":"noop","depends_on":["q"]}`,
			`{"id":"a","type":"noop","depends_on":["b","c"]}`,
			`{"id":"b","type":"noop","depends_on":["a"]}`,
			`{"id":"c","type":"noop","depends_on":["a"]}`)
		is.Equal(problems, []Problem{
			{Task: "a", Field: "depends_on", Message: "cycle: a -> b -> a"}, // one cycle for {a,b,c}, the shortest
			{Task: "p", Field: "depends_on", Message: "cycle: p -> q -> p"}, // and one for {p,q}
		})
	})

	t.Run("the shortest cycle through the smallest id is chosen", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		problems := compile(t,
			`{"id":"a","type":"noop","depends_on":["b"]}`,
			`{"id":"b","type":"noop","depends_on":["c","e"]}`,
			`{"id":"c","type":"noop","depends_on":["d"]}`,
			`{"id":"d","type":"noop","depends_on":["a"]}`,
			`{"id":"e","type":"noop","depends_on":["a"]}`)
		is.Equal(len(problems), 1)                               // one component
		is.Equal(problems[0].Message, "cycle: a -> b -> e -> a") // shorter than a -> b -> c -> d -> a
	})

	t.Run("a self-dependency is not also a cycle", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		problems := compile(t, `{"id":"a","type":"noop","depends_on":["a"]}`)
		is.Equal(problems, []Problem{{Task: "a", Field: "depends_on", Message: "task depends on itself"}}) // reported once
	})

	t.Run("a 10,000-task cycle is found without deep recursion and its middle elided", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		def := chainDef(MaxTasks)
		def.Tasks[0].DependsOn = []string{def.Tasks[MaxTasks-1].ID} // close the chain
		plan, problems := Compile(def, ValidateOptions{})
		is.True(plan == nil)       // a cycle has no plan
		is.Equal(len(problems), 1) // one component
		// t00000 depends on t09999, which depends on t09998, ...
		is.Equal(problems[0].Message, "cycle: t00000 -> t09999 -> t09998 -> t09997 -> t09996 -> t09995 -> t09994 -> t09993 -> "+
			"t09992 -> t09991 -> t09990 -> t09989 -> t09988 -> t09987 -> t09986 -> t09985 -> (9968 more) -> "+
			"t00016 -> t00015 -> t00014 -> t00013 -> t00012 -> t00011 -> t00010 -> t00009 -> t00008 -> t00007 -> "+
			"t00006 -> t00005 -> t00004 -> t00003 -> t00002 -> t00001 -> t00000")
	})
}

func TestCompile_Levels(t *testing.T) {
	t.Parallel()

	t.Run("a diamond has three levels sorted by id", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, plan, problems := CompileJSON([]byte(`{"name":"diamond","timeout":"1h","max_parallel":2,"tasks":[
			{"id":"d","type":"noop","depends_on":["c","b"]},
			{"id":"c","type":"noop","depends_on":["a"]},
			{"id":"b","type":"noop","depends_on":["a"],"priority":5},
			{"id":"a","type":"noop"}]}`), ValidateOptions{})
		is.Equal(len(problems), 0)                                           // valid
		is.Equal(plan.Levels, [][]string{{"a"}, {"b", "c"}, {"d"}})          // levels by longest path from a root
		is.Equal(plan.Index, map[string]int{"a": 0, "b": 1, "c": 2, "d": 3}) // ordered by (level, id)
		for i, pt := range plan.Tasks {
			is.Equal(pt.Pos, i) // Pos is the index
		}
		a, b, c, d := plan.Tasks[0], plan.Tasks[1], plan.Tasks[2], plan.Tasks[3]
		is.Equal(a.Deps, []int(nil))       // a root
		is.Equal(a.Children, []int{1, 2})  // b and c, ascending
		is.Equal(b.Deps, []int{0})         // b depends on a
		is.Equal(b.Level, 1)               // one past a
		is.Equal(b.Priority, 5)            // priority carried over
		is.Equal(c.Children, []int{3})     // c feeds d
		is.Equal(d.Deps, []int{1, 2})      // declared c, b; sorted ascending
		is.Equal(d.Children, []int(nil))   // a leaf
		is.Equal(d.Level, 2)               // the last level
		is.Equal(plan.Timeout, time.Hour)  // run timeout parsed
		is.Equal(plan.MaxParallel, 2)      // max_parallel carried over
		is.Equal(plan.Def.Name, "diamond") // the definition is kept
	})

	t.Run("a level is one past the deepest dependency", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, plan, problems := CompileJSON([]byte(wf(
			`{"id":"a","type":"noop"}`,
			`{"id":"b","type":"noop","depends_on":["a"]}`,
			`{"id":"c","type":"noop","depends_on":["b"]}`,
			`{"id":"e","type":"noop","depends_on":["a","c"]}`,
			`{"id":"z","type":"noop"}`)), ValidateOptions{})
		is.Equal(len(problems), 0)                                         // valid
		is.Equal(plan.Levels, [][]string{{"a", "z"}, {"b"}, {"c"}, {"e"}}) // e is at 3, not 1
		is.Equal(plan.Tasks[plan.Index["e"]].Deps, []int{0, 3})            // a at 0, c at 3
		is.Equal(plan.Index["z"], 1)                                       // roots sorted by id
	})

	t.Run("a chain has one task a level", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		plan, problems := Compile(chainDef(5), ValidateOptions{})
		is.Equal(len(problems), 0)                                                                    // valid
		is.Equal(plan.Levels, [][]string{{"t00000"}, {"t00001"}, {"t00002"}, {"t00003"}, {"t00004"}}) // one a level
		for i, pt := range plan.Tasks {
			is.Equal(pt.Level, i) // level i at position i
			if i > 0 {
				is.Equal(pt.Deps, []int{i - 1}) // the previous task
			}
			if i < 4 {
				is.Equal(pt.Children, []int{i + 1}) // the next task
			}
		}
	})
}

func TestCompile_Defaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		retry string
		want  Retry
	}{
		{"no policy means one attempt", ``,
			Retry{MaxAttempts: 1, InitialInterval: time.Second, Backoff: 2, MaxInterval: 100 * time.Second}},
		{"an empty policy means the defaults", `,"retry":{}`,
			Retry{MaxAttempts: 1, InitialInterval: time.Second, Backoff: 2, MaxInterval: 100 * time.Second}},
		{"max_interval defaults to 100 times initial_interval", `,"retry":{"max_attempts":5,"initial_interval":"2s"}`,
			Retry{MaxAttempts: 5, InitialInterval: 2 * time.Second, Backoff: 2, MaxInterval: 200 * time.Second}},
		{"max_interval is never below the default initial_interval", `,"retry":{"max_interval":"500ms"}`,
			Retry{MaxAttempts: 1, InitialInterval: time.Second, Backoff: 2, MaxInterval: time.Second}},
		{"a full policy is kept", `,"retry":{"max_attempts":3,"initial_interval":"100ms","backoff":1.5,"max_interval":"1s","jitter":0.25}`,
			Retry{MaxAttempts: 3, InitialInterval: 100 * time.Millisecond, Backoff: 1.5, MaxInterval: time.Second, Jitter: 0.25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			_, plan, problems := CompileJSON([]byte(wf(`{"id":"a","type":"noop"`+tt.retry+`}`)), ValidateOptions{})
			is.Equal(len(problems), 0)             // valid
			is.Equal(plan.Tasks[0].Retry, tt.want) // defaults filled in
		})
	}

	t.Run("sleep gets its duration and a task its timeout", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, plan, problems := CompileJSON([]byte(wf(
			`{"id":"a","type":"sleep","timeout":"1m","config":{"duration":"1h30m"},"input":{"k":1}}`)), ValidateOptions{})
		is.Equal(len(problems), 0)                                     // valid
		is.Equal(plan.Tasks[0].Sleep, 90*time.Minute)                  // sleep's duration
		is.Equal(plan.Tasks[0].Timeout, time.Minute)                   // per-attempt timeout
		is.Equal(string(plan.Tasks[0].Input), `{"k":1}`)               // input kept as is
		is.Equal(string(plan.Tasks[0].Config), `{"duration":"1h30m"}`) // config kept as is
	})
}

func TestCompile_Limits(t *testing.T) {
	t.Parallel()

	t.Run("a 10,000-task chain compiles", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		def := chainDef(MaxTasks)
		start := time.Now()
		plan, problems := Compile(def, ValidateOptions{})
		t.Logf("compiled a %d-task chain in %s", MaxTasks, time.Since(start))
		is.Equal(len(problems), 0)                                 // valid
		is.Equal(len(plan.Levels), MaxTasks)                       // one task a level
		is.Equal(plan.Tasks[MaxTasks-1].Deps, []int{MaxTasks - 2}) // the last depends on the one before
	})

	t.Run("a 10,000-task chain compiles from JSON", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		data, err := json.Marshal(chainDef(MaxTasks))
		is.NoErr(err) // marshal
		start := time.Now()
		_, plan, problems := CompileJSON(data, ValidateOptions{})
		t.Logf("parsed and compiled %d bytes in %s", len(data), time.Since(start))
		is.Equal(len(problems), 0)          // valid
		is.Equal(len(plan.Tasks), MaxTasks) // every task
	})

	t.Run("a 10,000-task fan-out and fan-in compile", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		def := &Definition{Name: "fan", Tasks: []TaskDef{{ID: "root", Type: TypeNoop}}}
		var mids []string
		for i := range MaxTasks - 2 {
			id := fmt.Sprintf("m%04d", i)
			mids = append(mids, id)
			def.Tasks = append(def.Tasks, TaskDef{ID: id, Type: TypeNoop, DependsOn: []string{"root"}})
		}
		def.Tasks = append(def.Tasks, TaskDef{ID: "sink", Type: TypeNoop, DependsOn: mids})
		plan, problems := Compile(def, ValidateOptions{})
		is.Equal(len(problems), 0)                             // valid
		is.Equal(len(plan.Levels), 3)                          // root, the middle, sink
		is.Equal(len(plan.Tasks[0].Children), MaxTasks-2)      // root feeds every middle task
		is.Equal(len(plan.Tasks[MaxTasks-1].Deps), MaxTasks-2) // sink waits for every middle task
		is.Equal(plan.Tasks[MaxTasks-1].ID, "sink")            // sink is last
	})

	t.Run("10,001 tasks are refused with one problem", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		plan, problems := Compile(chainDef(MaxTasks+1), ValidateOptions{})
		is.True(plan == nil)                                                                             // refused
		is.Equal(problems, []Problem{{Field: "tasks", Message: "10001 tasks, over the limit of 10000"}}) // the limit, not 10,001 more
	})

	t.Run("10,001 tasks in JSON are refused without decoding each", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		doc := `{"name":"wf","tasks":[` + strings.Repeat(`1,`, MaxTasks) + `1]}`
		def, plan, problems := CompileJSON([]byte(doc), ValidateOptions{})
		is.True(plan == nil)                                                                             // refused
		is.True(def.Tasks == nil)                                                                        // the tasks are not decoded
		is.Equal(problems, []Problem{{Field: "tasks", Message: "10001 tasks, over the limit of 10000"}}) // one problem, not 10,001
	})

	t.Run("a document over 1 MiB is refused unread", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		doc := wf(`{"id":"a","type":"noop"}`)
		doc += strings.Repeat(" ", MaxDefinitionBytes+1-len(doc))
		def, plan, problems := CompileJSON([]byte(doc), ValidateOptions{})
		is.True(def == nil)                                                                                      // not parsed
		is.True(plan == nil)                                                                                     // not compiled
		is.Equal(problems, []Problem{{Message: "definition is 1048577 bytes, over the limit of 1048576 bytes"}}) // size and limit
	})

	t.Run("a document of exactly 1 MiB is read", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		doc := wf(`{"id":"a","type":"noop"}`)
		doc += strings.Repeat(" ", MaxDefinitionBytes-len(doc))
		_, plan, problems := CompileJSON([]byte(doc), ValidateOptions{})
		is.Equal(len(problems), 0) // at the limit is fine
		is.True(plan != nil)       // compiled
	})

	t.Run("thousands of broken tasks yield a bounded list", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		doc := `{"name":"wf","tasks":[` + strings.Repeat(`1,`, MaxTasks-1) + `1]}`
		_, _, problems := CompileJSON([]byte(doc), ValidateOptions{})
		is.Equal(len(problems), maxProblems+1)                                                         // capped, plus a note
		is.Equal(problems[maxProblems].Message, "too many problems: 9000 more not listed")             // the note counts the rest
		is.Equal(problems[0], Problem{Task: "tasks[0]", Message: "must be a JSON object, got number"}) // in order
	})
}

func TestParseDefinition_Strict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		want []Problem
	}{
		{"an unknown definition field", `{"name":"wf","tasks":[{"id":"a","type":"noop"}],"version":2}`,
			[]Problem{{Field: "version", Message: `unknown field "version"`}}},
		{"two unknown task fields together", wf(`{"id":"a","type":"noop","colour":"red","dependsOn":["b"]}`),
			[]Problem{
				{Task: "a", Field: "colour", Message: `unknown field "colour"`},
				{Task: "a", Field: "dependsOn", Message: `unknown field "dependsOn"`},
			}},
		{"an unknown retry field", wf(`{"id":"a","type":"noop","retry":{"attempts":3}}`),
			[]Problem{{Task: "a", Field: "retry.attempts", Message: `unknown field "attempts"`}}},
		{"an unknown sleep config field", wf(`{"id":"a","type":"sleep","config":{"duration":"1s","for":"2s"}}`),
			[]Problem{{Task: "a", Field: "config.for", Message: `unknown field "for"`}}},
		{"any noop config field", wf(`{"id":"a","type":"noop","config":{"a":1,"b":2}}`),
			[]Problem{
				{Task: "a", Field: "config.a", Message: `unknown field "a"`},
				{Task: "a", Field: "config.b", Message: `unknown field "b"`},
			}},
		{"unknown fields at every level at once",
			`{"x":1,"name":"wf","tasks":[{"id":"a","type":"sleep","y":2,"retry":{"z":3},"config":{"duration":"1s","w":4}}]}`,
			[]Problem{
				{Field: "x", Message: `unknown field "x"`},
				{Task: "a", Field: "y", Message: `unknown field "y"`},
				{Task: "a", Field: "retry.z", Message: `unknown field "z"`},
				{Task: "a", Field: "config.w", Message: `unknown field "w"`},
			}},
		{"a repeated field", `{"name":"wf","name":"other","tasks":[{"id":"a","type":"noop","id":"b"}]}`,
			[]Problem{
				{Field: "name", Message: "duplicate field"},
				{Task: "a", Field: "id", Message: "duplicate field"},
			}},
		{"a string priority", wf(`{"id":"a","type":"noop","priority":"high"}`),
			[]Problem{{Task: "a", Field: "priority", Message: "must be an integer, got string"}}},
		{"a fractional priority", wf(`{"id":"a","type":"noop","priority":1.5}`),
			[]Problem{{Task: "a", Field: "priority", Message: "must be an integer, got 1.5"}}},
		{"a huge priority", wf(`{"id":"a","type":"noop","priority":99999999999999999999}`),
			[]Problem{{Task: "a", Field: "priority", Message: "integer 99999999999999999999 is out of range"}}},
		{"a string depends_on", wf(`{"id":"a","type":"noop"}`, `{"id":"b","type":"noop","depends_on":"a"}`),
			[]Problem{{Task: "b", Field: "depends_on", Message: "must be an array of task ids, got string"}}},
		{"a number in depends_on", wf(`{"id":"a","type":"noop"}`, `{"id":"b","type":"noop","depends_on":["a",7]}`),
			[]Problem{{Task: "b", Field: "depends_on[1]", Message: "must be a string, got number"}}},
		{"a numeric name", `{"name":5,"tasks":[{"id":"a","type":"noop"}]}`,
			[]Problem{{Field: "name", Message: "must be a string, got number"}}},
		{"a numeric id", wf(`{"id":7,"type":"noop"}`),
			[]Problem{{Task: "tasks[0]", Field: "id", Message: "must be a string, got number"}}},
		{"a boolean type", wf(`{"id":"a","type":true}`),
			[]Problem{{Task: "a", Field: "type", Message: "must be a string, got boolean"}}},
		{"an object for tasks", `{"name":"wf","tasks":{"a":{}}}`,
			[]Problem{{Field: "tasks", Message: "must be an array of task objects, got object"}}},
		{"a string for a task", wf(`"a"`),
			[]Problem{{Task: "tasks[0]", Message: "must be a JSON object, got string"}}},
		{"a list for retry", wf(`{"id":"a","type":"noop","retry":[3]}`),
			[]Problem{{Task: "a", Field: "retry", Message: "must be a JSON object, got array"}}},
		{"a string backoff", wf(`{"id":"a","type":"noop","retry":{"backoff":"2"}}`),
			[]Problem{{Task: "a", Field: "retry.backoff", Message: "must be a number, got string"}}},
		{"an infinite backoff", wf(`{"id":"a","type":"noop","retry":{"backoff":1e400}}`),
			[]Problem{{Task: "a", Field: "retry.backoff", Message: "number 1e400 is out of range"}}},
		{"a numeric timeout", wf(`{"id":"a","type":"noop","timeout":30}`),
			[]Problem{{Task: "a", Field: "timeout", Message: "must be a string, got number"}}},
		{"a string max_parallel", `{"name":"wf","max_parallel":"4","tasks":[{"id":"a","type":"noop"}]}`,
			[]Problem{{Field: "max_parallel", Message: "must be an integer, got string"}}},
		{"trailing garbage", wf(`{"id":"a","type":"noop"}`) + ` garbage`,
			[]Problem{{Message: "unexpected data after the JSON object at byte 49"}}},
		{"a second object", wf(`{"id":"a","type":"noop"}`) + `{}`,
			[]Problem{{Message: "unexpected data after the JSON object at byte 48"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			def, plan, problems := CompileJSON([]byte(tt.doc), ValidateOptions{})
			if len(problems) != len(tt.want) {
				t.Log(problemsString(problems))
			}
			is.Equal(problems, tt.want) // each named by task and field, nothing else
			is.True(def != nil)         // the definition is still decoded
			is.True(plan == nil)        // but not compiled
		})
	}

	t.Run("ParseDefinition alone reports decoding problems only", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		def, problems := ParseDefinition([]byte(`{"tasks":[{"id":"a","type":"sleep","depends_on":["zz"],"extra":1}]}`))
		is.Equal(problems, []Problem{{Task: "a", Field: "extra", Message: `unknown field "extra"`}}) // not the missing name, dependency or duration
		is.Equal(def.Tasks[0].DependsOn, []string{"zz"})                                             // the rest is decoded
	})

	t.Run("ParseDefinition decodes every field", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		want := &Definition{
			Name: "wf", Description: "d", Timeout: "1h", MaxParallel: 3, Output: json.RawMessage(`{"o":1}`),
			Tasks: []TaskDef{{
				ID: "a", Type: "sleep", DependsOn: []string{"b"}, Priority: -4, Timeout: "1s",
				Retry: &RetryPolicy{MaxAttempts: 2, InitialInterval: "1s", Backoff: 3, MaxInterval: "9s", Jitter: 0.5},
				Input: json.RawMessage(`[1]`), Config: json.RawMessage(`{"duration":"2s"}`),
			}},
		}
		data, err := json.Marshal(want)
		is.NoErr(err) // marshal
		def, problems := ParseDefinition(data)
		is.Equal(len(problems), 0) // a marshalled definition parses
		is.Equal(def, want)        // round trip
	})
}

func TestValidationError(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	_, problems := Compile(&Definition{Name: "wf", Tasks: []TaskDef{
		{ID: "a", Type: "noop"},
		{ID: "b", Type: "noop", DependsOn: []string{"x"}},
		{Type: "noop", Priority: MaxPriority + 1},
	}}, ValidateOptions{})
	var err error = &ValidationError{Problems: problems}
	is.True(errors.Is(err, ErrInvalidDefinition)) // matches the sentinel
	var ve *ValidationError
	is.True(errors.As(fmt.Errorf("register: %w", err), &ve)) // found through wrapping
	is.Equal(err.Error(), `invalid definition: 3 problems: tasks[b].depends_on: unknown task "x"; `+
		`tasks[2].id: required; tasks[2].priority: must be between -1000000 and 1000000, got 1000001`) // one line, every problem
	is.Equal((&ValidationError{Problems: []Problem{{Field: "name", Message: "required"}}}).Error(),
		"invalid definition: 1 problem: name: required") // singular, definition-level
}

func TestCompile_GoDefinitions(t *testing.T) {
	t.Parallel()

	t.Run("a nil definition is a problem, not a panic", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		plan, problems := Compile(nil, ValidateOptions{})
		is.True(plan == nil)       // nothing to compile
		is.Equal(len(problems), 1) // one problem
	})

	t.Run("raw JSON fields must be valid JSON", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		_, problems := Compile(&Definition{Name: "wf", Output: json.RawMessage(`{`), Tasks: []TaskDef{
			{ID: "a", Type: "noop", Input: json.RawMessage(`nope`), Config: json.RawMessage(`{"x":`)},
		}}, ValidateOptions{})
		is.Equal(problems, []Problem{
			{Field: "output", Message: "must be valid JSON"},
			{Task: "a", Field: "input", Message: "must be valid JSON"},
			{Task: "a", Field: "config", Message: "must be valid JSON"},
		}) // each raw field checked
	})

	t.Run("KnownTypeFunc is asked once a type", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		calls := 0
		opts := ValidateOptions{KnownTypeFunc: func(string) bool { calls++; return true }}
		_, problems := Compile(&Definition{Name: "wf", Tasks: []TaskDef{
			{ID: "a", Type: "http"}, {ID: "b", Type: "http"}, {ID: "c", Type: "noop"},
		}}, opts)
		is.Equal(len(problems), 0) // valid
		is.Equal(calls, 1)         // cached, and never asked about built-ins
	})
}

func BenchmarkCompile_Chain10k(b *testing.B) {
	def := chainDef(MaxTasks)
	for b.Loop() {
		if _, problems := Compile(def, ValidateOptions{}); problems != nil {
			b.Fatal(problems)
		}
	}
}

func BenchmarkCompileJSON_Chain10k(b *testing.B) {
	data, err := json.Marshal(chainDef(MaxTasks))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, problems := CompileJSON(data, ValidateOptions{}); problems != nil {
			b.Fatal(problems)
		}
	}
}
