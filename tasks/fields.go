package tasks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// value is one field of a task's request and where it came from, so that a
// problem names "config.url" or "input.url".
type value struct {
	raw   json.RawMessage
	field string
}

// fields is a task's request: config fields with input fields merged over them.
type fields map[string]value

// problems collects what is wrong with a request.
type problems []definition.Problem

func (ps *problems) add(field, msg string) {
	*ps = append(*ps, definition.Problem{Field: field, Message: msg})
}

// message joins the problems into one line for a TaskError.
func (ps problems) message() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Field)
		b.WriteString(": ")
		b.WriteString(p.Message)
	}
	return b.String()
}

// mergeFields reads config (its unknown fields are problems) and, when input
// is a JSON object, the fields of input that known names, which replace the
// config's. An absent or null config is no fields.
func mergeFields(config, input json.RawMessage, known map[string]bool, ps *problems) fields {
	f := make(fields)
	switch kind := strictjson.Kind(config); kind {
	case "", "null":
	case "object":
		members, err := strictjson.Members(config)
		if err != nil {
			ps.add("config", "invalid JSON")
			break
		}
		for _, m := range members {
			field := "config." + m.Key
			switch {
			case !known[m.Key]:
				ps.add(field, "unknown field")
			case f[m.Key].raw != nil:
				ps.add(field, "duplicate field")
			default:
				f[m.Key] = value{raw: m.Value, field: field}
			}
		}
	default:
		ps.add("config", "must be a JSON object or null, got "+kind)
	}
	if strictjson.Kind(input) != "object" {
		return f
	}
	members, err := strictjson.Members(input)
	if err != nil {
		ps.add("input", "invalid JSON")
		return f
	}
	for _, m := range members {
		if known[m.Key] {
			f[m.Key] = value{raw: m.Value, field: "input." + m.Key}
		}
	}
	return f
}

// present reports whether the field is set to something other than null.
func (f fields) present(name string) bool {
	k := strictjson.Kind(f[name].raw)
	return k != "" && k != "null"
}

// str reads a string field; ok is false (and a problem added) when it is set
// to something else. An absent or null field is "", true.
func (f fields) str(name string, ps *problems) (string, bool) {
	v := f[name]
	if !f.present(name) {
		return "", true
	}
	var s string
	if strictjson.Kind(v.raw) != "string" || json.Unmarshal(v.raw, &s) != nil {
		ps.add(v.field, "must be a string, got "+strictjson.Kind(v.raw))
		return "", false
	}
	if strings.IndexByte(s, 0) >= 0 {
		ps.add(v.field, "must not contain NUL bytes")
		return "", false
	}
	return s, true
}

// boolean reads a boolean field; absent is false.
func (f fields) boolean(name string, ps *problems) bool {
	v := f[name]
	if !f.present(name) {
		return false
	}
	var b bool
	if strictjson.Kind(v.raw) != "boolean" || json.Unmarshal(v.raw, &b) != nil {
		ps.add(v.field, "must be true or false, got "+strictjson.Kind(v.raw))
		return false
	}
	return b
}

// integer reads an integer field within lo..hi; absent is 0.
func (f fields) integer(name string, lo, hi int64, ps *problems) int64 {
	v := f[name]
	if !f.present(name) {
		return 0
	}
	n, msg := parseInteger(v.raw, lo, hi)
	if msg != "" {
		ps.add(v.field, msg)
	}
	return n
}

// parseInteger reads a JSON integer within lo..hi, or says what is wrong.
func parseInteger(raw json.RawMessage, lo, hi int64) (int64, string) {
	if strictjson.Kind(raw) != "number" {
		return 0, "must be an integer, got " + strictjson.Kind(raw)
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Sprintf("must be an integer from %d to %d, got %s", lo, hi, truncate(string(raw)))
	}
	return n, ""
}

// duration reads a Go duration string ("30s"), positive and at most
// definition.MaxDurationLimit; absent is 0.
func (f fields) duration(name string, ps *problems) time.Duration {
	s, ok := f.str(name, ps)
	if !ok || !f.present(name) {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		ps.add(f[name].field, fmt.Sprintf("must be a Go duration such as \"30s\", got %q", truncate(s)))
		return 0
	case d <= 0:
		ps.add(f[name].field, fmt.Sprintf("must be positive, got %q", truncate(s)))
		return 0
	case d > definition.MaxDurationLimit:
		ps.add(f[name].field, fmt.Sprintf("must be at most %s, got %q", definition.MaxDurationLimit, truncate(s)))
		return 0
	}
	return d
}

// strings reads an array of strings; absent is nil.
func (f fields) strings(name string, ps *problems) []string {
	v := f[name]
	if !f.present(name) {
		return nil
	}
	var raws []json.RawMessage
	if strictjson.Kind(v.raw) != "array" || json.Unmarshal(v.raw, &raws) != nil {
		ps.add(v.field, "must be an array of strings, got "+strictjson.Kind(v.raw))
		return nil
	}
	out := make([]string, 0, len(raws))
	for i, r := range raws {
		var s string
		switch kind := strictjson.Kind(r); kind {
		case "number", "boolean":
			// A reference such as "${fetch.output.body.id}" keeps its JSON
			// type; as an argument it stands for its text.
			s = string(bytes.TrimSpace(r))
		default:
			if kind != "string" || json.Unmarshal(r, &s) != nil {
				ps.add(fmt.Sprintf("%s[%d]", v.field, i), "must be a string, number or boolean, got "+kind)
				continue
			}
		}
		if strings.IndexByte(s, 0) >= 0 {
			ps.add(fmt.Sprintf("%s[%d]", v.field, i), "must not contain NUL bytes")
			continue
		}
		out = append(out, s)
	}
	return out
}

// stringMap reads an object of string values; absent is nil. Keys are
// checked by checkKey, values must not contain NUL bytes.
func (f fields) stringMap(name string, checkKey func(string) string, ps *problems) map[string]string {
	v := f[name]
	if !f.present(name) {
		return nil
	}
	if strictjson.Kind(v.raw) != "object" {
		ps.add(v.field, "must be an object of strings, got "+strictjson.Kind(v.raw))
		return nil
	}
	members, err := strictjson.Members(v.raw)
	if err != nil {
		ps.add(v.field, "invalid JSON")
		return nil
	}
	out := make(map[string]string, len(members))
	for _, m := range members {
		field := v.field + "." + m.Key
		if msg := checkKey(m.Key); msg != "" {
			ps.add(field, msg)
			continue
		}
		var s string
		if strictjson.Kind(m.Value) != "string" || json.Unmarshal(m.Value, &s) != nil {
			ps.add(field, "must be a string, got "+strictjson.Kind(m.Value))
			continue
		}
		if strings.IndexByte(s, 0) >= 0 {
			ps.add(field, "must not contain NUL bytes")
			continue
		}
		out[m.Key] = s
	}
	return out
}

// truncate shortens a user's value quoted in a message.
func truncate(s string) string {
	const maxQuoted = 80
	if len(s) <= maxQuoted {
		return s
	}
	return s[:maxQuoted] + "..."
}

// tail returns the last n bytes of s, marked when cut.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
