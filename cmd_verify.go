package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// openReadOnly opens the configured database for the commands that only
// read it (verify, history): it is neither created nor migrated, and one
// whose schema is not this binary's is reported, not changed.
func openReadOnly(ctx context.Context, c *config) (*store.DB, error) {
	if _, err := os.Stat(c.databasePath); err != nil {
		return nil, fmt.Errorf("database %s: %w", c.databasePath, err)
	}
	return store.Open(ctx, c.databasePath, store.Options{ReadOnly: true})
}

// verify checks every run, the admin log and every schedule's log; the
// exit code is 1 when any run or schedule differs or a log does not chain.
func verify(ctx context.Context, c *config, stdout, stderr io.Writer) int {
	db, err := openReadOnly(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	defer db.Close()
	var bad []string
	n, err := engine.Verify(ctx, db, func(_, id string, err error) {
		bad = append(bad, id)
		fmt.Fprintf(stdout, "MISMATCH %s: %v\n", id, err)
	})
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	fmt.Fprintf(stdout, "verified %d runs: %d ok, %d differ\n", n, n-len(bad), len(bad))
	entries, aerr := db.VerifyAdminLog(ctx)
	if aerr != nil {
		fmt.Fprintf(stdout, "MISMATCH admin log after %d entries: %v\n", entries, aerr)
	} else {
		fmt.Fprintf(stdout, "verified the admin log: %d entries chain\n", entries)
	}
	var badSchedules int
	schedules, serr := engine.VerifySchedules(ctx, db, func(tenantID, id string, err error) {
		badSchedules++
		fmt.Fprintf(stdout, "MISMATCH schedule %s/%s: %v\n", tenantID, id, err)
	})
	if serr != nil {
		fmt.Fprintln(stderr, "orchestrator:", serr)
		return 1
	}
	fmt.Fprintf(stdout, "verified %d schedules: %d ok, %d differ\n", schedules, schedules-badSchedules, badSchedules)
	if len(bad) > 0 || aerr != nil || badSchedules > 0 {
		return 1
	}
	return 0
}
