package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// invalidUTF8 is the problem of a body with a byte sequence that is not
// UTF-8: it names the field whose key or value holds the first one.
func invalidUTF8(body []byte) *Problem {
	off := 0
	for off < len(body) {
		r, n := utf8.DecodeRune(body[off:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		off += n
	}
	msg := fmt.Sprintf("is not valid UTF-8 (byte 0x%02x at offset %d)", body[min(off, len(body)-1)], off)
	if field := badUTF8Field(body, ""); field != "" {
		p := newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, field+": "+msg)
		p.Errors = []wire.FieldError{{Field: field, Message: msg}}
		return p
	}
	return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, "the request body "+msg)
}

// badUTF8Field returns the path of the field of raw (at path) whose key or
// value holds the first byte sequence that is not UTF-8: the deepest one
// that does, or path itself for a string.
func badUTF8Field(raw []byte, path string) string {
	found := path
	stop := errors.New("found")
	switch strictjson.Kind(raw) {
	case "object":
		strictjson.EachMember(raw, func(key string, value []byte) error {
			at := joinField(path, key)
			switch {
			case strings.ContainsRune(key, utf8.RuneError): // decoding replaced the bad bytes
				found = at
			case !utf8.Valid(value):
				found = badUTF8Field(value, at)
			default:
				return nil
			}
			return stop
		})
	case "array":
		i := 0
		strictjson.EachElement(raw, func(value []byte) error {
			if !utf8.Valid(value) {
				found = badUTF8Field(value, path+"["+strconv.Itoa(i)+"]")
				return stop
			}
			i++
			return nil
		})
	}
	return found
}

func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// checkKeys refuses, at every depth of a valid JSON body, what encoding/json
// would accept loosely: a key given twice in one object (it keeps the last)
// and, in an object decoded into a struct of v, a key that is not exactly
// one of the struct's JSON names (it matches them ignoring case). Free-form
// values (a run's input, a task's output) may have any keys, each once.
func checkKeys(body []byte, v any) error {
	err := checkValue(body, shapeOf(reflect.TypeOf(v)), "", 1)
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return nil // not JSON: the caller's decoder reports it
}

// checkValue checks the JSON value raw, at path and depth (the body is at
// 1), against its shape. It stops below the body's field at the engine's
// depth limit: the engine refuses anything nested deeper, and each level
// costs a scan of what it holds.
func checkValue(raw []byte, sh *shape, path string, depth int) error {
	if depth > strictjson.MaxDepth+1 {
		return nil
	}
	switch strictjson.Kind(raw) {
	case "object":
		seen := map[string]bool{}
		return strictjson.EachMember(raw, func(key string, value []byte) error {
			if seen[key] {
				return fieldProblem(joinField(path, key), "given more than once")
			}
			seen[key] = true
			var sub *shape
			if sh != nil && sh.fields != nil {
				s, ok := sh.fields[key]
				if !ok {
					return fieldProblem(joinField(path, key), "unknown field")
				}
				sub = s
			}
			if !holdsKeys(value) {
				return nil
			}
			return checkValue(value, sub, joinField(path, key), depth+1)
		})
	case "array":
		var elem *shape
		if sh != nil {
			elem = sh.elem
		}
		i := -1
		return strictjson.EachElement(raw, func(value []byte) error {
			if i++; !holdsKeys(value) {
				return nil
			}
			return checkValue(value, elem, path+"["+strconv.Itoa(i)+"]", depth+1)
		})
	}
	return nil
}

// holdsKeys reports whether a JSON value is an object, or an array with an
// object somewhere inside: the values checkValue has to look into. An array
// without one is passed over whole, however deep.
func holdsKeys(raw []byte) bool {
	switch strictjson.Kind(raw) {
	case "object":
		return true
	case "array":
		return bytes.IndexByte(raw, '{') >= 0
	}
	return false
}

// shape is what a request type allows at one place of a document: the
// fields of a struct, each with its shape, or the elements of an array. A
// nil *shape is a free-form value.
type shape struct {
	fields map[string]*shape // a struct's JSON names; nil: not a struct
	elem   *shape            // an array's elements
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// shapeOf derives the shape of a Go type as encoding/json decodes it.
// Types that decode themselves (time.Time, json.RawMessage) are free-form.
func shapeOf(t reflect.Type) *shape {
	if t == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if p := reflect.PointerTo(t); p.Implements(unmarshalerType) || p.Implements(textUnmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		sh := &shape{fields: map[string]*shape{}}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if f.Anonymous && name == "" {
				// An embedded struct's fields are the outer object's, as
				// encoding/json decodes them.
				if sub := shapeOf(f.Type); sub != nil && sub.fields != nil {
					maps.Copy(sh.fields, sub.fields)
					continue
				}
			}
			if name == "" {
				name = f.Name
			}
			sh.fields[name] = shapeOf(f.Type)
		}
		return sh
	case reflect.Slice, reflect.Array:
		if elem := shapeOf(t.Elem()); elem != nil {
			return &shape{elem: elem}
		}
	}
	return nil
}

var (
	timeType       = reflect.TypeFor[time.Time]()
	rawMessageType = reflect.TypeFor[json.RawMessage]()
)

// badValueField finds the field of raw, decoded into a value of type t (at
// path), whose own decoder refuses it (a time that is not RFC 3339, or not
// a string): encoding/json reports such an error without naming the field.
// It returns nil when no field is refused.
func badValueField(raw []byte, t reflect.Type, path string) *Problem {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t == rawMessageType || strictjson.Kind(raw) == "null" {
		return nil
	}
	if p := reflect.PointerTo(t); p.Implements(unmarshalerType) {
		err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw)
		switch {
		case err == nil:
			return nil
		case t == timeType:
			return fieldProblem(path, fmt.Sprintf("must be an RFC 3339 time like 2026-01-02T15:04:05Z, not %s", raw))
		}
		return fieldProblem(path, err.Error())
	}
	var found *Problem
	stop := errors.New("found")
	switch t.Kind() {
	case reflect.Struct:
		fields := fieldTypes(t)
		strictjson.EachMember(raw, func(key string, value []byte) error {
			if ft, ok := fields[key]; ok {
				if found = badValueField(value, ft, joinField(path, key)); found != nil {
					return stop
				}
			}
			return nil
		})
	case reflect.Slice, reflect.Array:
		i := 0
		strictjson.EachElement(raw, func(value []byte) error {
			if found = badValueField(value, t.Elem(), path+"["+strconv.Itoa(i)+"]"); found != nil {
				return stop
			}
			i++
			return nil
		})
	}
	return found
}

// fieldTypes maps the JSON names of a struct's fields to their types, the
// fields of embedded structs included, as encoding/json decodes them.
func fieldTypes(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if ft := f.Type; f.Anonymous && name == "" {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(unmarshalerType) {
				maps.Copy(out, fieldTypes(ft))
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
