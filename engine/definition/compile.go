package definition

import (
	"encoding/json"
	"fmt"
	"time"
)

// ValidateOptions says which task types exist.
type ValidateOptions struct {
	// KnownTypeFunc reports whether a task type other than the built-ins (noop,
	// sleep) can run. nil accepts every well-formed type name.
	KnownTypeFunc func(typ string) bool
	// ConfigFunc checks the config of a task type that is not built in; the
	// problems it returns name fields like "config.url" and leave Task empty.
	// nil checks nothing.
	ConfigFunc func(typ string, config json.RawMessage) []Problem
}

// ParseDefinition decodes a definition from JSON, strictly: it reports every
// unknown field (of the definition, a task, a retry policy, and the config of a
// built-in task type), every duplicate field, every value of the wrong JSON
// type, trailing data after the object, and a document over MaxDefinitionBytes.
// It goes on after a problem so as to report them all; a field it could not
// decode keeps its zero value, and so does the task list when it holds more than
// MaxTasks tasks. The Definition is nil only when the document is too large, is
// not valid JSON, or is not a JSON object. Checks of values (ids, references,
// durations, limits) are left to Compile.
//
// Like Compile, it returns at most 1,000 problems; a last problem then says how
// many more there were.
func ParseDefinition(data []byte) (*Definition, []Problem) {
	def, p := parseDefinition(data)
	return def, p.problems.finish()
}

// Compile validates a decoded definition and builds its Plan. It returns every
// problem at once, in a stable order: those of the definition as a whole, then
// those of each task in declaration order, then cycles. A task is named by its
// id, or by "tasks[i]" when the id is empty or malformed. A cycle is reported
// once for each strongly connected component of the dependency graph, on the
// task with the smallest id in it, as "cycle: a -> b -> c -> a" where each task
// depends on the next. At most 1,000 problems are returned; a last problem then
// says how many more there were. With more than MaxTasks tasks only the
// problems of the definition as a whole are reported.
//
// The Plan is nil when there is any problem. Compile does not modify def; the
// Plan refers to it.
func Compile(def *Definition, opts ValidateOptions) (*Plan, []Problem) {
	plan, ps := compile(def, opts)
	if problems := ps.finish(); problems != nil {
		return nil, problems
	}
	return plan, nil
}

// CompileJSON is ParseDefinition followed by Compile, with the problems of both
// returned together in the order Compile uses. Compile is skipped only when no
// Definition could be decoded at all; a problem Compile would report about a
// field ParseDefinition could not decode (say "name: required" after "name: must
// be a string") is left out. The Definition is returned whenever one was decoded;
// the Plan only when there is no problem.
func CompileJSON(data []byte, opts ValidateOptions) (*Definition, *Plan, []Problem) {
	def, p := parseDefinition(data)
	if def == nil {
		return nil, nil, p.problems.finish()
	}
	plan, cps := compile(def, opts)
	all := p.problems
	for _, rp := range cps {
		if p.failed[fieldKey{rp.rank, rp.Field}] || p.failed[fieldKey{rp.rank, wholeTask}] {
			continue
		}
		all = append(all, rp)
	}
	if problems := all.finish(); problems != nil {
		return def, nil, problems
	}
	return def, plan, nil
}

