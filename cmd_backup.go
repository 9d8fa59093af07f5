package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

const (
	backupUsage  = "backup [flags] FILE: copy the database while a server keeps writing, check the copy and say what it holds"
	restoreUsage = "restore [flags] FILE: check a backup and put it in place of the database (refused while anything has the database open)"
)

// backupCmd copies DATABASE_URL to a new file; the exit code is 1 when the
// copy could not be made or does not pass its checks.
func backupCmd(*flag.FlagSet) func(context.Context, *config, []string, io.Writer, io.Writer) int {
	return func(ctx context.Context, c *config, args []string, stdout, stderr io.Writer) int {
		if len(args) != 1 {
			return usageError(stderr, backupUsage, "want one FILE to write")
		}
		db, err := openReadOnly(ctx, c)
		if err != nil {
			fmt.Fprintln(stderr, "orchestrator:", err)
			return 1
		}
		defer db.Close()
		report, err := db.Backup(ctx, args[0])
		if err != nil {
			fmt.Fprintln(stderr, "orchestrator:", err)
			return 1
		}
		fmt.Fprintf(stdout, "backup of %s written to %s\n", c.databasePath, report.Path)
		printReport(stdout, report)
		if !report.Check.OK() {
			fmt.Fprintf(stdout, "the copy does NOT pass its checks: it holds what the database holds\n")
			return 1
		}
		return 0
	}
}

// restoreCmd puts a checked backup in place of DATABASE_URL.
func restoreCmd(*flag.FlagSet) func(context.Context, *config, []string, io.Writer, io.Writer) int {
	return func(ctx context.Context, c *config, args []string, stdout, stderr io.Writer) int {
		if len(args) != 1 {
			return usageError(stderr, restoreUsage, "want the backup FILE to restore")
		}
		report, err := store.Restore(ctx, args[0], c.databasePath)
		if errors.Is(err, store.ErrCheckFailed) && report != nil {
			fmt.Fprintf(stdout, "backup %s, not restored:\n", args[0])
			printReport(stdout, report)
		}
		if err != nil {
			fmt.Fprintln(stderr, "orchestrator:", err)
			return 1
		}
		fmt.Fprintf(stdout, "restored %s to %s\n", args[0], report.Path)
		if report.Replaced != "" {
			fmt.Fprintf(stdout, "the database that was there is kept as %s\n", report.Replaced)
		}
		printReport(stdout, report)
		state := filepath.Join(filepath.Dir(report.Path), "."+filepath.Base(report.Path)+"-litestream")
		if _, err := os.Stat(state); err == nil {
			fmt.Fprintf(stdout, "%s is Litestream's record of the replaced database: remove it before Litestream replicates this one\n", state)
		}
		return 0
	}
}

// printReport prints what a copy holds and what its checks found.
func printReport(w io.Writer, r *engine.BackupReport) {
	s := &r.Summary
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var states []string
	for _, st := range engine.RunStates() {
		if n := s.Runs[st]; n > 0 {
			states = append(states, fmt.Sprintf("%s %d", st, n))
		}
	}
	runs := fmt.Sprint(s.TotalRuns())
	if len(states) > 0 {
		runs += ": " + strings.Join(states, ", ")
	}
	fmt.Fprintf(tw, "  size\t%d bytes\n", s.Bytes)
	fmt.Fprintf(tw, "  schema version\t%d\n", s.SchemaVersion)
	fmt.Fprintf(tw, "  tenants\t%d\n", s.Tenants)
	fmt.Fprintf(tw, "  definitions\t%d (versions)\n", s.Definitions)
	fmt.Fprintf(tw, "  runs\t%s\n", runs)
	fmt.Fprintf(tw, "  events\t%d (last id %d)\n", s.Events, s.LastEventID)
	fmt.Fprintf(tw, "  checkpoints\t%d\n", s.Checkpoints)
	integrity := "ok"
	if len(r.Check.Integrity) > 0 {
		integrity = fmt.Sprintf("%d problems", len(r.Check.Integrity))
	}
	fmt.Fprintf(tw, "  integrity\t%s\n", integrity)
	fmt.Fprintf(tw, "  verify\t%d runs: %d ok, %d differ\n", r.Check.RunsChecked, r.Check.RunsChecked-len(r.Check.RunsDiffer), len(r.Check.RunsDiffer))
	tw.Flush()
	for _, p := range r.Check.Integrity {
		fmt.Fprintf(w, "INTEGRITY %s\n", p)
	}
	for _, p := range r.Check.RunsDiffer {
		fmt.Fprintf(w, "MISMATCH %s: %s\n", p.RunID, p.Problem)
	}
}

// backupDirName is the backup directory beside the database unless
// BACKUP_DIR names another.
const backupDirName = "backups"

// backupDir is where a running server writes the backups asked for over
// HTTP: BACKUP_DIR, or backups/ beside the database.
func backupDir(c *config) string { return c.besideDatabase(c.backupDir, backupDirName) }
