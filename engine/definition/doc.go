// Package definition holds workflow definitions as users write them and as the
// engine runs them: a strict parser that reports every problem at once, naming
// the task and field; validation of values, limits and references; cycle
// finding; compilation to an immutable Plan in topological order; and the
// rendering of ${...} references against a run's input and its tasks'
// outputs. It does no I/O and knows nothing of runs in flight.
package definition
