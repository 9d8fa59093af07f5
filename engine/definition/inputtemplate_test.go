package definition

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestRenderInputTemplate(t *testing.T) {
	in := json.RawMessage(`{"customer":"acme","n":3,"o":{"a":[1,2]}}`)
	for _, c := range []struct{ tmpl, want, missing string }{
		{"${workflow.input.customer}", `"acme"`, ""},
		{"${workflow.input.n}", `3`, ""},
		{"c-${workflow.input.customer}-${workflow.input.o.a}", `c-acme-[1,2]`, ""},
		{"${workflow.input.o.a.1}", `2`, ""},
		{"${workflow.input.region}", "", "input.region"},
		{"${workflow.input.o.b.c}", "", "input.o.b"},
		{"x${workflow.input.o.a.9}", "", "input.o.a.9"},
	} {
		got, err := RenderInputTemplate(c.tmpl, in, 64)
		var mf *MissingFieldError
		switch {
		case c.missing != "":
			if !errors.As(err, &mf) || mf.Field != c.missing {
				t.Errorf("%s: %v, want a missing %s", c.tmpl, err, c.missing)
			}
		case err != nil || string(got) != c.want:
			t.Errorf("%s: %s, %v; want %s", c.tmpl, got, err, c.want)
		}
	}
	if _, err := RenderInputTemplate("${workflow.input.customer}${workflow.input.customer}", in, 5); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := RenderInputTemplate("${workflow.input.x}", nil, 64); err == nil {
		t.Error("no input: want a missing field")
	}
}

func FuzzInputTemplate(f *testing.F) {
	f.Add("${workflow.input.customer}", `{"customer":"acme"}`)
	f.Add("a-${workflow.input.x.0}-${workflow.input.y}", `{"x":[1],"y":null}`)
	f.Add("${fetch.output.x}", `{}`)
	f.Add("${workflow.input", `1`)
	f.Fuzz(func(t *testing.T, tmpl, input string) {
		if CheckInputTemplate(tmpl) != nil || !json.Valid([]byte(input)) {
			return
		}
		out, err := RenderInputTemplate(tmpl, json.RawMessage(input), 4096)
		if err != nil {
			var mf *MissingFieldError
			if errors.As(err, &mf) && !strings.HasPrefix(mf.Field, "input") {
				t.Fatalf("missing field %q does not start at input", mf.Field)
			}
			return
		}
		if len(out) > 4096 {
			t.Fatalf("rendered %d bytes, over the limit", len(out))
		}
		again, err := RenderInputTemplate(tmpl, json.RawMessage(input), 4096)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not deterministic: %q then %q (%v)", out, again, err)
		}
	})
}
