package definition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Input templates: a string over the run's input alone, such as an alias's
// sticky key "${workflow.input.customer}", rendered before the run exists.

// CheckInputTemplate returns why s cannot be a template over the run's
// input: a reference to a task, a malformed reference, or none at all.
func CheckInputTemplate(s string) error {
	n := 0
	err := splitRefs(s, func(string) error { return nil }, func(r ref) error {
		if r.root != "workflow" {
			return fmt.Errorf("reference ${%s}: only the run input (${workflow.input...}) can be referenced here", r.text)
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("must reference the run input, e.g. ${workflow.input.customer}")
	}
	return nil
}

// MissingFieldError is a reference of an input template to a field the
// input lacks. Field is its path from the input ("input.customer").
type MissingFieldError struct {
	Field string
	Err   error
}

func (e *MissingFieldError) Error() string { return e.Err.Error() }

func (e *MissingFieldError) Unwrap() error { return e.Err }

// RenderInputTemplate renders a template CheckInputTemplate accepts over a
// run's input: a template that is exactly one reference gives the JSON of
// the value, longer text gives the text with each reference replaced (strings
// as they are, other values as JSON). A result over limit bytes fails with
// ErrTooLarge; a reference the input cannot resolve with a
// *MissingFieldError.
func RenderInputTemplate(s string, input json.RawMessage, limit int) ([]byte, error) {
	var root any
	if len(input) > 0 {
		d := json.NewDecoder(bytes.NewReader(input))
		d.UseNumber()
		if err := d.Decode(&root); err != nil {
			return nil, err
		}
	}
	lookup := func(r ref) (any, error) {
		if r.root != "workflow" {
			return nil, fmt.Errorf("reference ${%s}: only the run input can be referenced here", r.text)
		}
		v, err := walkPath(root, r)
		if err == nil {
			return v, nil
		}
		// Name the first segment of the path that does not resolve.
		n := 1
		for ; n < len(r.path); n++ {
			if _, e := walkPath(root, ref{text: r.text, root: r.root, path: r.path[:n]}); e != nil {
				break
			}
		}
		return nil, &MissingFieldError{Field: strings.Join(append([]string{"input"}, r.path[:n]...), "."), Err: err}
	}
	var out []byte
	if strings.HasPrefix(s, "${") && strings.IndexByte(s, '}') == len(s)-1 {
		r, err := parseRef(s[2 : len(s)-1])
		if err != nil {
			return nil, err
		}
		v, err := lookup(r)
		if err != nil {
			return nil, err
		}
		if out, err = json.Marshal(v); err != nil {
			return nil, err
		}
	} else {
		var b strings.Builder
		err := splitRefs(s, func(t string) error {
			b.WriteString(t)
			return nil
		}, func(r ref) error {
			v, err := lookup(r)
			if err != nil {
				return err
			}
			if str, ok := v.(string); ok {
				b.WriteString(str)
			} else {
				j, err := json.Marshal(v)
				if err != nil {
					return err
				}
				b.Write(j)
			}
			if b.Len() > limit {
				return fmt.Errorf("rendered value is over %d bytes, the limit: %w", limit, ErrTooLarge)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = []byte(b.String())
	}
	if len(out) > limit {
		return nil, fmt.Errorf("rendered value of %d bytes is over %d bytes, the limit: %w", len(out), limit, ErrTooLarge)
	}
	return out, nil
}
