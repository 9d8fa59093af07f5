// Package tasks holds the built-in task types that reach outside the process:
// "http" (an outbound HTTP request) and "exec" (a command on the host). Each
// is an engine.Handler that also implements engine.ConfigValidator, so a bad
// task config is refused when a definition is registered, not when it runs.
//
// Both types read their request from the task's config (static, part of the
// definition) with the same-named fields of the attempt's input (a JSON object,
// dynamic) merged over it: a field present in the input replaces the config's
// field as a whole. Fields of the input that the type does not know are
// ignored, since an input may carry data meant for other consumers; unknown
// fields of the config are refused.
//
// Errors follow the engine's conventions: a plain error or *engine.TaskError
// is worth retrying, engine.Permanent fails the task at once, engine.RetryAfter
// asks for a minimum wait, and engine.Deferred (an open circuit breaker) says
// the attempt was never made.
//
// Both handlers are safe for concurrent use.
package tasks
