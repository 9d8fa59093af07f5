package definition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// fieldKey names a field of the definition (rank rankDefinition) or of task rank.
type fieldKey struct {
	rank  int
	field string
}

// parser decodes a definition field by field, collecting problems.
type parser struct {
	problems problemList
	// failed marks the fields that could not be decoded at all and so kept
	// their zero value; CompileJSON drops what Compile says about them.
	failed map[fieldKey]bool
	deep   bool // a field nested too deeply was reported
}

// nested keeps a copy of a free-form JSON value found within levels of the
// definition's top, or reports it when it nests past strictjson.MaxDepth
// counted from there, and returns nil.
func (p *parser) nested(rank int, task, field string, raw json.RawMessage, within int) json.RawMessage {
	if limit := strictjson.MaxDepth - within; strictjson.Depth(raw, limit) > limit {
		p.fail(rank, task, field, fmt.Sprintf("nests objects and arrays more than %d levels deep, the limit", limit))
		p.deep = true
		return nil
	}
	return rawValue(raw)
}

// fail records a problem with a field that could not be decoded.
func (p *parser) fail(rank int, task, field, msg string) {
	p.problems.add(rank, task, field, msg)
	p.failed[fieldKey{rank, field}] = true
}

// parseDefinition is ParseDefinition keeping what CompileJSON needs.
func parseDefinition(data []byte) (*Definition, *parser) {
	p := &parser{failed: make(map[fieldKey]bool)}
	if len(data) > MaxDefinitionBytes {
		p.problems.add(rankDefinition, "", "",
			fmt.Sprintf("definition is %d bytes, over the limit of %d bytes", len(data), MaxDefinitionBytes))
		return nil, p
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		p.problems.add(rankDefinition, "", "", strictjson.DescribeError(err))
		return nil, p
	}
	if kind := strictjson.Kind(raw); kind != "object" {
		p.problems.add(rankDefinition, "", "", "definition must be a JSON object, got "+kind)
		return nil, p
	}
	members, err := strictjson.Members(raw)
	if err != nil { // cannot happen: raw was decoded as a JSON object
		p.problems.add(rankDefinition, "", "", strictjson.DescribeError(err))
		return nil, p
	}
	if rest := bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		p.problems.add(rankDefinition, "", "",
			fmt.Sprintf("unexpected data after the JSON object at byte %d", len(data)-len(rest)))
	}

	def := &Definition{}
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		field := truncate(m.Key)
		if seen[m.Key] {
			p.problems.add(rankDefinition, "", field, "duplicate field")
			continue
		}
		seen[m.Key] = true
		switch m.Key {
		case "name":
			def.Name = p.str(rankDefinition, "", field, m.Value)
		case "description":
			def.Description = p.str(rankDefinition, "", field, m.Value)
		case "tasks":
			def.Tasks = p.tasks(m.Value)
		case "timeout":
			def.Timeout = p.str(rankDefinition, "", field, m.Value)
		case "max_parallel":
			def.MaxParallel = p.integer(rankDefinition, "", field, m.Value)
		case "output":
			def.Output = p.nested(rankDefinition, "", field, m.Value, 1)
		case "concurrency":
			def.Concurrency = p.concurrency(m.Value)
		default:
			p.problems.add(rankDefinition, "", field, "unknown field "+quote(m.Key))
		}
	}
	if !p.deep && strictjson.Depth(raw, strictjson.MaxDepth) > strictjson.MaxDepth {
		// Deep somewhere no field check looked: refuse it all the same, so
		// that nothing the database would refuse is ever called valid.
		p.problems.add(rankDefinition, "", "", fmt.Sprintf("definition nests objects and arrays more than %d levels deep, the limit", strictjson.MaxDepth))
	}
	return def, p
}

// tasks decodes the task list.
func (p *parser) tasks(raw json.RawMessage) []TaskDef {
	kind := strictjson.Kind(raw)
	if kind == "null" {
		return nil
	}
	elems, err := strictjson.Elements(raw)
	if kind != "array" || err != nil {
		p.fail(rankDefinition, "", "tasks", "must be an array of task objects, got "+kind)
		return nil
	}
	if len(elems) > MaxTasks {
		// Decoding them would only bury the one problem that matters under
		// thousands of others; Compile would not look at them either.
		p.fail(rankDefinition, "", "tasks", tooManyTasks(len(elems)))
		return nil
	}
	tasks := make([]TaskDef, len(elems))
	for i, e := range elems {
		tasks[i] = p.task(i, e)
	}
	return tasks
}

