package definition

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// ErrInvalidDefinition is the error every *ValidationError wraps, so that
// errors.Is(err, ErrInvalidDefinition) tells a bad definition from other failures.
var ErrInvalidDefinition = errors.New("invalid definition")

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

// ValidationError carries every problem found in a definition;
// errors.Is(err, ErrInvalidDefinition) is true for it.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems on one line, e.g.
// `invalid definition: 2 problems: name: required; tasks[b].depends_on: unknown task "x"`.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidDefinition.Error())
	switch len(e.Problems) {
	case 0:
		return b.String()
	case 1:
		b.WriteString(": 1 problem: ")
	default:
		fmt.Fprintf(&b, ": %d problems: ", len(e.Problems))
	}
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap returns ErrInvalidDefinition.
func (e *ValidationError) Unwrap() error { return ErrInvalidDefinition }

// String spells the problem as "tasks[ID].FIELD: MESSAGE", "FIELD: MESSAGE" for
// a problem of the definition as a whole, or just the message when it has no field.
func (p Problem) String() string {
	var loc string
	switch {
	case p.Task == "":
		loc = p.Field
	case strings.HasPrefix(p.Task, "tasks["): // already a position, the task has no usable id
		loc = p.Task
	default:
		loc = "tasks[" + p.Task + "]"
	}
	if p.Task != "" && p.Field != "" {
		loc += "." + p.Field
	}
	if loc == "" {
		return p.Message
	}
	return loc + ": " + p.Message
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

// Formats and limits of the messages.
const (
	// namePattern describes validName; keep them in step with MaxIDLength.
	namePattern = "[A-Za-z0-9_.-]{1,64}"
	// maxQuoted is how many bytes of a user's value a message quotes.
	maxQuoted = 80
	// maxProblems bounds the problems returned, so that a 1 MiB document of
	// thousands of broken tasks cannot produce a response many times its size.
	// The last problem then says how many more there were.
	maxProblems = 1000
	// maxCycleShown bounds the tasks a cycle message spells out.
	maxCycleShown = 32
)

// Ranks order problems: the definition's first, then each task's by index, then cycles.
const (
	rankDefinition = -1
	rankCycles     = math.MaxInt
)

// wholeTask is the field that marks a task ParseDefinition could not decode at all.
const wholeTask = "*"

// rankedProblem is a Problem with the rank that orders it.
type rankedProblem struct {
	rank int
	Problem
}

// problemList collects problems in any order; finish sorts and dedupes them.
type problemList []rankedProblem

// add records a problem of rank.
func (l *problemList) add(rank int, task, field, msg string) {
	*l = append(*l, rankedProblem{rank, Problem{Task: task, Field: field, Message: msg}})
}

// finish returns the problems sorted by rank (stable within a rank), without
// exact repeats within a rank, at most maxProblems of them plus a note; nil if none.
func (l problemList) finish() []Problem {
	if len(l) == 0 {
		return nil
	}
	slices.SortStableFunc(l, func(a, b rankedProblem) int { return cmp.Compare(a.rank, b.rank) })
	seen := make(map[rankedProblem]bool, len(l))
	out := make([]Problem, 0, min(len(l), maxProblems+1))
	dropped := 0
	for _, rp := range l {
		if seen[rp] {
			continue
		}
		seen[rp] = true
		if len(out) == maxProblems {
			dropped++
			continue
		}
		out = append(out, rp.Problem)
	}
	if dropped > 0 {
		out = append(out, Problem{Message: fmt.Sprintf("too many problems: %d more not listed", dropped)})
	}
	return out
}

// validName reports whether s matches namePattern; ids, types and the
// definition's name share the format.
func validName(s string) bool { return ValidName(s) }

// ValidName reports whether s may name a workflow, task, task type or
// tenant: [A-Za-z0-9_.-]{1,64}, and not "." or "..", which URLs treat as
// path steps.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// nameProblem returns what is wrong with a name, id or type, or "".
func nameProblem(s string) string {
	switch {
	case s == "":
		return "required"
	case s == "." || s == "..":
		return "must not be . or .. (they are path steps in URLs)"
	case !validName(s):
		return "must match " + namePattern + ", got " + quote(s)
	}
	return ""
}

// taskLabel names task i in problems: its id, or "tasks[i]" when the id is empty or invalid.
func taskLabel(i int, id string) string {
	if validName(id) {
		return id
	}
	return "tasks[" + strconv.Itoa(i) + "]"
}

// truncate shortens s to about maxQuoted bytes, on a rune boundary.
func truncate(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// quote returns s, shortened, as a Go string literal for a message.
func quote(s string) string { return strconv.Quote(truncate(s)) }

// checkDuration parses a Go duration that must be > 0 and <= MaxDurationLimit.
// It returns the message of the problem, or "".
func checkDuration(s string) (time.Duration, string) {
	d, err := time.ParseDuration(s)
	if err != nil {
		// The error of time quotes the whole input, which may be huge: describe it instead.
		hint := `want a Go duration such as "90s" or "1h30m"`
		switch msg := err.Error(); {
		case strings.Contains(msg, "unknown unit"):
			hint = "unknown unit: use ns, us, ms, s, m or h"
		case strings.Contains(msg, "missing unit"):
			hint = "missing unit: use ns, us, ms, s, m or h"
		}
		return 0, "invalid duration " + quote(s) + ": " + hint
	}
	if d <= 0 {
		return 0, "must be positive, got " + quote(s)
	}
	if d > MaxDurationLimit {
		return 0, fmt.Sprintf("must be at most %s, got %s", MaxDurationLimit, quote(s))
	}
	return d, ""
}

// tooManyTasks is the problem of a definition of n > MaxTasks tasks.
func tooManyTasks(n int) string { return fmt.Sprintf("%d tasks, over the limit of %d", n, MaxTasks) }

// isBuiltinType reports whether typ is run by the engine itself.
func isBuiltinType(typ string) bool { return typ == TypeNoop || typ == TypeSleep }

// checkConfig checks a task's config against its type; only the built-in types
// have a schema. ParseDefinition calls it with full false (the JSON shape only:
// object, unknown and duplicate fields, JSON types) and Compile with full true
// (also required fields and values); both spell a problem the same way, so
// CompileJSON drops the repeats. It returns sleep's duration.
func checkConfig(typ string, raw json.RawMessage, full bool, add func(field, msg string)) time.Duration {
	kind := strictjson.Kind(raw)
	if kind == "null" || kind == "" { // absent
		if full && typ == TypeSleep {
			add("config.duration", `required for type "sleep", e.g. {"duration":"5s"}`)
		}
		return 0
	}
	if kind != "object" {
		add("config", "must be a JSON object or null, got "+kind)
		return 0
	}
	if !isBuiltinType(typ) {
		return 0
	}
	members, err := strictjson.Members(raw)
	if err != nil {
		add("config", "invalid JSON")
		return 0
	}
	var sleep time.Duration
	var hasDuration bool
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		field := "config." + truncate(m.Key)
		if seen[m.Key] {
			add(field, "duplicate field")
			continue
		}
		seen[m.Key] = true
		if typ != TypeSleep || m.Key != "duration" {
			add(field, "unknown field "+quote(m.Key))
			continue
		}
		hasDuration = true
		s, ok := strictjson.DecodeString(m.Value)
		if !ok {
			add(field, "must be a string, got "+strictjson.Kind(m.Value))
			continue
		}
		if full {
			d, msg := checkDuration(s)
			if msg != "" {
				add(field, msg)
			}
			sleep = d
		}
	}
	if full && typ == TypeSleep && !hasDuration {
		add("config.duration", `required for type "sleep", e.g. {"duration":"5s"}`)
	}
	return sleep
}

// checkRetry checks a retry policy and returns it with the defaults filled in.
func checkRetry(r *RetryPolicy, add func(field, msg string)) Retry {
	out := Retry{
		MaxAttempts:     DefaultMaxAttempts,
		InitialInterval: DefaultInitialInterval,
		Backoff:         DefaultBackoff,
	}
	maxSet := false
	if r != nil {
		out.NonRetryableErrors = r.NonRetryableErrors
		switch {
		case r.MaxAttempts == 0:
		case r.MaxAttempts < 1 || r.MaxAttempts > MaxAttemptsLimit:
			add("retry.max_attempts", fmt.Sprintf("must be between 1 and %d (0 means the default of %d), got %d",
				MaxAttemptsLimit, DefaultMaxAttempts, r.MaxAttempts))
		default:
			out.MaxAttempts = r.MaxAttempts
		}
		initOK, maxOK := false, false
		if r.InitialInterval != "" {
			if d, msg := checkDuration(r.InitialInterval); msg != "" {
				add("retry.initial_interval", msg)
			} else {
				out.InitialInterval, initOK = d, true
			}
		}
		if r.MaxInterval != "" {
			if d, msg := checkDuration(r.MaxInterval); msg != "" {
				add("retry.max_interval", msg)
			} else {
				out.MaxInterval, maxOK, maxSet = d, true, true
			}
		}
		if r.Backoff != 0 {
			if r.Backoff >= 1 && r.Backoff <= 100 { // false for NaN too
				out.Backoff = r.Backoff
			} else {
				add("retry.backoff", fmt.Sprintf("must be between 1 and 100 (0 means the default of %g), got %g",
					DefaultBackoff, r.Backoff))
			}
		}
		if r.Jitter >= 0 && r.Jitter <= 1 {
			out.Jitter = r.Jitter
		} else {
			add("retry.jitter", fmt.Sprintf("must be between 0 and 1, got %g", r.Jitter))
		}
		if initOK && maxOK && out.MaxInterval < out.InitialInterval {
			add("retry.max_interval", fmt.Sprintf("must not be less than initial_interval (%s < %s)",
				out.MaxInterval, out.InitialInterval))
		}
	}
	if !maxSet {
		out.MaxInterval = DefaultMaxIntervalMul * out.InitialInterval
	}
	out.MaxInterval = max(out.MaxInterval, out.InitialInterval)
	return out
}

// taskFacts is what compile learns about a task while checking it.
type taskFacts struct {
	timeout time.Duration
	retry   Retry
	sleep   time.Duration
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
	return plan, ps
}

// findCycles finds the strongly connected components of more than one task
// (Tarjan's algorithm, iterative so that a long chain cannot exhaust the stack)
// and returns one cycle through each. A cycle starts at the task of the
// component with the smallest label and follows depends_on edges: in
// [a b c], a depends on b, b on c and c on a. It is a shortest such cycle,
// preferring smaller labels. Cycles are sorted by their first label.
func findCycles(adj [][]int, labels []string) [][]int {
	n := len(adj)
	order := make([]int, n) // 1 + visit order; 0 = not visited
	low := make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n) // 1 + index into comps for tasks in a cycle; 0 otherwise
	var stack []int
	type frame struct{ v, next int }
	var calls []frame
	var comps [][]int
	visited := 0
	visit := func(v int) {
		visited++
		order[v], low[v] = visited, visited
		stack = append(stack, v)
		onStack[v] = true
		calls = append(calls, frame{v: v})
	}
	for s := range n {
		if order[s] != 0 {
			continue
		}
		visit(s)
		for len(calls) > 0 {
			f := &calls[len(calls)-1]
			v := f.v
			if f.next < len(adj[v]) {
				w := adj[v][f.next]
				f.next++
				if order[w] == 0 {
					visit(w)
				} else if onStack[w] {
					low[v] = min(low[v], order[w])
				}
				continue
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				parent := calls[len(calls)-1].v
				low[parent] = min(low[parent], low[v])
			}
			if low[v] != order[v] {
				continue
			}
			top := len(stack) - 1
			for stack[top] != v {
				top--
			}
			members := stack[top:]
			stack = stack[:top]
			for _, w := range members {
				onStack[w] = false
			}
			if len(members) > 1 {
				comps = append(comps, slices.Clone(members))
				for _, w := range members {
					comp[w] = len(comps)
				}
			}
		}
	}

	less := func(a, b int) int {
		if c := strings.Compare(labels[a], labels[b]); c != 0 {
			return c
		}
		return a - b
	}
	prev := make([]int, n)
	for i := range prev {
		prev[i] = -1
	}
	cycles := make([][]int, 0, len(comps))
	for ci, members := range comps {
		start := slices.MinFunc(members, less)
		cycles = append(cycles, shortestCycle(start, ci+1, adj, comp, prev, less))
	}
	slices.SortFunc(cycles, func(a, b []int) int { return less(a[0], b[0]) })
	return cycles
}

