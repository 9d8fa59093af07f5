package strictjson_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine/strictjson"
)

func TestMembers(t *testing.T) {
	is := is.New(t)
	ms, err := strictjson.Members([]byte(` {"a": 1, "b": {"c": [1, "}"]}, "a": "x\"y"} `))
	is.NoErr(err)                                    // a valid object splits
	is.Equal(len(ms), 3)                             // every member, the repeated one too
	is.Equal(ms[0].Key, "a")                         // in document order
	is.Equal(string(ms[1].Value), `{"c": [1, "}"]}`) // values are raw, braces in strings included
	is.Equal(ms[2].Key, "a")                         // a repeated key is kept for the caller to refuse
	is.Equal(string(ms[2].Value), `"x\"y"`)

	for _, bad := range []string{``, `[]`, `{"a"}`, `{"a":1,}`, `{"a":1} x`, `{"a":`, `{"a":"}`} {
		_, err := strictjson.Members([]byte(bad))
		is.True(errors.Is(err, strictjson.ErrMalformed)) // malformed input is an error, never a panic
	}
}

func TestElementsAndKind(t *testing.T) {
	is := is.New(t)
	es, err := strictjson.Elements([]byte(`[1, "two", [3], {"four": 4}, null]`))
	is.NoErr(err)
	is.Equal(len(es), 5)
	kinds := []string{"number", "string", "array", "object", "null"}
	for i, e := range es {
		is.Equal(strictjson.Kind(e), kinds[i]) // each element's kind
	}
	is.Equal(strictjson.Kind([]byte(" true")), "boolean")
	is.Equal(strictjson.Kind(nil), "") // no value at all
}

func TestDepth(t *testing.T) {
	is := is.New(t)
	deep := func(n int) []byte { return []byte(strings.Repeat("[", n) + strings.Repeat("]", n)) }
	is.Equal(strictjson.Depth([]byte(`{"a":[{"b":"[[[["}]}`), 100), 3) // brackets in strings do not count
	is.NoErr(strictjson.CheckDepth(deep(strictjson.MaxDepth)))         // the limit itself is fine
	is.True(strictjson.CheckDepth(deep(strictjson.MaxDepth+1)) != nil) // one more is not
	is.Equal(strictjson.Depth(deep(100000), 10), 11)                   // and measuring stops past the bound
}
