package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/orchestrator/orchestrator/client"
)

// The versions, diff and alias subcommands of definitions.
func init() {
	commands["definitions versions"] = command{"NAME", 1, "List the versions of a definition with their hashes, oldest first.", versionsCmd}
	commands["definitions diff"] = command{"NAME FROM TO", 3, "Show what changed from version FROM to version TO: workflow fields, tasks added, removed and changed.", diffCmd}
	commands["definitions alias set"] = command{"NAME ALIAS", 2,
		"Create or move an alias: --versions 3 (all runs), or --versions 3:90,4:10 (weights summing to 100). A run started as NAME@ALIAS gets a version by the hash of --sticky-key (a template over the run input) or of its run id.", aliasSetCmd}
	commands["definitions alias get"] = command{"NAME ALIAS", 2, "Show an alias: its versions, weights, rollback policy and last rollback.", aliasGetCmd}
	commands["definitions alias list"] = command{"NAME", 1, "List the aliases of a definition.", aliasListCmd}
	commands["definitions alias delete"] = command{"NAME ALIAS", 2, "Delete an alias.", aliasDeleteCmd}
}

func versionsCmd(e *env) func([]string) error {
	after := e.fs.Int("after", 0, "versions after this one")
	limit := e.fs.Int("limit", 0, "at most this many (1..1000; default 100)")
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		page, err := c.ListVersions(e.ctx, args[0], *after, *limit)
		if err != nil {
			return err
		}
		return e.print(page, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "VERSION\tHASH\tREGISTERED")
			for _, v := range page.Versions {
				fmt.Fprintf(w, "%d\t%s\t%s\n", v.Version, v.Hash[:min(12, len(v.Hash))], ts(v.CreatedAt))
			}
			if page.NextAfter != 0 {
				fmt.Fprintf(w, "(more: --after %d)\n", page.NextAfter)
			}
		})
	}
}

func diffCmd(e *env) func([]string) error {
	return func(args []string) error {
		var vs [2]int
		for i, a := range args[1:] {
			n, err := strconv.Atoi(a)
			if err != nil || n < 1 {
				return fmt.Errorf("%s %q: want a version number", [2]string{"FROM", "TO"}[i], a)
			}
			vs[i] = n
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		d, err := c.DiffVersions(e.ctx, args[0], vs[0], vs[1])
		if err != nil {
			return err
		}
		return e.print(d, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "%s: version %d -> %d\n", d.Name, d.From, d.To)
			if d.Same {
				fmt.Fprintln(w, "no change")
			}
			for _, f := range d.Workflow {
				fmt.Fprintf(w, "~ %s\t%s -> %s\n", f.Field, orNone(f.From), orNone(f.To))
			}
			for _, id := range d.TasksAdded {
				fmt.Fprintf(w, "+ task %s\n", id)
			}
			for _, id := range d.TasksRemoved {
				fmt.Fprintf(w, "- task %s\n", id)
			}
			for _, tc := range d.TasksChanged {
				for _, f := range tc.Fields {
					fmt.Fprintf(w, "~ task %s %s\t%s -> %s\n", tc.ID, f.Field, clip(orNone(f.From), 60), clip(orNone(f.To), 60))
				}
			}
		})
	}
}

func orNone(b []byte) string {
	if len(b) == 0 {
		return "(unset)"
	}
	return string(b)
}

func aliasSetCmd(e *env) func([]string) error {
	versions := e.fs.String("versions", "", "VERSION, or VERSION:WEIGHT,VERSION:WEIGHT (weights sum to 100)")
	sticky := e.fs.String("sticky-key", "", "template over the run input that picks the version, e.g. ${workflow.input.customer}")
	window := e.fs.Int("rollback-window", 0, "automatic rollback: finished runs counted per version (0 with no other rollback flag: no automatic rollback)")
	margin := e.fs.Float64("rollback-margin", 0, "automatic rollback: the failure rate difference that moves the alias back (default 0.2)")
	minRuns := e.fs.Int("rollback-min-runs", 0, "automatic rollback: finished runs of the newer version before it decides (default the window)")
	revision := e.fs.Int64("revision", 0, "change only if the alias is at this revision")
	return func(args []string) error {
		req := client.SetAliasRequest{StickyKey: *sticky, Revision: *revision}
		if *versions == "" {
			return fmt.Errorf("--versions is required: 3, or 3:90,4:10")
		}
		for _, part := range strings.Split(*versions, ",") {
			v, w, hasWeight := strings.Cut(part, ":")
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("--versions %q: %q is not a version number", *versions, v)
			}
			t := client.AliasTarget{Version: n}
			if hasWeight {
				if t.Weight, err = strconv.Atoi(w); err != nil {
					return fmt.Errorf("--versions %q: weight %q is not an integer", *versions, w)
				}
			}
			req.Versions = append(req.Versions, t)
		}
		if *window != 0 || *margin != 0 || *minRuns != 0 {
			req.Rollback = &client.RollbackPolicy{Window: *window, Margin: *margin, MinRuns: *minRuns}
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		a, err := c.SetAlias(e.ctx, args[0], args[1], req)
		if err != nil {
			return err
		}
		return e.print(a, func(w *tabwriter.Writer) { aliasTable(w, []client.Alias{*a}) })
	}
}

func aliasGetCmd(e *env) func([]string) error {
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		a, err := c.GetAlias(e.ctx, args[0], args[1])
		if err != nil {
			return err
		}
		return e.print(a, func(w *tabwriter.Writer) {
			aliasTable(w, []client.Alias{*a})
			if rb := a.RolledBack; rb != nil {
				fmt.Fprintf(w, "rolled back at %s: v%d failed %d of %d (%.0f%%), v%d failed %d of %d (%.0f%%), margin %.2f\n",
					ts(rb.At), rb.Newer.Version, rb.Newer.Failed, rb.Newer.Runs, 100*rb.Newer.FailureRate,
					rb.Older.Version, rb.Older.Failed, rb.Older.Runs, 100*rb.Older.FailureRate, rb.Margin)
			}
		})
	}
}

func aliasListCmd(e *env) func([]string) error {
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		as, err := c.ListAliases(e.ctx, args[0])
		if err != nil {
			return err
		}
		return e.print(as, func(w *tabwriter.Writer) { aliasTable(w, as) })
	}
}

func aliasDeleteCmd(e *env) func([]string) error {
	revision := e.fs.Int64("revision", 0, "delete only if the alias is at this revision")
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		if err := c.DeleteAlias(e.ctx, args[0], args[1], *revision); err != nil {
			return err
		}
		return e.print(map[string]string{"deleted": args[0] + "@" + args[1]}, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "deleted %s@%s\n", args[0], args[1])
		})
	}
}

func aliasTable(w *tabwriter.Writer, as []client.Alias) {
	fmt.Fprintln(w, "ALIAS\tVERSIONS\tSTICKY KEY\tROLLBACK\tREVISION\tUPDATED\tBY")
	for _, a := range as {
		var vs []string
		for _, t := range a.Versions {
			vs = append(vs, fmt.Sprintf("v%d:%d%%", t.Version, t.Weight))
		}
		rb := "-"
		if r := a.Rollback; r != nil {
			rb = fmt.Sprintf("window %d, margin %.2f, min %d", r.Window, r.Margin, r.MinRuns)
		}
		sticky := a.StickyKey
		if sticky == "" {
			sticky = "(run id)"
		}
		fmt.Fprintf(w, "%s@%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.Name, a.Alias, strings.Join(vs, " "), sticky, rb, a.Revision, ts(a.UpdatedAt), a.UpdatedBy)
	}
}
