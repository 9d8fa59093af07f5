package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/retention"
	"github.com/orchestrator/orchestrator/store"
)

const (
	archiveUsage = "archive run|verify FILE: remove finished runs past their tenant's retention_days or RETENTION into archives, or check an archive (against the database unless --offline)"
	// archiveDirName is the archive directory beside the database unless
	// ARCHIVE_DIR names another.
	archiveDirName = "archives"
)

// retentionFlags declares the settings the server's retention and the
// archive command share.
func retentionFlags(fs *flag.FlagSet, c *config) {
	fs.DurationVar(&c.retention, "retention", c.envDuration("retention", "RETENTION", 0),
		"how long finished runs stay in the live database before they are archived and removed, e.g. 2160h; 0 = forever (env RETENTION)")
	fs.StringVar(&c.archiveDir, "archive-dir", os.Getenv("ARCHIVE_DIR"),
		"where retention writes its archives (TENANT/DAY.ndjson.gz), created with mode 0700; default archives/ beside the database (env ARCHIVE_DIR)")
}

// archiveDir is where retention writes its archives.
func archiveDir(c *config) string { return c.besideDatabase(c.archiveDir, archiveDirName) }

// newRetention is the retention service of the settings on db: each
// tenant's retention_days, else RETENTION. tenant reads a tenant (nil: from
// db).
func newRetention(c *config, db *store.DB, interval time.Duration,
	tenant func(ctx context.Context, id string) (*engine.Tenant, error)) (*retention.Service, error) {
	keep := c.retention
	if tenant == nil {
		tenant = db.GetTenant
	}
	return retention.New(retention.Config{Store: db, Dir: archiveDir(c), Interval: interval, Logger: c.logger,
		Retention: func(ctx context.Context, id string) (time.Duration, error) {
			t, err := tenant(ctx, id)
			if errors.Is(err, engine.ErrNotFound) || errors.Is(err, engine.ErrTenantNotFound) {
				return keep, nil // runs of a tenant never registered: the server's retention
			}
			if err != nil {
				return 0, err
			}
			return t.Settings.Retention(keep), nil
		}})
}

// startRetention starts the server's periodic retention. With RETENTION 0
// only tenants that set their own retention_days lose runs.
func startRetention(c *config, db *store.DB, tenant func(ctx context.Context, id string) (*engine.Tenant, error)) (*retention.Service, error) {
	s, err := newRetention(c, db, c.retentionEvery, tenant)
	if err != nil {
		return nil, err
	}
	c.logger.Info("retention", "keep", c.retention.String(), "every", c.retentionEvery.String(), "archives", archiveDir(c))
	s.Start()
	return s, nil
}

// archiveCmd runs the archive subcommands.
func archiveCmd(fs *flag.FlagSet) func(context.Context, *config, []string, io.Writer, io.Writer) int {
	var c0 config
	retentionFlags(fs, &c0)
	offline := fs.Bool("offline", false, "verify: check the archive alone, without the database's tombstones")
	return func(ctx context.Context, c *config, args []string, stdout, stderr io.Writer) int {
		c.retention, c.archiveDir = c0.retention, c0.archiveDir
		fail := func(err error) int {
			fmt.Fprintln(stderr, "orchestrator:", err)
			return 1
		}
		switch {
		case len(args) == 1 && args[0] == "run":
			db, err := openForWrite(ctx, c)
			if err != nil {
				return fail(err)
			}
			defer db.Close()
			s, err := newRetention(c, db, 0, nil)
			if err != nil {
				return fail(err)
			}
			rep, err := s.RunOnce(ctx)
			fmt.Fprintf(stdout, "%d runs removed into %d archives under %s\n", rep.Removed, len(rep.Archives), archiveDir(c))
			for _, a := range rep.Archives {
				fmt.Fprintln(stdout, "  "+a)
			}
			if err != nil {
				return fail(err)
			}
			return 0
		case len(args) == 2 && args[0] == "verify":
			var tombs retention.Tombstones
			if !*offline {
				db, err := openReadOnly(ctx, c)
				if err != nil {
					return fail(err)
				}
				defer db.Close()
				tombs = db
			}
			rep, err := retention.VerifyArchive(ctx, args[1], tombs)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "%s: %d runs, chains and folds checked", args[1], rep.Records)
			if tombs != nil {
				fmt.Fprintf(stdout, "; %d match their tombstones, %d still live", rep.Matched, rep.Live)
			}
			fmt.Fprintln(stdout)
			for _, p := range rep.Problems {
				b, _ := json.Marshal(p)
				fmt.Fprintf(stdout, "MISMATCH %s\n", b)
			}
			if len(rep.Problems) > 0 {
				return 1
			}
			return 0
		}
		return usageError(stderr, archiveUsage, fmt.Sprintf("unknown subcommand or arguments %q", strings.Join(args, " ")))
	}
}
