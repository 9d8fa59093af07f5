package engine

import (
	"testing"
	"time"
)

// FuzzCompileSpec feeds compileSpec any cron expression and zone: it
// never panics, and a spec it accepts computes slots that only move
// forward.
func FuzzCompileSpec(f *testing.F) {
	for _, c := range []string{"* * * * *", "*/5 * * * * *", "@daily", "@every 90s", "30 1 * * *", "0 0 29 2 *",
		"0-59/7 1-3 * JAN-MAR MON-FRI", "@every 0s", "61 * * * *", "", "TZ=UTC * * * * *"} {
		f.Add(c, "America/New_York")
		f.Add(c, "UTC")
	}
	f.Fuzz(func(t *testing.T, cron, zone string) {
		sp, err := compileSpec(ScheduleSpec{Cron: cron, TimeZone: zone, Workflow: "wf"})
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("%q %q: %T %v, want a *FieldError", cron, zone, err, err)
			}
			return
		}
		at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		for range 5 {
			next := sp.next(at)
			if next.IsZero() {
				return
			}
			if !next.After(at) {
				t.Fatalf("%q %q: slot %s after %s does not move forward", cron, zone, next, at)
			}
			at = next
		}
	})
}
