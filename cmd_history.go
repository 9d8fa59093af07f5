package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// history prints a run's events as a timeline.
func history(ctx context.Context, c *config, runID string, stdout io.Writer) error {
	db, err := openReadOnly(ctx, c)
	if err != nil {
		return err
	}
	defer db.Close()
	return printHistory(ctx, db, runID, stdout)
}

// printHistory prints a run's events as a timeline and checks its chain.
func printHistory(ctx context.Context, db *store.DB, runID string, stdout io.Writer) error {
	tenant, err := db.RunTenant(ctx, runID)
	if err != nil {
		return err
	}
	run, _, err := db.LoadRun(ctx, tenant, runID)
	if err != nil {
		return err
	}
	events, err := db.RunEvents(ctx, tenant, runID, 0, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "run %s  workflow %s v%d  tenant %s  state %s\n\n", run.ID, run.Workflow, run.Version, run.TenantID, run.State)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\t+ELAPSED\tEVENT\tTASK\tATTEMPT\tACTOR\tDETAIL")
	for _, e := range events {
		attempt := ""
		if e.Attempt > 0 {
			attempt = strconv.Itoa(e.Attempt)
		}
		fmt.Fprintf(tw, "%d\t%s\t+%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.Format("2006-01-02 15:04:05.000000"),
			e.At.Sub(run.CreatedAt).Round(time.Microsecond), e.Type, e.TaskID, attempt, actorOf(&e), detail(e.Data))
	}
	tw.Flush()
	if err := engine.VerifyChain(events); err != nil {
		fmt.Fprintf(stdout, "\nhash chain: BROKEN: %v\n", err)
	} else {
		fmt.Fprintf(stdout, "\nhash chain: ok (%d events)\n", len(events))
	}
	return nil
}

// detail renders event data in one short line.
func detail(data json.RawMessage) string {
	if len(data) == 0 {
		return ""
	}
	var d engine.EventData
	if json.Unmarshal(data, &d) != nil {
		return string(data)
	}
	var parts []string
	if d.Reason != "" {
		parts = append(parts, "reason="+d.Reason)
	}
	if d.Error != nil {
		parts = append(parts, fmt.Sprintf("error=%s: %s", d.Error.Code, d.Error.Message))
	}
	if !d.NotBefore.IsZero() {
		parts = append(parts, "retry_at="+engine.FormatTime(d.NotBefore))
	}
	if d.WorkerID != "" {
		parts = append(parts, "worker="+d.WorkerID)
	}
	if !d.LeaseExpiresAt.IsZero() {
		parts = append(parts, "lease_until="+engine.FormatTime(d.LeaseExpiresAt))
	}
	if !d.WakeAt.IsZero() {
		parts = append(parts, "wake_at="+engine.FormatTime(d.WakeAt))
	}
	if !d.Deadline.IsZero() {
		parts = append(parts, "deadline="+engine.FormatTime(d.Deadline))
	}
	if d.Workflow != "" {
		parts = append(parts, fmt.Sprintf("workflow=%s v%d", d.Workflow, d.Version))
	}
	if len(d.Tasks) > 0 {
		parts = append(parts, "tasks="+strings.Join(d.Tasks, ","))
	}
	for _, kv := range []struct {
		k string
		v json.RawMessage
	}{{"input", d.Input}, {"output", d.Output}} {
		if len(kv.v) > 0 {
			s := string(kv.v)
			if len(s) > 80 {
				s = s[:77] + "..."
			}
			parts = append(parts, kv.k+"="+s)
		}
	}
	return strings.Join(parts, " ")
}

// actorOf is who caused an event as the timeline shows it: the actor, and
// whom it acted for.
func actorOf(e *engine.Event) string {
	if e.OnBehalf == "" {
		return e.Actor
	}
	return e.Actor + " for " + e.OnBehalf
}
