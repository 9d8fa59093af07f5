package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
)

// command is one subcommand: setup declares its flags and returns what runs
// it with the positional arguments.
type command struct {
	args  string // positional arguments, for usage
	nargs int
	help  string
	setup func(e *env) func(args []string) error
}

var commands = map[string]command{
	"workflows start":      {"NAME", 1, "Start a run of a registered workflow (or, with --definition, of an inline definition: NAME is then ignored, use -).", startCmd},
	"workflows list":       {"", 0, "List runs, newest first.", listCmd},
	"workflows get":        {"RUN_ID", 1, "Show a run: state, progress and every task.", getCmd},
	"workflows pause":      {"RUN_ID", 1, "Pause a run: no new task starts; running ones finish.", controlCmd("pause")},
	"workflows resume":     {"RUN_ID", 1, "Resume a paused run.", controlCmd("resume")},
	"workflows cancel":     {"RUN_ID", 1, "Cancel a run: unfinished tasks end cancelled.", controlCmd("cancel")},
	"workflows retry":      {"RUN_ID", 1, "Retry a failed, timed-out or cancelled run (or with --task one task and what depends on it).", controlCmd("retry")},
	"definitions register": {"FILE", 1, "Register a definition (FILE may be - for stdin); an unchanged one keeps its version.", registerCmd},
	"definitions list":     {"", 0, "List definitions, the latest version of each.", defListCmd},
	"events ":              {"RUN_ID", 1, "Print a run's history as a timeline and check its hash chain.", eventsCmd},
	"dag validate":         {"FILE", 1, "Validate a definition on the server without storing it; prints every problem or the levels.", validateCmd},
	"health ":              {"", 0, "Exit 0 when the server and its database answer GET /health, 1 otherwise (a container health check).", healthCmd},
	"schedules create":     {"ID", 1, "Create a schedule (--cron, --workflow, ...); every slot starts one run.", scheduleCreateCmd},
	"schedules list":       {"", 0, "List schedules, by id.", scheduleListCmd},
	"schedules get":        {"ID", 1, "Show a schedule and its next fire times.", scheduleGetCmd},
	"schedules update":     {"ID", 1, "Replace a schedule's spec (--version the one read).", scheduleUpdateCmd},
	"schedules delete":     {"ID", 1, "Delete a schedule; its log stays.", scheduleDeleteCmd},
	"schedules pause":      {"ID", 1, "Pause a schedule: its slots neither fire nor count as missed.", schedulePauseCmd(true)},
	"schedules unpause":    {"ID", 1, "Unpause a schedule: slots from now on fire.", schedulePauseCmd(false)},
	"schedules trigger":    {"ID", 1, "Start a run of a schedule now.", scheduleTriggerCmd},
	"schedules backfill":   {"ID", 1, "Fire every slot in --from..--to that has not fired.", scheduleBackfillCmd},
}

