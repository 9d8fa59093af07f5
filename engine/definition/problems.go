package definition

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// ErrInvalidDefinition is the error every *ValidationError wraps, so that
// errors.Is(err, ErrInvalidDefinition) tells a bad definition from other failures.
var ErrInvalidDefinition = errors.New("invalid definition")

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
