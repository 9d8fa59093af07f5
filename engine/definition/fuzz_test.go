package definition

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// FuzzValidate checks that CompileJSON never panics, that it returns a plan
// exactly when it finds no problem, that every plan it returns is consistent
// with its definition, and that a decoded definition survives a round trip
// through encoding/json.
func FuzzValidate(f *testing.F) {
	seeds := []string{
		`{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`,
		`{"name":"diamond","timeout":"1h","max_parallel":2,"tasks":[{"id":"d","type":"noop","depends_on":["b","c"]},{"id":"b","type":"noop","depends_on":["a"]},{"id":"c","type":"sleep","depends_on":["a"],"config":{"duration":"1s"}},{"id":"a","type":"http","priority":3,"input":{"url":"x"}}]}`,
		`{"name":"cycle","tasks":[{"id":"a","type":"noop","depends_on":["b"]},{"id":"b","type":"noop","depends_on":["c"]},{"id":"c","type":"noop","depends_on":["a"]}]}`,
		`{"name":"self","tasks":[{"id":"a","type":"noop","depends_on":["a","a","zz"]}]}`,
		`{"name":"retry","tasks":[{"id":"a","type":"ghost","retry":{"max_attempts":5,"initial_interval":"10s","max_interval":"1s","backoff":0.5,"jitter":2}}]}`,
		`{"name":"dup","tasks":[{"id":"a","type":"noop"},{"id":"a","type":"noop"},{"type":"noop"},{"id":"","type":""}]}`,
		`{"name":"tâche","tasks":[{"id":"ünï","type":"日本","depends_on":["\u00fc"],"input":"\ud83d\ude00"}]}`,
		`{"name":"big","max_parallel":99999999999999999999,"tasks":[{"id":"a","type":"noop","priority":1e308,"retry":{"backoff":1e400,"max_attempts":-9223372036854775808}}]}`,
		`{"name":"junk","x":{"y":[[[{"z":null}]]]},"tasks":[{"id":"a","type":"noop","config":{"deep":[1,{"a":[true,false,null]}]},"w":[]}]}`,
		`{"name":"types","tasks":[{"id":1,"type":["noop"],"depends_on":"a","priority":"high","retry":[],"timeout":5,"config":"s"}]}`,
		`{"name":"wf","tasks":[{"id":"a","type":"noop"}]} trailing`,
		`{"name":"wf","name":"again","tasks":[{"id":"a","id":"b","type":"sleep","config":{"duration":"1s","duration":"2s"}}]}`,
		`{"name":"wf","tasks":[1,"two",null,[],{}]}`,
		`{"name":"conc","concurrency":{"key":"c-${workflow.input.customer}","max":2,"strategy":"cancel_in_progress"},"tasks":[{"id":"a","type":"noop"}]}`,
		`{"name":"conc","concurrency":{"key":"${a.output.x","max":0,"strategy":7,"extra":1},"tasks":[{"id":"a","type":"noop"}]}`,
		`{"name":"esc\"aped","tasks":[{"id":"a\\b","type":"no\nop","timeout":"\u0031s"}]}`,
		`[{"name":"wf"}]`,
		`{"name":"wf","tasks":null,"output":{"a":"{{tasks.a.output}}"}}`,
		``,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	opts := []ValidateOptions{
		{},
		{KnownTypeFunc: func(typ string) bool { return typ != "ghost" }},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, o := range opts {
			def, plan, problems := CompileJSON(data, o)
			if len(problems) > 0 {
				if plan != nil {
					t.Fatalf("plan returned with %d problems", len(problems))
				}
				for _, p := range problems {
					if p.Message == "" {
						t.Fatalf("problem without a message: %+v", p)
					}
				}
			} else {
				if def == nil || plan == nil {
					t.Fatalf("no problem but def %v, plan %v", def != nil, plan != nil)
				}
				checkPlan(t, def, plan)
			}
			if def != nil {
				checkRoundTrip(t, def, len(problems) == 0)
			}
		}
		checkScanner(t, data)
	})
}

