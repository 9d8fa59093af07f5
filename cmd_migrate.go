package main

import (
	"context"
	"fmt"
	"io"

	"github.com/orchestrator/orchestrator/store"
)

// migrate applies the migrations the database lacks. Of the offline
// commands, verify and history never do: they report a database that needs
// this.
func migrate(ctx context.Context, c *config, stdout io.Writer) error {
	if err := store.Migrate(ctx, c.databasePath); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "migrations applied to", c.databasePath)
	return nil
}
