package definition

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// References let a task's input (and a definition's output) use the run's
// input and the outputs of upstream tasks:
//
//	"${workflow.input}"            the run's input
//	"${workflow.input.user.id}"    a field of it
//	"${fetch.output.body.items.0}" a field of task fetch's output (0 indexes an array)
//
// A string that is exactly one reference becomes the referenced JSON value;
// references inside a longer string are replaced by their text (strings as
// they are, other values as JSON). References are checked when a definition
// is registered (a task may only reference its ancestors) and resolved when
// the task becomes ready; the resolved input is recorded in task.ready.

// ref is one parsed reference.
type ref struct {
	text string   // as written, without ${ }
	root string   // "workflow" or a task id
	path []string // after "input" / "output"
}

// scanRefs calls fn for every reference in every string of a JSON document.
// It returns the first error fn returns or the document's own.
func scanRefs(doc json.RawMessage, fn func(r ref) error) error {
	if !bytes.Contains(doc, []byte("${")) {
		return nil
	}
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return err
	}
	var walk func(v any) error
	walk = func(v any) error {
		switch x := v.(type) {
		case string:
			return splitRefs(x, func(string) error { return nil }, fn)
		case []any:
			for _, e := range x {
				if err := walk(e); err != nil {
					return err
				}
			}
		case map[string]any:
			for _, e := range x {
				if err := walk(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(v)
}

// refFormError is a reference that is neither ${workflow.input...} nor
// ${TASK.output...}.
type refFormError struct{ text string }

func (e *refFormError) Error() string {
	return fmt.Sprintf("reference ${%s}: write ${workflow.input...} or ${TASK.output...}", e.text)
}

// parseRef reads "root.kind.path..." where kind is input for workflow and
// output for a task.
func parseRef(text string) (ref, error) {
	parts := strings.Split(strings.TrimSpace(text), ".")
	r := ref{text: text, root: parts[0]}
	want := "output"
	if r.root == "workflow" {
		want = "input"
	}
	if len(parts) < 2 || parts[1] != want {
		return r, &refFormError{text: text}
	}
	for _, p := range parts[2:] {
		if p == "" {
			return r, fmt.Errorf("reference ${%s}: empty path segment", text)
		}
	}
	r.path = parts[2:]
	return r, nil
}

// splitRefs walks s in order, calling text with each run of literal text
// (possibly empty) and ref with each reference, and stops at the first error.
func splitRefs(s string, text func(string) error, ref func(ref) error) error {
	rest := s
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			return text(rest)
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("reference in %q: missing }", truncate(s))
		}
		r, err := parseRef(rest[i+2 : i+j])
		if err != nil {
			return err
		}
		if err := text(rest[:i]); err != nil {
			return err
		}
		if err := ref(r); err != nil {
			return err
		}
		rest = rest[i+j+1:]
	}
}

// walkPath follows a reference's path into a decoded JSON value.
func walkPath(v any, r ref) (any, error) {
	for i, p := range r.path {
		switch x := v.(type) {
		case map[string]any:
			next, ok := x[p]
			if !ok {
				return nil, fmt.Errorf("reference ${%s}: no field %q at %s", r.text, p, pathPrefix(r, i))
			}
			v = next
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n >= len(x) {
				return nil, fmt.Errorf("reference ${%s}: no index %s in an array of %d at %s", r.text, p, len(x), pathPrefix(r, i))
			}
			v = x[n]
		default:
			return nil, fmt.Errorf("reference ${%s}: %s is not an object or array", r.text, pathPrefix(r, i))
		}
	}
	return v, nil
}

func pathPrefix(r ref, n int) string {
	kind := "output"
	if r.root == "workflow" {
		kind = "input"
	}
	return strings.Join(append([]string{r.root, kind}, r.path[:n]...), ".")
}

// checkRefs reports references that cannot resolve: unknown tasks, and for
// task inputs, tasks that are not ancestors. Compile calls it on a valid plan.
func checkRefs(plan *Plan, add func(task, field, msg string)) {
	for i := range plan.Tasks {
		pt := &plan.Tasks[i]
		if !bytes.Contains(pt.Input, []byte("${")) {
			continue
		}
		var anc map[string]bool
		err := scanRefs(pt.Input, func(r ref) error {
			if r.root == "workflow" {
				return nil
			}
			if !slices.Contains(pt.RefTasks, r.root) {
				pt.RefTasks = append(pt.RefTasks, r.root)
			}
			if _, ok := plan.Index[r.root]; !ok {
				return fmt.Errorf("reference ${%s}: unknown task %q", r.text, r.root)
			}
			if anc == nil {
				anc = ancestors(plan, i)
			}
			if !anc[r.root] {
				return fmt.Errorf("reference ${%s}: task %q is not upstream of %q (add it to depends_on)", r.text, r.root, pt.ID)
			}
			return nil
		})
		if err != nil {
			add(pt.ID, "input", err.Error())
		}
		pt.Refs = true
	}
	if bytes.Contains(plan.Def.Output, []byte("${")) {
		err := scanRefs(plan.Def.Output, func(r ref) error {
			if r.root == "workflow" {
				return nil
			}
			if _, ok := plan.Index[r.root]; !ok {
				return fmt.Errorf("reference ${%s}: unknown task %q", r.text, r.root)
			}
			if !slices.Contains(plan.OutputRefTasks, r.root) {
				plan.OutputRefTasks = append(plan.OutputRefTasks, r.root)
			}
			return nil
		})
		if err != nil {
			add("", "output", err.Error())
		}
	}
}

// ancestors returns the ids of every task pos depends on, directly or not.
func ancestors(plan *Plan, pos int) map[string]bool {
	seen := map[string]bool{}
	stack := append([]int(nil), plan.Tasks[pos].Deps...)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if id := plan.Tasks[p].ID; !seen[id] {
			seen[id] = true
			stack = append(stack, plan.Tasks[p].Deps...)
		}
	}
	return seen
}

// Render resolves the references of a template (a task's input or the run's
// output) against src. It writes the result as it goes and stops with
// ErrTooLarge as soon as it would pass limit bytes, so that a template
// repeating a large reference costs at most limit bytes of work, not its full
// expansion.
func Render(tmpl json.RawMessage, src *Source, limit int) (json.RawMessage, error) {
	var doc any
	dec := json.NewDecoder(bytes.NewReader(tmpl))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	r := &renderer{src: src, limit: limit, roots: map[string]any{}, encoded: map[string][]byte{}}
	if err := r.value(doc); err != nil {
		return nil, err
	}
	return r.buf, nil
}