func startCmd(e *env) func([]string) error {
	version := e.fs.Int("version", 0, "definition version (default the latest)")
	input := e.fs.String("input", "", "run input: JSON, or @FILE")
	defFile := e.fs.String("definition", "", "an inline definition FILE to validate, store and run")
	key := e.fs.String("idempotency-key", "", "a key that makes a repeated start return the first run")
	wait := e.fs.Bool("wait", false, "wait until the run ends and show it")
	return func(args []string) error {
		req := client.ExecuteRequest{Workflow: args[0], Version: *version, IdempotencyKey: *key}
		var err error
		if req.Input, err = readJSONArg("input", *input); err != nil {
			return err
		}
		if *defFile != "" {
			if req.Definition, err = readJSONArg("definition", "@"+*defFile); err != nil {
				return err
			}
			req.Workflow, req.Version = "", 0
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		run, err := c.ExecuteWorkflow(e.ctx, req)
		if err != nil {
			return err
		}
		if !*wait {
			return e.print(run, func(w *tabwriter.Writer) {
				note := ""
				if run.Replayed {
					note = " (the run an earlier request with this key started)"
				}
				fmt.Fprintf(w, "started run %s of %s v%d: %s%s\n", run.ID, run.Workflow, run.Version, run.State, note)
			})
		}
		for {
			d, err := c.GetWorkflow(e.ctx, run.ID)
			if err != nil {
				return err
			}
			if d.State.Terminal() {
				return showRun(e, d)
			}
			select {
			case <-e.ctx.Done():
				return e.ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func listCmd(e *env) func([]string) error {
	status := e.fs.String("status", "", "only runs in this state")
	workflow := e.fs.String("workflow", "", "only runs of this workflow")
	after := e.fs.String("created-after", "", "only runs created after this RFC 3339 time")
	before := e.fs.String("created-before", "", "only runs created before this RFC 3339 time")
	limit := e.fs.Int("limit", 50, "runs per page (1..1000)")
	token := e.fs.String("page-token", "", "continue from a previous page")
	all := e.fs.Bool("all", false, "walk every page")
	return func([]string) error {
		f := client.RunFilter{Status: wire.RunState(*status), Workflow: *workflow, Limit: *limit, PageToken: *token}
		var err error
		if f.CreatedAfter, err = parseTime("created-after", *after); err != nil {
			return err
		}
		if f.CreatedBefore, err = parseTime("created-before", *before); err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		var page client.RunsPage
		if *all {
			err = c.AllWorkflows(e.ctx, f, func(r wire.Run) error {
				page.Runs = append(page.Runs, r)
				return nil
			})
		} else {
			var p *client.RunsPage
			if p, err = c.ListWorkflows(e.ctx, f); err == nil {
				page = *p
			}
		}
		if err != nil {
			return err
		}
		return e.print(page, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "RUN\tWORKFLOW\tSTATE\tCREATED\tDURATION")
			for _, r := range page.Runs {
				end := r.EndedAt
				if end.IsZero() {
					end = time.Now()
				}
				fmt.Fprintf(w, "%s\t%s v%d\t%s\t%s\t%s\n", r.ID, r.Workflow, r.Version, r.State, ts(r.CreatedAt), dur(r.CreatedAt, end))
			}
			if page.NextPageToken != "" {
				fmt.Fprintf(w, "\nmore: --page-token %s\n", page.NextPageToken)
			}
		})
	}
}

func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time like 2026-01-02T15:04:05Z", name, v)
	}
	return t, nil
}

func getCmd(e *env) func([]string) error {
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		d, err := c.GetWorkflow(e.ctx, args[0])
		if err != nil {
			return err
		}
		return showRun(e, d)
	}
}

// showRun prints a run with its tasks.
func showRun(e *env, d *client.RunDetails) error {
	return e.print(d, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "run %s  %s v%d  tenant %s\n", d.ID, d.Workflow, d.Version, d.TenantID)
		fmt.Fprintf(w, "state %s  %d/%d tasks done (%.1f%%)  created %s  ended %s\n", d.State, d.Progress.Done,
			d.Progress.Total, d.Progress.Percent, ts(d.CreatedAt), ts(d.EndedAt))
		if d.Error != nil {
			fmt.Fprintf(w, "error %s\n", errText(d.Error))
		}
		if len(d.Output) > 0 {
			fmt.Fprintf(w, "output %s\n", clip(string(d.Output), 200))
		}
		fmt.Fprintln(w, "\nTASK\tTYPE\tSTATE\tATTEMPTS\tSTARTED\tDURATION\tERROR")
		for _, t := range d.Tasks {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", t.TaskID, t.Type, t.State, t.Attempt, ts(t.StartedAt),
				dur(t.StartedAt, t.EndedAt), errText(t.Error))
		}
	})
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

func controlCmd(verb string) func(e *env) func([]string) error {
	return func(e *env) func([]string) error {
		var task *string
		if verb == "retry" {
			task = e.fs.String("task", "", "retry only this task and what depends on it")
		}
		return func(args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			var run *wire.Run
			switch verb {
			case "pause":
				run, err = c.PauseWorkflow(e.ctx, args[0])
			case "resume":
				run, err = c.ResumeWorkflow(e.ctx, args[0])
			case "cancel":
				run, err = c.CancelWorkflow(e.ctx, args[0])
			default:
				run, err = c.RetryWorkflow(e.ctx, args[0], *task)
			}
			if err != nil {
				return err
			}
			return e.print(run, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "run %s: %s\n", run.ID, run.State)
			})
		}
	}
}