// task decodes task i.
func (p *parser) task(i int, raw json.RawMessage) TaskDef {
	var t TaskDef
	label := taskLabel(i, "")
	kind := strictjson.Kind(raw)
	var members []strictjson.Member
	var err error
	if kind == "object" {
		members, err = strictjson.Members(raw)
	}
	if kind != "object" || err != nil {
		p.fail(i, label, "", "must be a JSON object, got "+kind)
		p.failed[fieldKey{i, wholeTask}] = true
		return t
	}
	for _, m := range members { // name the task by its id, as Compile does
		if m.Key == "id" {
			if id, ok := strictjson.DecodeString(m.Value); ok {
				label = taskLabel(i, id)
			}
			break
		}
	}

	seen := make(map[string]bool, len(members))
	for _, m := range members {
		field := truncate(m.Key)
		if seen[m.Key] {
			p.problems.add(i, label, field, "duplicate field")
			continue
		}
		seen[m.Key] = true
		switch m.Key {
		case "id":
			t.ID = p.str(i, label, field, m.Value)
		case "type":
			t.Type = p.str(i, label, field, m.Value)
		case "depends_on":
			t.DependsOn = p.ids(i, label, field, m.Value)
		case "priority":
			t.Priority = p.integer(i, label, field, m.Value)
		case "retry":
			t.Retry = p.retry(i, label, m.Value)
		case "timeout":
			t.Timeout = p.str(i, label, field, m.Value)
		case "input", "config":
			// The definition, its task list and the task are three levels.
			v := p.nested(i, label, field, m.Value, 3)
			if m.Key == "input" {
				t.Input = v
			} else {
				t.Config = v
			}
		default:
			p.problems.add(i, label, field, "unknown field "+quote(m.Key))
		}
	}
	if t.Config != nil || isBuiltinType(t.Type) {
		checkConfig(t.Type, t.Config, false, func(field, msg string) { p.problems.add(i, label, field, msg) })
	}
	return t
}

// retry decodes a task's retry policy.
func (p *parser) retry(i int, label string, raw json.RawMessage) *RetryPolicy {
	kind := strictjson.Kind(raw)
	if kind == "null" {
		return nil
	}
	var members []strictjson.Member
	var err error
	if kind == "object" {
		members, err = strictjson.Members(raw)
	}
	if kind != "object" || err != nil {
		p.fail(i, label, "retry", "must be a JSON object, got "+kind)
		return nil
	}
	r := &RetryPolicy{}
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		field := "retry." + truncate(m.Key)
		if seen[m.Key] {
			p.problems.add(i, label, field, "duplicate field")
			continue
		}
		seen[m.Key] = true
		switch m.Key {
		case "max_attempts":
			r.MaxAttempts = p.integer(i, label, field, m.Value)
		case "initial_interval":
			r.InitialInterval = p.str(i, label, field, m.Value)
		case "backoff":
			r.Backoff = p.number(i, label, field, m.Value)
		case "max_interval":
			r.MaxInterval = p.str(i, label, field, m.Value)
		case "jitter":
			r.Jitter = p.number(i, label, field, m.Value)
		case "non_retryable_errors":
			r.NonRetryableErrors = p.ids(i, label, field, m.Value)
		default:
			p.problems.add(i, label, field, "unknown field "+quote(m.Key))
		}
	}
	return r
}

// str decodes a string; null is the zero value.
func (p *parser) str(rank int, task, field string, raw json.RawMessage) string {
	if strictjson.Kind(raw) == "null" {
		return ""
	}
	s, ok := strictjson.DecodeString(raw)
	if !ok {
		p.fail(rank, task, field, "must be a string, got "+strictjson.Kind(raw))
	}
	return s
}

// integer decodes an integer (no fraction, no exponent) that fits an int; null is 0.
func (p *parser) integer(rank int, task, field string, raw json.RawMessage) int {
	kind := strictjson.Kind(raw)
	switch kind {
	case "null":
		return 0
	case "number":
	default:
		p.fail(rank, task, field, "must be an integer, got "+kind)
		return 0
	}
	lit := string(bytes.TrimSpace(raw))
	n, err := strconv.Atoi(lit)
	switch {
	case errors.Is(err, strconv.ErrRange):
		p.fail(rank, task, field, "integer "+truncate(lit)+" is out of range")
	case err != nil:
		p.fail(rank, task, field, "must be an integer, got "+truncate(lit))
	}
	return n
}

// number decodes a finite JSON number; null is 0.
func (p *parser) number(rank int, task, field string, raw json.RawMessage) float64 {
	kind := strictjson.Kind(raw)
	switch kind {
	case "null":
		return 0
	case "number":
	default:
		p.fail(rank, task, field, "must be a number, got "+kind)
		return 0
	}
	lit := string(bytes.TrimSpace(raw))
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		p.fail(rank, task, field, "number "+truncate(lit)+" is out of range")
		return 0
	}
	return f
}

// ids decodes a list of task ids; an item that is not a string is reported at
// FIELD[k] and left out.
func (p *parser) ids(rank int, task, field string, raw json.RawMessage) []string {
	kind := strictjson.Kind(raw)
	if kind == "null" {
		return nil
	}
	elems, err := strictjson.Elements(raw)
	if kind != "array" || err != nil {
		p.fail(rank, task, field, "must be an array of task ids, got "+kind)
		return nil
	}
	out := make([]string, 0, len(elems))
	for k, e := range elems {
		s, ok := strictjson.DecodeString(e)
		if !ok {
			p.problems.add(rank, task, field+"["+strconv.Itoa(k)+"]", "must be a string, got "+strictjson.Kind(e))
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// rawValue keeps a copy of any JSON value; null is the same as absent.
func rawValue(raw json.RawMessage) json.RawMessage {
	if strictjson.Kind(raw) == "null" {
		return nil
	}
	return bytes.Clone(raw)
}
