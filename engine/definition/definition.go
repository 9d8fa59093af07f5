package definition

import (
	"encoding/json"
	"time"
)

// Limits on a definition. They keep one definition from exhausting the memory of
// the engine or the size of a SQLite row; Validate reports every one exceeded.
const (
	MaxTasks           = 10_000
	MaxIDLength        = 64
	MaxDefinitionBytes = 1 << 20
	MaxPriority        = 1_000_000
	MaxAttemptsLimit   = 1_000
	MaxDurationLimit   = 366 * 24 * time.Hour
)

// Built-in task types. Any other type is run by a handler registered on the
// engine or, when the engine allows it, by an external worker.
const (
	TypeNoop  = "noop"
	TypeSleep = "sleep"
)

// Definition is a workflow as a user writes it: a named DAG of tasks. Once
// stored under a version it never changes; a changed definition registered under
// the same name becomes the next version.
type Definition struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Tasks       []TaskDef       `json:"tasks"`
	Timeout     string          `json:"timeout,omitempty"`      // run timeout, a Go duration ("10m")
	MaxParallel int             `json:"max_parallel,omitempty"` // tasks of one run running at once; 0 = no cap
	Output      json.RawMessage `json:"output,omitempty"`
	// Concurrency bounds the active runs per value of a key rendered from
	// the run's input (see Concurrency).
	Concurrency *Concurrency `json:"concurrency,omitempty"`
}

// TaskDef is one node of the DAG.
type TaskDef struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	DependsOn []string        `json:"depends_on,omitempty"`
	Priority  int             `json:"priority,omitempty"` // higher runs first
	Retry     *RetryPolicy    `json:"retry,omitempty"`
	Timeout   string          `json:"timeout,omitempty"` // per attempt, a Go duration
	Input     json.RawMessage `json:"input,omitempty"`
	Config    json.RawMessage `json:"config,omitempty"` // settings of the task type, e.g. sleep's {"duration":"2s"}
}

// RetryPolicy says how often and how soon a failed attempt is tried again.
// Durations are Go duration strings.
type RetryPolicy struct {
	MaxAttempts     int     `json:"max_attempts,omitempty"`     // attempts in all, 1 = no retry
	InitialInterval string  `json:"initial_interval,omitempty"` // wait before the 2nd attempt
	Backoff         float64 `json:"backoff,omitempty"`          // factor applied to each further wait, >= 1
	MaxInterval     string  `json:"max_interval,omitempty"`     // cap on any wait
	Jitter          float64 `json:"jitter,omitempty"`           // 0..1, fraction of the wait varied deterministically
	// NonRetryableErrors lists error codes that fail the task at once.
	NonRetryableErrors []string `json:"non_retryable_errors,omitempty"`
}

// Retry is a RetryPolicy with its defaults filled in and durations parsed.
type Retry struct {
	MaxAttempts     int
	InitialInterval time.Duration
	Backoff         float64
	MaxInterval     time.Duration
	Jitter          float64
	// NonRetryableErrors lists error codes that fail the task at once.
	NonRetryableErrors []string
}

// NonRetryable reports whether an error code fails the task at once.
func (r Retry) NonRetryable(code string) bool {
	for _, c := range r.NonRetryableErrors {
		if c == code {
			return true
		}
	}
	return false
}

// Default retry settings: one attempt, and if a policy asks for more, waits of
// 1s doubling up to 100 times the initial interval.
const (
	DefaultMaxAttempts     = 1
	DefaultInitialInterval = time.Second
	DefaultBackoff         = 2.0
	DefaultMaxIntervalMul  = 100
)

// Problem is one thing wrong with a definition. Task is empty for problems of
// the definition as a whole; Field names the JSON field ("depends_on",
// "retry.max_attempts", "config.duration").
type Problem struct {
	Task    string `json:"task,omitempty"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Plan is a validated definition compiled for execution. It is immutable and
// shared by every run of the definition version.
type Plan struct {
	Def         *Definition
	Tasks       []PlanTask     // in topological order: Tasks[i].Pos == i
	Index       map[string]int // task id -> position
	Levels      [][]string     // topological levels, ids sorted within a level
	Timeout     time.Duration  // 0 = none
	MaxParallel int            // 0 = no cap
	// Concurrency is the definition's concurrency key with its defaults
	// filled in; nil when it has none.
	Concurrency *Concurrency
	// OutputRefTasks are the tasks the definition's output references, each once.
	OutputRefTasks []string
}

// PlanTask is one task of a Plan.
type PlanTask struct {
	ID       string
	Type     string
	Pos      int   // position in the topological order
	Level    int   // index into Plan.Levels
	Priority int   // higher first
	Deps     []int // positions of the tasks this one depends on, ascending
	Children []int // positions of the tasks that depend on this one, ascending
	Timeout  time.Duration
	Retry    Retry
	Input    json.RawMessage
	Config   json.RawMessage
	Sleep    time.Duration // for TypeSleep: how long the durable timer waits
	Refs     bool          // Input holds references, resolved when the task becomes ready
	RefTasks []string      // the tasks Input references, each once
}