func registerCmd(e *env) func([]string) error {
	return func(args []string) error {
		def, err := readJSONArg("definition", "@"+args[0])
		if err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		d, err := c.RegisterDefinition(e.ctx, def)
		if err != nil {
			return err
		}
		return e.print(d, func(w *tabwriter.Writer) {
			what := "unchanged"
			if d.Created {
				what = "registered"
			}
			fmt.Fprintf(w, "%s %s version %d\n", what, d.Name, d.Version)
		})
	}
}

func defListCmd(e *env) func([]string) error {
	return func([]string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		defs, err := c.ListDefinitions(e.ctx)
		if err != nil {
			return err
		}
		return e.print(defs, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "NAME\tLATEST\tREGISTERED")
			for _, d := range defs {
				fmt.Fprintf(w, "%s\t%d\t%s\n", d.Name, d.Version, ts(d.CreatedAt))
			}
		})
	}
}

func eventsCmd(e *env) func([]string) error {
	typ := e.fs.String("type", "", "only events of this type, e.g. task.attempt_failed")
	task := e.fs.String("task", "", "only events of this task")
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		var events []wire.Event
		q := client.EventsQuery{TaskID: *task, Type: wire.EventType(*typ), Limit: 1000}
		var verified *bool
		var verifyErr string
		for {
			q.Verify = q.After == 0
			page, err := c.WorkflowEvents(e.ctx, args[0], q)
			if err != nil {
				return err
			}
			if page.Verified != nil {
				verified, verifyErr = page.Verified, page.VerifyError
			}
			events = append(events, page.Events...)
			if page.NextAfter == 0 {
				break
			}
			q.After = page.NextAfter
		}
		return e.print(events, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "SEQ\tAT\tEVENT\tTASK\tATTEMPT\tACTOR\tDETAIL")
			for _, ev := range events {
				attempt := ""
				if ev.Attempt > 0 {
					attempt = strconv.Itoa(ev.Attempt)
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.Seq, ts(ev.At), ev.Type, ev.TaskID, attempt, actorText(ev.Actor, ev.OnBehalf), clip(detail(ev.Data), 100))
			}
			switch {
			case verified == nil:
			case *verified:
				fmt.Fprintln(w, "\nhash chain: ok")
			default:
				fmt.Fprintln(w, "\nhash chain: BROKEN: "+verifyErr)
			}
		})
	}
}

// detail renders event data on one line: the fields that matter to a reader.
func detail(data json.RawMessage) string {
	if len(data) == 0 {
		return ""
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return string(data)
	}
	var parts []string
	for _, k := range []string{"reason", "error", "worker_id", "not_before", "wake_at", "lease_expires_at", "deadline", "tasks", "input", "output"} {
		if v, ok := m[k]; ok {
			parts = append(parts, k+"="+string(v))
		}
	}
	return strings.Join(parts, " ")
}

func validateCmd(e *env) func([]string) error {
	return func(args []string) error {
		def, err := readFile(args[0])
		if err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		v, err := c.ValidateDAG(e.ctx, def)
		if err != nil {
			return err
		}
		if err := e.print(v, func(w *tabwriter.Writer) {
			if v.Valid {
				fmt.Fprintf(w, "valid: %d levels\n", len(v.Levels))
				for i, l := range v.Levels {
					fmt.Fprintf(w, "  level %d: %s\n", i, strings.Join(l, ", "))
				}
				return
			}
			for _, p := range v.Errors {
				where := p.Field
				if p.Task != "" {
					where = "task " + p.Task + ": " + p.Field
				}
				fmt.Fprintf(w, "%s: %s\n", where, p.Message)
			}
			fmt.Fprintf(w, "invalid: %d problems\n", len(v.Errors))
		}); err != nil {
			return err
		}
		if !v.Valid {
			return errInvalid
		}
		return nil
	}
}

// errInvalid makes `dag validate` exit 1 for an invalid definition after
// printing its problems.
var errInvalid = fmt.Errorf("the definition is invalid")

// actorText is who caused an event as a timeline shows it: the actor, and
// whom it acted for.
func actorText(actor, onBehalf string) string {
	if onBehalf == "" {
		return actor
	}
	return actor + " for " + onBehalf
}
