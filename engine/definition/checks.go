package definition

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine/strictjson"
)

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