// compile checks def and, when it finds no problem, builds its Plan.
func compile(def *Definition, opts ValidateOptions) (*Plan, problemList) {
	var ps problemList
	if def == nil {
		ps.add(rankDefinition, "", "", "definition is missing")
		return nil, ps
	}
	addDef := func(field, msg string) { ps.add(rankDefinition, "", field, msg) }

	// The definition as a whole.
	if msg := nameProblem(def.Name); msg != "" {
		addDef("name", msg)
	}
	n := len(def.Tasks)
	switch {
	case n == 0:
		addDef("tasks", "at least one task is required")
	case n > MaxTasks:
		addDef("tasks", tooManyTasks(n))
	}
	var timeout time.Duration
	if def.Timeout != "" {
		d, msg := checkDuration(def.Timeout)
		if msg != "" {
			addDef("timeout", msg)
		}
		timeout = d
	}
	if def.MaxParallel < 0 || def.MaxParallel > MaxTasks {
		addDef("max_parallel", fmt.Sprintf("must be between 0 and %d (0 means no cap), got %d", MaxTasks, def.MaxParallel))
	}
	conc := checkConcurrency(def.Concurrency, addDef)
	if len(def.Output) > 0 && !json.Valid(def.Output) {
		addDef("output", "must be valid JSON")
	}
	if n == 0 || n > MaxTasks {
		// Too many tasks: checking each would only bury the one problem that matters.
		return nil, ps
	}

	labels := make([]string, n)
	index := make(map[string]int, n) // id -> index of its first task
	for i := range def.Tasks {
		id := def.Tasks[i].ID
		labels[i] = taskLabel(i, id)
		if _, dup := index[id]; id != "" && !dup {
			index[id] = i
		}
	}

	// Each task. adj[i] lists the tasks i depends on, once each, known and not i.
	adj := make([][]int, n)
	facts := make([]taskFacts, n)
	known := make(map[string]bool) // KnownTypeFunc's answers
	for i := range def.Tasks {
		t := &def.Tasks[i]
		add := func(field, msg string) { ps.add(i, labels[i], field, msg) }

		if msg := nameProblem(t.ID); msg != "" {
			add("id", msg)
		} else if first := index[t.ID]; first != i {
			add("id", fmt.Sprintf("duplicate task id %s (first at tasks[%d])", quote(t.ID), first))
		}

		if msg := nameProblem(t.Type); msg != "" {
			add("type", msg)
		} else if !isBuiltinType(t.Type) && opts.KnownTypeFunc != nil {
			ok, asked := known[t.Type]
			if !asked {
				ok = opts.KnownTypeFunc(t.Type)
				known[t.Type] = ok
			}
			if !ok {
				add("type", fmt.Sprintf("unknown task type %s: no handler is registered for it", quote(t.Type)))
			}
		}

		if len(t.DependsOn) > 0 {
			adj[i] = make([]int, 0, len(t.DependsOn))
			var seen map[string]int // times each dependency was listed
			if len(t.DependsOn) > 1 {
				seen = make(map[string]int, len(t.DependsOn))
			}
			for _, d := range t.DependsOn {
				if seen != nil {
					seen[d]++
				}
				if times := seen[d]; times > 1 {
					if times == 2 { // once per repeated id, however often it is repeated
						add("depends_on", "duplicate dependency "+quote(d))
					}
					continue
				}
				j, ok := index[d]
				switch {
				case t.ID != "" && d == t.ID:
					add("depends_on", "task depends on itself")
				case !ok:
					add("depends_on", "unknown task "+quote(d))
				default:
					adj[i] = append(adj[i], j)
				}
			}
		}

		if t.Priority < -MaxPriority || t.Priority > MaxPriority {
			add("priority", fmt.Sprintf("must be between %d and %d, got %d", -MaxPriority, MaxPriority, t.Priority))
		}

		if t.Timeout != "" {
			d, msg := checkDuration(t.Timeout)
			if msg != "" {
				add("timeout", msg)
			}
			facts[i].timeout = d
		}

		facts[i].retry = checkRetry(t.Retry, add)

		if len(t.Input) > 0 && !json.Valid(t.Input) {
			add("input", "must be valid JSON")
		}
		if len(t.Config) > 0 && !json.Valid(t.Config) {
			add("config", "must be valid JSON")
		} else {
			facts[i].sleep = checkConfig(t.Type, t.Config, true, add)
			if opts.ConfigFunc != nil && !isBuiltinType(t.Type) && nameProblem(t.Type) == "" {
				for _, p := range opts.ConfigFunc(t.Type, t.Config) {
					add(p.Field, p.Message)
				}
			}
		}
	}

	// Cycles, each spelled from the smallest id of its component.
	for _, cycle := range findCycles(adj, labels) {
		ps.add(rankCycles, labels[cycle[0]], "depends_on", cycleMessage(cycle, labels))
	}

	if len(ps) > 0 {
		return nil, ps
	}
	plan := buildPlan(def, adj, facts, timeout)
	if plan == nil { // cannot happen: every cycle was reported above
		ps.add(rankCycles, "", "depends_on", "cycle")
		return nil, ps
	}
	checkRefs(plan, func(task, field, msg string) {
		if task == "" {
			ps.add(rankDefinition, "", field, msg)
		} else {
			ps.add(index[task], task, field, msg)
		}
	})
	if len(ps) > 0 {
		return nil, ps
	}
	plan.Concurrency = conc
	return plan, ps
}