// shortestCycle finds by breadth-first search a shortest cycle from start back
// to it within component c, trying neighbours in the order of less. prev is
// scratch space of -1s, left as it was found.
func shortestCycle(start, c int, adj [][]int, comp, prev []int, less func(a, b int) int) []int {
	queue := []int{start}
	prev[start] = start
	defer func() {
		for _, v := range queue {
			prev[v] = -1
		}
	}()
	var next []int
	for h := 0; h < len(queue); h++ {
		u := queue[h]
		next = next[:0]
		for _, w := range adj[u] {
			if comp[w] == c {
				next = append(next, w)
			}
		}
		slices.SortFunc(next, less)
		for _, w := range next {
			if w == start {
				var path []int
				for v := u; v != start; v = prev[v] {
					path = append(path, v)
				}
				path = append(path, start)
				slices.Reverse(path)
				return path
			}
			if prev[w] == -1 {
				prev[w] = u
				queue = append(queue, w)
			}
		}
	}
	return []int{start} // unreachable: start lies on a cycle of its component
}

// cycleMessage spells a cycle as "cycle: a -> b -> c -> a", eliding the middle of a long one.
func cycleMessage(cycle []int, labels []string) string {
	var b strings.Builder
	b.WriteString("cycle: ")
	head, tail := len(cycle), 0
	if len(cycle) > maxCycleShown {
		head, tail = maxCycleShown/2, maxCycleShown/2
	}
	for i := 0; i < head; i++ {
		b.WriteString(labels[cycle[i]])
		b.WriteString(" -> ")
	}
	if tail > 0 {
		fmt.Fprintf(&b, "(%d more) -> ", len(cycle)-head-tail)
		for _, v := range cycle[len(cycle)-tail:] {
			b.WriteString(labels[v])
			b.WriteString(" -> ")
		}
	}
	b.WriteString(labels[cycle[0]])
	return b.String()
}