// checkScanner fails t unless objectMembers and arrayElements split valid JSON
// as encoding/json does.
func checkScanner(t *testing.T, data []byte) {
	t.Helper()
	var want map[string]json.RawMessage
	if !json.Valid(data) || strictjson.Kind(data) != "object" || json.Unmarshal(data, &want) != nil {
		return
	}
	members, err := strictjson.Members(data)
	if err != nil {
		t.Fatalf("objectMembers of a valid object: %v", err)
	}
	got := make(map[string]json.RawMessage, len(members))
	for _, m := range members {
		got[m.Key] = m.Value // the last of repeated names wins, as in encoding/json
	}
	if len(got) != len(want) {
		t.Fatalf("objectMembers found %d names, encoding/json %d", len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("member %q: got %s, want %s", k, got[k], v)
		}
		var wantElems []json.RawMessage
		if strictjson.Kind(v) != "array" || json.Unmarshal(v, &wantElems) != nil {
			continue
		}
		elems, err := strictjson.Elements(v)
		if err != nil || len(elems) != len(wantElems) {
			t.Fatalf("arrayElements of %s: %d elements, %v; want %d", v, len(elems), err, len(wantElems))
		}
		for i := range elems {
			if !bytes.Equal(elems[i], wantElems[i]) {
				t.Fatalf("element %d of %q: got %s, want %s", i, k, elems[i], wantElems[i])
			}
		}
	}
}

// checkPlan fails t unless plan is a consistent topological ordering of def.
func checkPlan(t *testing.T, def *Definition, plan *Plan) {
	t.Helper()
	n := len(def.Tasks)
	if len(plan.Tasks) != n || len(plan.Index) != n {
		t.Fatalf("%d tasks, plan has %d tasks and %d index entries", n, len(plan.Tasks), len(plan.Index))
	}
	byID := make(map[string]*TaskDef, n)
	for i := range def.Tasks {
		byID[def.Tasks[i].ID] = &def.Tasks[i]
	}
	for i, pt := range plan.Tasks {
		if pt.Pos != i || plan.Index[pt.ID] != i {
			t.Fatalf("task %q at %d has Pos %d, Index %d", pt.ID, i, pt.Pos, plan.Index[pt.ID])
		}
		td := byID[pt.ID]
		if td == nil || len(td.DependsOn) != len(pt.Deps) {
			t.Fatalf("task %q: deps %v do not match the definition", pt.ID, pt.Deps)
		}
		if !slices.IsSorted(pt.Deps) || !slices.IsSorted(pt.Children) {
			t.Fatalf("task %q: deps %v or children %v not sorted", pt.ID, pt.Deps, pt.Children)
		}
		level := 0
		for _, d := range pt.Deps {
			if d >= i {
				t.Fatalf("task %q at %d depends on position %d", pt.ID, i, d)
			}
			if !slices.Contains(td.DependsOn, plan.Tasks[d].ID) {
				t.Fatalf("task %q: dep %q not declared", pt.ID, plan.Tasks[d].ID)
			}
			if _, found := slices.BinarySearch(plan.Tasks[d].Children, i); !found {
				t.Fatalf("task %q: missing from the children of %q", pt.ID, plan.Tasks[d].ID)
			}
			level = max(level, plan.Tasks[d].Level+1)
		}
		if pt.Level != level {
			t.Fatalf("task %q at level %d, want %d", pt.ID, pt.Level, level)
		}
		for _, c := range pt.Children {
			if c <= i || !slices.Contains(plan.Tasks[c].Deps, i) {
				t.Fatalf("task %q: bad child %d", pt.ID, c)
			}
		}
		if r := pt.Retry; r.MaxAttempts < 1 || r.InitialInterval <= 0 || r.MaxInterval < r.InitialInterval || r.Backoff < 1 {
			t.Fatalf("task %q: retry %+v", pt.ID, r)
		}
		if (pt.Type == TypeSleep) != (pt.Sleep > 0) {
			t.Fatalf("task %q of type %q sleeps %s", pt.ID, pt.Type, pt.Sleep)
		}
	}
	var flat []string
	for l, ids := range plan.Levels {
		if len(ids) == 0 || !slices.IsSorted(ids) {
			t.Fatalf("level %d: %v", l, ids)
		}
		for _, id := range ids {
			if plan.Tasks[len(flat)].ID != id || plan.Tasks[len(flat)].Level != l {
				t.Fatalf("level %d lists %q out of order", l, id)
			}
			flat = append(flat, id)
		}
	}
	if len(flat) != n {
		t.Fatalf("levels cover %d of %d tasks", len(flat), n)
	}
}

// checkRoundTrip fails t unless def, marshalled and parsed again, is the same
// definition, without problems if the first parse had none.
func checkRoundTrip(t *testing.T, def *Definition, clean bool) {
	t.Helper()
	first, err := json.Marshal(def)
	if err != nil {
		t.Fatalf("marshal a decoded definition: %v", err)
	}
	again, problems := ParseDefinition(first)
	if again == nil || (clean && len(problems) > 0) {
		t.Fatalf("reparse %s: %v", first, problems)
	}
	second, err := json.Marshal(again)
	if err != nil {
		t.Fatalf("marshal the reparsed definition: %v", err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("round trip changed the definition:\n%s\n%s", first, second)
	}
}
