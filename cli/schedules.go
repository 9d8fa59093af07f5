package cli

import (
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
)

// The schedules commands: cron schedules of the server's tenant.

// specFlags declares the flags of a schedule's spec and returns what reads
// them.
func specFlags(fs *flag.FlagSet) func() (wire.ScheduleSpec, error) {
	cron := fs.String("cron", "", "cron expression: 5 fields, 6 with seconds, @daily or @every 90s")
	zone := fs.String("time-zone", "", "IANA time zone of the cron (default UTC)")
	workflow := fs.String("workflow", "", "workflow: name, name@VERSION or name@ALIAS")
	input := fs.String("input", "", "run input: JSON or @FILE; ${schedule.time} and ${schedule.id} are replaced")
	overlap := fs.String("overlap", "", "skip (default), buffer_one, buffer_all, cancel_other or allow_all")
	jitter := fs.String("jitter", "", "delay each slot by up to this duration")
	catchup := fs.String("catchup-window", "", "how late a slot may fire after downtime (default 1m)")
	startAt := fs.String("start-at", "", "no slot before this RFC 3339 time")
	endAt := fs.String("end-at", "", "no slot after this RFC 3339 time")
	return func() (wire.ScheduleSpec, error) {
		s := wire.ScheduleSpec{Cron: *cron, TimeZone: *zone, Workflow: *workflow, Overlap: *overlap, Jitter: *jitter,
			CatchupWindow: *catchup}
		var err error
		if s.Input, err = readJSONArg("input", *input); err != nil {
			return s, err
		}
		for _, t := range []struct {
			name, v string
			dst     **time.Time
		}{{"start-at", *startAt, &s.StartAt}, {"end-at", *endAt, &s.EndAt}} {
			p, err := parseTime(t.name, t.v)
			if err != nil {
				return s, err
			}
			if !p.IsZero() {
				*t.dst = &p
			}
		}
		return s, nil
	}
}

func showSchedule(e *env, s *wire.Schedule) error {
	return e.print(s, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "schedule\t%s (version %d)\nstate\t%s\ncron\t%s %s\nworkflow\t%s\noverlap\t%s\ncatch-up\t%s\n",
			s.ID, s.Version, s.State, s.Cron, s.TimeZone, s.Workflow, s.Overlap, s.CatchupWindow)
		fmt.Fprintf(w, "slots\t%d fired, %d skipped, %d missed, %d failed\n", s.Fired, s.Skipped, s.Missed, s.Failed)
		if s.LastRunID != "" {
			fmt.Fprintf(w, "last run\t%s\n", s.LastRunID)
		}
		for _, f := range s.Next {
			fmt.Fprintf(w, "next\t%s (starts %s)\n", ts(f.Slot), ts(f.At))
		}
	})
}

func scheduleCreateCmd(e *env) func([]string) error {
	spec := specFlags(e.fs)
	return func(args []string) error {
		s, err := spec()
		if err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		out, err := c.CreateSchedule(e.ctx, wire.CreateScheduleRequest{ID: args[0], ScheduleSpec: s})
		if err != nil {
			return err
		}
		return showSchedule(e, out)
	}
}

func scheduleUpdateCmd(e *env) func([]string) error {
	spec := specFlags(e.fs)
	version := e.fs.Int64("version", 0, "the version read (required): another is refused")
	return func(args []string) error {
		s, err := spec()
		if err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		out, err := c.UpdateSchedule(e.ctx, args[0], wire.UpdateScheduleRequest{Version: *version, ScheduleSpec: s})
		if err != nil {
			return err
		}
		return showSchedule(e, out)
	}
}

func scheduleListCmd(e *env) func([]string) error {
	limit := e.fs.Int("limit", 100, "schedules per page")
	page := e.fs.String("page-token", "", "continue a previous list")
	return func([]string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		p, err := c.ListSchedules(e.ctx, *limit, *page)
		if err != nil {
			return err
		}
		return e.print(p, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tSTATE\tCRON\tWORKFLOW\tFIRED\tMISSED")
			for _, s := range p.Schedules {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\n", s.ID, s.State, s.Cron, s.Workflow, s.Fired, s.Missed)
			}
			if p.NextPageToken != "" {
				fmt.Fprintf(w, "more: --page-token %s\n", p.NextPageToken)
			}
		})
	}
}

func scheduleGetCmd(e *env) func([]string) error {
	next := e.fs.Int("next", 5, "show the next N fire times (0..100)")
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		s, err := c.GetSchedule(e.ctx, args[0], *next)
		if err != nil {
			return err
		}
		return showSchedule(e, s)
	}
}

func scheduleDeleteCmd(e *env) func([]string) error {
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		if err := c.DeleteSchedule(e.ctx, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "deleted schedule %s\n", args[0])
		return nil
	}
}

func schedulePauseCmd(pause bool) func(e *env) func([]string) error {
	return func(e *env) func([]string) error {
		return func(args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			op := c.UnpauseSchedule
			if pause {
				op = c.PauseSchedule
			}
			s, err := op(e.ctx, args[0])
			if err != nil {
				return err
			}
			return showSchedule(e, s)
		}
	}
}

func scheduleTriggerCmd(e *env) func([]string) error {
	key := e.fs.String("idempotency-key", "", "a key that makes a repeated trigger return the first run")
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		run, err := c.TriggerSchedule(e.ctx, args[0], *key)
		if err != nil {
			return err
		}
		return e.print(run, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "started run %s of %s v%d: %s\n", run.ID, run.Workflow, run.Version, run.State)
		})
	}
}

func scheduleBackfillCmd(e *env) func([]string) error {
	from := e.fs.String("from", "", "first time of the range, RFC 3339 (required)")
	to := e.fs.String("to", "", "last time of the range, RFC 3339 (required, not in the future)")
	return func(args []string) error {
		var t [2]time.Time
		for i, v := range []string{*from, *to} {
			name := []string{"from", "to"}[i]
			p, err := parseTime(name, v)
			if err != nil {
				return err
			}
			if p.IsZero() {
				return fmt.Errorf("--%s is required", name)
			}
			t[i] = p
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		b, err := c.BackfillSchedule(e.ctx, args[0], t[0], t[1])
		if err != nil {
			return err
		}
		return e.print(b, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "SLOT\tRUN\t")
			for _, s := range b.Slots {
				note := ""
				if s.Replayed {
					note = "fired before"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", ts(s.Slot), s.RunID, note)
			}
		})
	}
}
