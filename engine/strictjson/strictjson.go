// Package strictjson reads JSON strictly and cheaply: it splits a value that
// encoding/json has already checked into its members without decoding it
// again, keeping repeated names (so that callers can refuse them), and it
// measures nesting. Definitions, the built-in task types and the HTTP API use
// it so that every edge refuses the same things the same way.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Kind names the JSON type of a valid value by its first byte: "object",
// "array", "string", "number", "boolean", "null", or "" for no value at all.
func Kind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// Member is one name/value pair of a JSON object.
type Member struct {
	Key   string
	Value json.RawMessage
}

// ErrMalformed is returned by the scanning functions below for input that is
// not the valid JSON they expect.
var ErrMalformed = errors.New("malformed JSON")

// The functions below split a JSON value that encoding/json has already
// validated into its parts without decoding it again: a definition of 10,000
// tasks would otherwise be scanned once for each level of nesting. They return
// subslices of their input and ErrMalformed, never a panic, if it is not valid.

// skipSpace returns the index of the first byte at or after i that is not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value starting at b[i], or -1.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return -1
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := valueEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i // a number, true, false or null: up to the next delimiter
loop:
	for ; j < len(b); j++ {
		switch b[j] {
		case ',', ']', '}', ' ', '\t', '\r', '\n':
			break loop
		}
	}
	if j == i {
		return -1
	}
	return j
}

// container splits the JSON object (open '{') or array (open '[') raw into its
// members, calling each with the key (objects only) and value.
func container(raw []byte, open byte, each func(key string, value []byte) error) error {
	closing := byte('}')
	if open == '[' {
		closing = ']'
	}
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != open {
		return ErrMalformed
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == closing {
		i++
	} else {
		for {
			var key string
			if open == '{' {
				end := valueEnd(raw, i)
				if end < 0 || raw[i] != '"' {
					return ErrMalformed
				}
				var ok bool
				if key, ok = DecodeString(raw[i:end]); !ok {
					return ErrMalformed
				}
				i = skipSpace(raw, end)
				if i >= len(raw) || raw[i] != ':' {
					return ErrMalformed
				}
				i = skipSpace(raw, i+1)
			}
			end := valueEnd(raw, i)
			if end < 0 {
				return ErrMalformed
			}
			if err := each(key, raw[i:end]); err != nil {
				return err
			}
			i = skipSpace(raw, end)
			if i >= len(raw) {
				return ErrMalformed
			}
			if raw[i] == closing {
				i++
				break
			}
			if raw[i] != ',' {
				return ErrMalformed
			}
			i = skipSpace(raw, i+1)
		}
	}
	if skipSpace(raw, i) != len(raw) {
		return ErrMalformed
	}
	return nil
}

// EachMember calls fn with the key and the raw value of every member of the
// JSON object raw, in document order, a repeated key each time it appears.
// It returns fn's error, or ErrMalformed if raw is not an object.
func EachMember(raw []byte, fn func(key string, value []byte) error) error {
	return container(raw, '{', fn)
}

// EachElement calls fn with every element of the JSON array raw, like
// EachMember.
func EachElement(raw []byte, fn func(value []byte) error) error {
	return container(raw, '[', func(_ string, value []byte) error { return fn(value) })
}

// Members returns the members of the JSON object raw in document order,
// repeated names included.
func Members(raw []byte) ([]Member, error) {
	var members []Member
	err := container(raw, '{', func(key string, value []byte) error {
		members = append(members, Member{key, value})
		return nil
	})
	return members, err
}

// Elements returns the elements of the JSON array raw.
func Elements(raw []byte) ([]json.RawMessage, error) {
	var elems []json.RawMessage
	err := container(raw, '[', func(_ string, value []byte) error {
		elems = append(elems, value)
		return nil
	})
	return elems, err
}

// DecodeString decodes a JSON string; ok is false if raw is not one.
func DecodeString(raw []byte) (s string, ok bool) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		inner := raw[1 : len(raw)-1]
		if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) { // the common case, nothing to unescape
			return string(inner), true
		}
	}
	return s, json.Unmarshal(raw, &s) == nil
}

// DescribeError turns a decoding error into a problem message.
func DescribeError(err error) string {
	var syntax *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return "empty document: want a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "invalid JSON: unexpected end of input"
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	}
	return "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

// MaxDepth bounds how deeply objects and arrays may nest in a definition,
// a run's input and a task's output: far below what the database accepts
// (SQLite's json functions refuse 1,000 levels), so that a value the engine
// accepted can always be stored, and recursion over it stays shallow.
const MaxDepth = 64

// CheckDepth returns an error saying how deep raw nests when it nests
// deeper than MaxDepth. raw must be valid JSON.
func CheckDepth(raw []byte) error {
	if d := Depth(raw, MaxDepth); d > MaxDepth {
		return fmt.Errorf("nests objects and arrays more than %d levels deep, the limit", MaxDepth)
	}
	return nil
}

// Depth returns the deepest nesting of objects and arrays in raw, or
// stop+1 as soon as it passes stop.
func Depth(raw []byte, stop int) int {
	depth, deepest := 0, 0
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > deepest {
				deepest = depth
				if deepest > stop {
					return deepest
				}
			}
		case '}', ']':
			depth--
		}
	}
	return deepest
}

// RepeatedKey returns the path (a.b[2].c) of the first key that an object
// of the valid JSON value raw gives more than once, at any depth; "" when
// none is. encoding/json keeps the last of them, so a value read elsewhere
// could mean something else. Values without an object inside are not
// scanned again.
func RepeatedKey(raw []byte) string {
	return repeatedKey(raw, "")
}

func repeatedKey(raw []byte, path string) string {
	found := ""
	stop := errors.New("found")
	at := func(key string) string {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	switch Kind(raw) {
	case "object":
		seen := map[string]bool{}
		container(raw, '{', func(key string, value []byte) error {
			if seen[key] {
				found = at(key)
				return stop
			}
			seen[key] = true
			if bytes.IndexByte(value, '{') >= 0 {
				if found = repeatedKey(value, at(key)); found != "" {
					return stop
				}
			}
			return nil
		})
	case "array":
		i := 0
		container(raw, '[', func(_ string, value []byte) error {
			if bytes.IndexByte(value, '{') >= 0 {
				if found = repeatedKey(value, fmt.Sprintf("%s[%d]", path, i)); found != "" {
					return stop
				}
			}
			i++
			return nil
		})
	}
	return found
}
