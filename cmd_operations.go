package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// operation is a command that acts on the database file itself (copies,
// replaces or signs it), beside the server rather than through it.
type operation struct {
	usage string
	// setup declares the command's own flags on fs and returns what runs it
	// with the settings and its positional arguments.
	setup func(fs *flag.FlagSet) func(ctx context.Context, c *config, args []string, stdout, stderr io.Writer) int
}

// operations are the operator's commands on the database, by name.
var operations = map[string]operation{
	"backup":      {usage: backupUsage, setup: backupCmd},
	"restore":     {usage: restoreUsage, setup: restoreCmd},
	"checkpoints": {usage: checkpointsUsage, setup: checkpointsCmd},
	"archive":     {usage: archiveUsage, setup: archiveCmd},
}

// operationNames lists the operations in the order the help shows them.
func operationNames() []string {
	names := make([]string, 0, len(operations))
	for k := range operations {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// runOperation parses an operation's flags (which may follow its
// arguments), the shared settings among them, and runs it. It returns the
// exit code: 0 done, 1 failed, 2 bad usage.
func runOperation(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	op := operations[name]
	var c config
	fs := flag.NewFlagSet("orchestrator "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs, false)
	run := op.setup(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: orchestrator "+op.usage)
		fs.PrintDefaults()
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	c.parsed(fs)
	if err := c.validate(stderr); err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 2
	}
	return run(ctx, &c, pos, stdout, stderr)
}

// usageError prints why the arguments are wrong and the usage line, and
// returns the exit code of bad usage.
func usageError(stderr io.Writer, usage, why string) int {
	name, _, _ := strings.Cut(usage, " ")
	fmt.Fprintf(stderr, "orchestrator %s: %s\nusage: orchestrator %s\n", name, why, usage)
	return 2
}
