package definition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Source is what the references of one template may read: the run's input
// and the outputs of the tasks it names. A run's input never changes, nor does
// the output of a completed task (a completed task is never reset), so the
// engine can take a Source under its lock and render without it.
type Source struct {
	Input   json.RawMessage
	Outputs map[string]json.RawMessage // completed tasks, by id
	States  map[string]string          // named tasks that have not completed: their state, by id
}

// ErrTooLarge marks a value over its size limit.
var ErrTooLarge = errors.New("too large")

// renderer writes a resolved template within a byte budget.
type renderer struct {
	src     *Source
	limit   int
	buf     []byte
	roots   map[string]any    // decoded run input ("") and task outputs, by root
	encoded map[string][]byte // JSON of each reference already looked up, by its text
}

// write appends b, or fails when the result would pass the limit.
func (r *renderer) write(b []byte) error {
	if len(r.buf)+len(b) > r.limit {
		return fmt.Errorf("resolved value is over %d bytes, the limit: %w", r.limit, ErrTooLarge)
	}
	r.buf = append(r.buf, b...)
	return nil
}

// value writes one value of the template: strings are rendered, objects and
// arrays walked, anything else written as it is.
func (r *renderer) value(x any) error {
	switch y := x.(type) {
	case string:
		return r.str(y)
	case []any:
		if err := r.write([]byte{'['}); err != nil {
			return err
		}
		for i, e := range y {
			if i > 0 {
				if err := r.write([]byte{','}); err != nil {
					return err
				}
			}
			if err := r.value(e); err != nil {
				return err
			}
		}
		return r.write([]byte{']'})
	case map[string]any:
		keys := make([]string, 0, len(y))
		for k := range y {
			keys = append(keys, k)
		}
		slices.Sort(keys) // the order encoding/json writes maps in
		if err := r.write([]byte{'{'}); err != nil {
			return err
		}
		for i, k := range keys {
			if i > 0 {
				if err := r.write([]byte{','}); err != nil {
					return err
				}
			}
			kb, _ := json.Marshal(k)
			if err := r.write(append(kb, ':')); err != nil {
				return err
			}
			if err := r.value(y[k]); err != nil {
				return err
			}
		}
		return r.write([]byte{'}'})
	}
	b, err := json.Marshal(x)
	if err != nil {
		return err
	}
	return r.write(b)
}

// str writes a string of the template: the referenced value when the string
// is exactly one reference, else the text with its references replaced.
func (r *renderer) str(s string) error {
	if !strings.Contains(s, "${") {
		b, _ := json.Marshal(s)
		return r.write(b)
	}
	if strings.HasPrefix(s, "${") && strings.IndexByte(s, '}') == len(s)-1 {
		ref, err := parseRef(s[2 : len(s)-1])
		if err != nil {
			return err
		}
		b, err := r.encode(ref)
		if err != nil {
			return err
		}
		return r.write(b)
	}
	// The text can be no longer than the budget left: its JSON is longer still.
	room := r.limit - len(r.buf)
	var text strings.Builder
	add := func(part string) error {
		if text.Len()+len(part) > room {
			return fmt.Errorf("resolved value is over %d bytes, the limit: %w", r.limit, ErrTooLarge)
		}
		text.WriteString(part)
		return nil
	}
	err := splitRefs(s, add, func(ref ref) error {
		part, err := r.text(ref)
		if err != nil {
			return err
		}
		return add(part)
	})
	if err != nil {
		return err
	}
	b, _ := json.Marshal(text.String())
	return r.write(b)
}

// text is a reference's value as it reads inside longer text: strings as
// they are, anything else as JSON.
func (r *renderer) text(ref ref) (string, error) {
	x, err := r.lookup(ref)
	if err != nil {
		return "", err
	}
	if s, ok := x.(string); ok {
		return s, nil
	}
	b, err := r.encode(ref)
	return string(b), err
}

// encode returns the JSON of a reference's value, encoding each reference once.
func (r *renderer) encode(ref ref) ([]byte, error) {
	if b, ok := r.encoded[ref.text]; ok {
		return b, nil
	}
	x, err := r.lookup(ref)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(x)
	if err != nil {
		return nil, err
	}
	r.encoded[ref.text] = b
	return b, nil
}

// lookup returns the value a reference names.
func (r *renderer) lookup(ref ref) (any, error) {
	key, raw := "", r.src.Input
	if ref.root != "workflow" {
		out, ok := r.src.Outputs[ref.root]
		if !ok {
			if st, known := r.src.States[ref.root]; known {
				return nil, fmt.Errorf("reference ${%s}: task %q is %s, not completed", ref.text, ref.root, st)
			}
			return nil, fmt.Errorf("reference ${%s}: unknown task %q", ref.text, ref.root)
		}
		key, raw = "task:"+ref.root, out
	}
	root, ok := r.roots[key]
	if !ok {
		if len(raw) > 0 {
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if err := d.Decode(&root); err != nil {
				return nil, err
			}
		}
		r.roots[key] = root
	}
	return walkPath(root, ref)
}
