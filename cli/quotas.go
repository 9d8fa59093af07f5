package cli

import (
	"flag"
	"fmt"
	"strings"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// quotaFlags are the quota flags of tenants create and update: each sets
// one field of the tenant's quotas (0 the server's default, -1 unlimited).
type quotaFlags struct {
	startRate                 *float64
	startBurst, active, queue *int
	inputBytes                *int64
	onActive                  *string
}

func newQuotaFlags(fs *flag.FlagSet) *quotaFlags {
	return &quotaFlags{
		startRate:  fs.Float64("start-rate", 0, "runs the tenant may start per second, on average (0: the server's default, -1: unlimited)"),
		startBurst: fs.Int("start-burst", 0, "runs the tenant may start at once (0: the server's default, or with the tenant's own --start-rate that rate rounded up; -1: the rate rounded up)"),
		active:     fs.Int("max-active-runs", 0, "runs running or paused at once (0: the server's default, -1: unlimited)"),
		queue:      fs.Int("max-pending-runs", 0, "runs waiting for a slot (0: the server's default, -1: unlimited)"),
		inputBytes: fs.Int64("max-input-bytes", 0, "bytes of one run's input (0: the server's default, -1: unlimited)"),
		onActive:   fs.String("on-active-limit", "", "at max-active-runs: reject (429) or queue (pending until a slot frees)"),
	}
}

// change is the quotas whose flags fs was given, nil when there is none:
// a sparse change, so that a tenants update sends only what it names.
func (f *quotaFlags) change(fs *flag.FlagSet) *wire.QuotasChange {
	var c wire.QuotasChange
	given := false
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "start-rate":
			c.StartRate = f.startRate
		case "start-burst":
			c.StartBurst = f.startBurst
		case "max-active-runs":
			c.MaxActiveRuns = f.active
		case "max-pending-runs":
			c.MaxPendingRuns = f.queue
		case "max-input-bytes":
			c.MaxInputBytes = f.inputBytes
		case "on-active-limit":
			c.OnActiveLimit = f.onActive
		default:
			return // not a quota flag
		}
		given = true
	})
	if !given {
		return nil
	}
	return &c
}

// check refuses quota flags no server takes before anything is sent: a
// NaN or infinite --start-rate could not even be encoded for a server.
func (f *quotaFlags) check() error {
	q := engine.TenantQuotas{StartRate: *f.startRate, StartBurst: *f.startBurst, MaxActiveRuns: *f.active,
		MaxPendingRuns: *f.queue, MaxInputBytes: *f.inputBytes, OnActiveLimit: *f.onActive}
	return q.Validate("settings.quotas.", false)
}

// quotaFlagOf names the flag of a quota field ("settings.quotas.max_active_runs").
func quotaFlagOf(field string) (string, bool) {
	name, ok := strings.CutPrefix(field, "settings.quotas.")
	if !ok {
		return "", false
	}
	return "--" + strings.ReplaceAll(name, "_", "-"), true
}

// quotaLine describes a tenant's quotas, "" when it sets none.
func quotaLine(q engine.TenantQuotas) string {
	var parts []string
	add := func(name string, v float64) {
		switch {
		case v == engine.Unlimited:
			parts = append(parts, name+"=unlimited")
		case v != 0:
			parts = append(parts, fmt.Sprintf("%s=%g", name, v))
		}
	}
	add("start_rate", q.StartRate)
	add("start_burst", float64(q.StartBurst))
	add("max_active_runs", float64(q.MaxActiveRuns))
	add("max_pending_runs", float64(q.MaxPendingRuns))
	add("max_input_bytes", float64(q.MaxInputBytes))
	if q.OnActiveLimit != "" {
		parts = append(parts, "on_active_limit="+q.OnActiveLimit)
	}
	return strings.Join(parts, " ")
}
