package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// overloadFlags declares the settings of the engine's saturation check: past
// any one limit, new runs are refused with 503 overloaded until every signal
// has stayed under 80% of its limit for the hold. A negative limit turns its
// signal off.
func (c *config) overloadFlags(fs *flag.FlagSet) {
	o := &c.overload
	fs.IntVar(&o.MaxWriterQueue, "overload-writer-queue", c.envInt("overload-writer-queue", "OVERLOAD_WRITER_QUEUE", engine.DefaultMaxWriterQueue),
		"events waiting for the database writer past which new runs are refused; -1 = off (env OVERLOAD_WRITER_QUEUE)")
	fs.DurationVar(&o.MaxCommitLatency, "overload-commit-latency", c.envDuration("overload-commit-latency", "OVERLOAD_COMMIT_LATENCY", engine.DefaultMaxCommitLatency),
		"how long writes wait until durable (smoothed) past which new runs are refused; negative = off (env OVERLOAD_COMMIT_LATENCY)")
	fs.IntVar(&o.MaxReadyTasks, "overload-ready-tasks", c.envInt("overload-ready-tasks", "OVERLOAD_READY_TASKS", engine.DefaultMaxReadyTasks),
		"tasks ready and waiting for a worker past which new runs are refused; -1 = off (env OVERLOAD_READY_TASKS)")
	fs.IntVar(&o.MaxActiveRuns, "overload-active-runs", c.envInt("overload-active-runs", "OVERLOAD_ACTIVE_RUNS", engine.DefaultMaxActiveRuns),
		"unfinished runs held in memory past which new runs are refused; -1 = off (env OVERLOAD_ACTIVE_RUNS)")
	fs.Int64Var(&o.MaxActiveBytes, "overload-active-bytes", c.envInt64("overload-active-bytes", "OVERLOAD_ACTIVE_BYTES", engine.DefaultMaxActiveBytes),
		"payload bytes recorded by the unfinished runs past which new runs are refused; -1 = off (env OVERLOAD_ACTIVE_BYTES)")
	fs.DurationVar(&o.Hold, "overload-hold", c.envDuration("overload-hold", "OVERLOAD_HOLD", engine.DefaultOverloadHold),
		"how long every signal must stay under 80% of its limit before new runs are accepted again; also the Retry-After (env OVERLOAD_HOLD)")
}

// validateOverload checks the saturation settings.
func (c *config) validateOverload() error {
	o := &c.overload
	for _, l := range []struct {
		name string
		zero bool
	}{
		{"overload-writer-queue (OVERLOAD_WRITER_QUEUE)", o.MaxWriterQueue == 0},
		{"overload-commit-latency (OVERLOAD_COMMIT_LATENCY)", o.MaxCommitLatency == 0},
		{"overload-ready-tasks (OVERLOAD_READY_TASKS)", o.MaxReadyTasks == 0},
		{"overload-active-runs (OVERLOAD_ACTIVE_RUNS)", o.MaxActiveRuns == 0},
		{"overload-active-bytes (OVERLOAD_ACTIVE_BYTES)", o.MaxActiveBytes == 0},
	} {
		if l.zero {
			return fmt.Errorf("%s must not be 0: give a positive limit, or -1 to turn the signal off", l.name)
		}
	}
	if o.Hold < 100*time.Millisecond || o.Hold > 10*time.Minute {
		return fmt.Errorf("overload-hold %s: want 100ms..10m", o.Hold)
	}
	return o.Validate()
}
