package engine_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

func TestTrigger_BuildInput(t *testing.T) {
	t.Parallel()
	msg := &engine.TriggerMessage{
		Body:    json.RawMessage(`{"a":{"b/c":[10,{"d~e":true}]},"big":123456789012345678901234567890}`),
		Headers: map[string][]string{"X-Event": {"push", "other"}},
		Query:   map[string][]string{"env": {"prod"}},
	}
	for _, c := range []struct {
		name, tpl, want, field string
	}{
		{"no template: the body", ``, string(msg.Body), ""},
		{"the whole body", `{"all":"${/body}"}`, `{"all":` + string(msg.Body) + `}`, ""},
		{"escaped pointers, arrays, exact numbers", `{"x":"${/body/a/b~1c/1/d~0e}","y":["${/body/a/b~1c/0}","${/body/big}"]}`,
			`{"x":true,"y":[10,123456789012345678901234567890]}`, ""},
		{"headers by any case, query", `{"h":"${/headers/x-event}","q":"${/query/env}","lit":"${not a ref","n":1}`,
			`{"h":"push","lit":"${not a ref","n":1,"q":"prod"}`, ""},
		{"a missing body field", `{"x":{"y":"${/body/nope}"}}`, "", "input.x.y"},
		{"an index out of range", `{"x":"${/body/a/b~1c/5}"}`, "", "input.x"},
		{"a missing header", `["${/headers/X-None}"]`, "", "input[0]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			tr := &engine.Trigger{Name: "t", Config: engine.TriggerConfig{Input: json.RawMessage(c.tpl)}}
			if c.tpl == "" {
				tr.Config.Input = nil
			}
			got, err := tr.BuildInput(msg)
			if c.field != "" {
				var fe *engine.FieldError
				is.True(errors.As(err, &fe)) // refused
				is.Equal(fe.Field, c.field)  // naming the template field
				return
			}
			is.NoErr(err)
			is.Equal(string(got), c.want) // built
		})
	}
	is := is.New(t)
	_, err := (&engine.Trigger{}).BuildInput(&engine.TriggerMessage{Body: []byte("not json")})
	var fe *engine.FieldError
	is.True(errors.As(err, &fe) && fe.Field == "body") // a payload that is not JSON names the body
}

// FuzzTrigger_BuildInput: any template that validates and any message
// build an input that is JSON, or a refusal naming a field; never a panic.
func FuzzTrigger_BuildInput(f *testing.F) {
	f.Add(`{"a":"${/body/a/0}","h":"${/headers/X}"}`, `{"a":[1,2]}`)
	f.Add(`["${/body}","${/query/q}"]`, `null`)
	f.Add(`"${/body/~1/~0}"`, `{"/":{"~":3}}`)
	f.Add(`{}`, `not json`)
	f.Fuzz(func(t *testing.T, tpl, body string) {
		tr := &engine.Trigger{Name: "f", Kind: engine.TriggerWebhook, State: engine.TriggerEnabled,
			Config: engine.TriggerConfig{Input: json.RawMessage(tpl), Webhook: &engine.WebhookConfig{Verify: engine.VerifyGitHub}}}
		if err := engine.ValidateTriggerForTest(tr); err != nil {
			return
		}
		out, err := tr.BuildInput(&engine.TriggerMessage{Body: []byte(body), Headers: map[string][]string{"X": {"v"}},
			Query: map[string][]string{"q": {"w"}}})
		if err != nil {
			var fe *engine.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("template %q body %q: %v, want a *FieldError naming a field", tpl, body, err)
			}
			return
		}
		if len(out) > 0 && !json.Valid(out) {
			t.Fatalf("template %q body %q: input %q is not JSON", tpl, body, out)
		}
	})
}