// buildPlan orders a valid, acyclic definition into topological levels by
// Kahn's algorithm: a root is at level 0, any other task one level past its
// deepest dependency. Tasks are ordered by (level, id). It returns nil if the
// graph has a cycle.
func buildPlan(def *Definition, adj [][]int, facts []taskFacts, timeout time.Duration) *Plan {
	n := len(def.Tasks)
	children := make([][]int, n)
	pending := make([]int, n) // dependencies not yet placed
	for i, deps := range adj {
		pending[i] = len(deps)
		for _, j := range deps {
			children[j] = append(children[j], i)
		}
	}
	level := make([]int, n)
	queue := make([]int, 0, n)
	for i := range n {
		if pending[i] == 0 {
			queue = append(queue, i)
		}
	}
	maxLevel := 0
	for h := 0; h < len(queue); h++ {
		u := queue[h]
		maxLevel = max(maxLevel, level[u])
		for _, c := range children[u] {
			level[c] = max(level[c], level[u]+1)
			if pending[c]--; pending[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	if len(queue) != n {
		return nil
	}

	byLevel := make([][]int, maxLevel+1)
	for i := range n {
		byLevel[level[i]] = append(byLevel[level[i]], i)
	}
	order := make([]int, 0, n) // position -> task index
	levels := make([][]string, len(byLevel))
	for l, members := range byLevel {
		slices.SortFunc(members, func(a, b int) int { return strings.Compare(def.Tasks[a].ID, def.Tasks[b].ID) })
		ids := make([]string, len(members))
		for k, i := range members {
			ids[k] = def.Tasks[i].ID
		}
		levels[l] = ids
		order = append(order, members...)
	}
	pos := make([]int, n)
	for p, i := range order {
		pos[i] = p
	}
	positions := func(idx []int) []int {
		if len(idx) == 0 {
			return nil
		}
		out := make([]int, len(idx))
		for k, i := range idx {
			out[k] = pos[i]
		}
		slices.Sort(out)
		return out
	}

	plan := &Plan{
		Def:         def,
		Tasks:       make([]PlanTask, n),
		Index:       make(map[string]int, n),
		Levels:      levels,
		Timeout:     timeout,
		MaxParallel: def.MaxParallel,
	}
	for p, i := range order {
		t := &def.Tasks[i]
		plan.Tasks[p] = PlanTask{
			ID:       t.ID,
			Type:     t.Type,
			Pos:      p,
			Level:    level[i],
			Priority: t.Priority,
			Deps:     positions(adj[i]),
			Children: positions(children[i]),
			Timeout:  facts[i].timeout,
			Retry:    facts[i].retry,
			Input:    t.Input,
			Config:   t.Config,
			Sleep:    facts[i].sleep,
		}
		plan.Index[t.ID] = p
	}
	return plan
}

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
			if strictjson.Depth(m.Value, strictjson.MaxDepth-1) > strictjson.MaxDepth-1 {
				p.fail(rankDefinition, "", field, fmt.Sprintf("nests objects and arrays more than %d levels deep, the limit", strictjson.MaxDepth-1))
				p.deep = true
				continue
			}
			def.Output = rawValue(m.Value)
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
			if strictjson.Depth(m.Value, strictjson.MaxDepth-3) > strictjson.MaxDepth-3 {
				p.fail(i, label, field, fmt.Sprintf("nests objects and arrays more than %d levels deep, the limit", strictjson.MaxDepth-3))
				p.deep = true
				continue
			}
			if m.Key == "input" {
				t.Input = rawValue(m.Value)
			} else {
				t.Config = rawValue(m.Value)
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
