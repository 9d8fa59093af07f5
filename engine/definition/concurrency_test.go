package definition

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/matryer/is"
)

func concDef(c string) string {
	return `{"name":"wf","concurrency":` + c + `,"tasks":[{"id":"a","type":"noop"}]}`
}

func TestCompileJSON_ConcurrencyProblemsNameTheirField(t *testing.T) {
	for _, tt := range []struct {
		name, doc, field, msg string
	}{
		{"the key is required", concDef(`{"max":1}`), "concurrency.key", "required"},
		{"the key may not reference a task output", concDef(`{"key":"${a.output.x}"}`), "concurrency.key", "may only reference ${workflow.input...}"},
		{"a malformed reference is told the one form a key allows", concDef(`{"key":"${workflow.customer}"}`), "concurrency.key", "a concurrency key may only reference ${workflow.input...}"},
		{"the key must be a well-formed template", concDef(`{"key":"${workflow.input.x"}`), "concurrency.key", "missing }"},
		{"the key has a bound", concDef(`{"key":"` + strings.Repeat("k", 257) + `"}`), "concurrency.key", "over the limit of 256"},
		{"the key is a string", concDef(`{"key":5}`), "concurrency.key", "must be a string"},
		{"max 0 is refused", concDef(`{"key":"k","max":0}`), "concurrency.max", "must be between 1 and 10000 (active runs per key value), got 0"},
		{"max has a ceiling", concDef(`{"key":"k","max":10001}`), "concurrency.max", "got 10001"},
		{"max is an integer", concDef(`{"key":"k","max":"1"}`), "concurrency.max", "must be an integer"},
		{"the strategy is one of three", concDef(`{"key":"k","strategy":"drop"}`), "concurrency.strategy", `must be queue, cancel_in_progress or cancel_newest, got "drop"`},
		{"unknown fields are refused", concDef(`{"key":"k","limit":2}`), "concurrency.limit", "unknown field"},
		{"concurrency is an object", concDef(`"k"`), "concurrency", "must be a JSON object"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, plan, problems := CompileJSON([]byte(tt.doc), ValidateOptions{})
			is.True(plan == nil)       // refused
			is.Equal(len(problems), 1) // one problem
			is.Equal(problems[0].Field, tt.field)
			is.True(strings.Contains(problems[0].Message, tt.msg)) // says why
		})
	}
}

func TestCompileJSON_ConcurrencyDefaults(t *testing.T) {
	is := is.New(t)
	def, plan, problems := CompileJSON([]byte(concDef(`{"key":"${workflow.input.customer}"}`)), ValidateOptions{})
	is.Equal(len(problems), 0)                                                                                   // valid
	is.Equal(*plan.Concurrency, Concurrency{Key: "${workflow.input.customer}", Max: 1, Strategy: StrategyQueue}) // max 1, queue
	b, err := json.Marshal(def)
	is.NoErr(err)
	is.True(strings.Contains(string(b), `"concurrency":{"key":"${workflow.input.customer}"}`)) // stored as written

	_, plan, problems = CompileJSON([]byte(concDef(`{"key":"c-${workflow.input.n}","max":3,"strategy":"cancel_newest"}`)), ValidateOptions{})
	is.Equal(len(problems), 0)
	is.Equal(*plan.Concurrency, Concurrency{Key: "c-${workflow.input.n}", Max: 3, Strategy: StrategyCancelNewest})
}

func TestRenderKey(t *testing.T) {
	is := is.New(t)
	k, err := RenderKey("${workflow.input.customer}", json.RawMessage(`{"customer":"acme"}`))
	is.NoErr(err)
	is.Equal(k, "acme") // a string value as it is
	k, err = RenderKey("c-${workflow.input.n}", json.RawMessage(`{"n":42}`))
	is.NoErr(err)
	is.Equal(k, "c-42") // inside text
	k, err = RenderKey("${workflow.input.o}", json.RawMessage(`{"o":{"b":1,"a":2}}`))
	is.NoErr(err)
	is.Equal(k, `{"a":2,"b":1}`) // other values as JSON
	k, err = RenderKey("global", nil)
	is.NoErr(err)
	is.Equal(k, "global") // a constant key

	_, err = RenderKey("${workflow.input.customer}", json.RawMessage(`{"other":1}`))
	is.True(err != nil && strings.Contains(err.Error(), `no field "customer"`)) // names the missing field
	_, err = RenderKey("${workflow.input.customer}", json.RawMessage(`{"customer":""}`))
	is.True(err != nil && strings.Contains(err.Error(), "renders empty"))
	_, err = RenderKey("${workflow.input.customer}", json.RawMessage(`{"customer":"`+strings.Repeat("x", 300)+`"}`))
	is.True(err != nil && strings.Contains(err.Error(), "limit of 256")) // bounded
	_, err = RenderKey("${workflow.input.customer}", json.RawMessage(`{"customer":"`+strings.Repeat("x", 5000)+`"}`))
	is.True(err != nil && strings.Contains(err.Error(), "limit of 256 bytes")) // the key's limit, not the renderer's
	is.True(!strings.Contains(err.Error(), "1024"))
}
