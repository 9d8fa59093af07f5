package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// The tenants and keys commands work on the database file itself, with no
// server running: they bootstrap the first keys of a deployment. Each change
// is recorded in the admin log with the actor cli:<user>. A server running on
// the same file sees a revocation or a suspension within its key cache time.
//
// With --server they call that server's admin API instead, with the key of
// --api-key, which the admin log then records: an owner or admin on another
// machine makes and revokes keys without the file. Only --server switches:
// ORCHESTRATOR_URL is set in the Docker image for its health check, and the
// bootstrap must work on the file there too.

// DefaultDatabaseURL is the database the offline commands open unless
// --database-url or DATABASE_URL says otherwise, as for the server.
const DefaultDatabaseURL = "orchestrator.db"

// accessCommand is one tenants or keys subcommand.
type accessCommand struct {
	args    string
	nargs   int
	help    string
	creates bool // may create the database file; the others need it to exist
	setup   func(a *accessEnv) func(args []string) error
}

var accessCommands = map[string]accessCommand{
	"tenants create":  {"ID", 1, "Register a tenant.", true, tenantCreateCmd},
	"tenants list":    {"", 0, "List every tenant.", false, tenantListCmd},
	"tenants get":     {"ID", 1, "Show a tenant.", false, tenantGetCmd},
	"tenants update":  {"ID", 1, "Change a tenant's name or settings.", false, tenantUpdateCmd},
	"tenants suspend": {"ID", 1, "Suspend a tenant: its calls are refused with 403 until it is resumed.", false, tenantStateCmd(engine.TenantSuspended)},
	"tenants resume":  {"ID", 1, "Resume a suspended tenant.", false, tenantStateCmd(engine.TenantActive)},
	"keys create": {"", 0, "Create an API key and print it, once: only a hash of its secret is stored. " +
		"The key goes to stdout alone (KEY=$(orchestrator keys create ...)), the rest to stderr.", true, keyCreateCmd},
	"keys list":   {"", 0, "List API keys (never their secrets): a tenant's with --tenant, else every key (on the file only).", false, keyListCmd},
	"keys revoke": {"KEY_ID", 1, "Revoke an API key (of the tenant --tenant names, which --server needs).", false, keyRevokeCmd},
}

// accessEnv is one tenants or keys invocation.
type accessEnv struct {
	*env
	b accessBackend
}

// runAccess runs a tenants or keys command, on the database file or, with
// --server, on that server.
func runAccess(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "usage: orchestrator %s\n", Usage[cmd])
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return 0
		}
		return 2
	}
	sub := args[0]
	c, ok := accessCommands[cmd+" "+sub]
	if !ok {
		fmt.Fprintf(stderr, "orchestrator %s: unknown command %q\nusage: orchestrator %s\n", cmd, sub, Usage[cmd])
		return 2
	}
	name := cmd + " " + sub
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, fs: flag.NewFlagSet("orchestrator "+name, flag.ContinueOnError)}
	e.fs.SetOutput(stderr)
	dbURL := e.fs.String("database-url", envOr("DATABASE_URL", DefaultDatabaseURL),
		"SQLite database: a file path, file:PATH or sqlite:///PATH (env DATABASE_URL); without --server")
	e.fs.StringVar(&e.server, "server", "", "call this server's admin API (http://host:port) instead of working on the database file; "+
		"only this flag switches, not ORCHESTRATOR_URL, which the Docker image sets: the offline bootstrap keeps working there")
	e.fs.StringVar(&e.apiKey, "api-key", os.Getenv("ORCHESTRATOR_API_KEY"),
		"with --server: API key sent as Authorization: Bearer, an admin's or the tenant owner's (env ORCHESTRATOR_API_KEY; prefer the variable: a flag shows in the process list)")
	e.fs.DurationVar(&e.timeout, "timeout", 30*time.Second, "with --server: timeout of each request")
	e.fs.StringVar(&e.output, "o", "table", "output: table or json")
	e.tenant = client.DefaultTenant // admin calls name their tenant in the path
	a := &accessEnv{env: e}
	run := c.setup(a)
	e.fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: orchestrator %s %s\n\n%s\n\nflags:\n", name, c.args, c.help)
		e.fs.PrintDefaults()
	}
	pos, err := parseInterspersed(e.fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != c.nargs {
		fmt.Fprintf(stderr, "usage: orchestrator %s %s\n", name, c.args)
		return 2
	}
	if e.output != "table" && e.output != "json" {
		fmt.Fprintf(stderr, "orchestrator: -o %q: want table or json\n", e.output)
		return 2
	}
	if e.server != "" {
		given := false
		e.fs.Visit(func(f *flag.Flag) { given = given || f.Name == "database-url" })
		if given {
			fmt.Fprintln(stderr, "orchestrator: --database-url: works on the file, --server on a server: give one of them")
			return 2
		}
		cl, err := e.client()
		if err != nil {
			fmt.Fprintln(stderr, "orchestrator: --server:", err)
			return 2
		}
		a.b = &serverAccess{c: cl}
		return a.finish(run(pos))
	}
	path, err := store.ParseURL(*dbURL)
	if err == nil && !c.creates {
		if _, serr := os.Stat(path); serr != nil {
			err = fmt.Errorf("database %s: %w", path, serr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	defer db.Close()
	a.b = &fileAccess{admin: &engine.Admin{Store: db}, by: cliPrincipal()}
	return a.finish(run(pos))
}

// finish prints the error of a command and returns its exit code: 2 for a
// bad flag, naming it, whether the file or the server found it (a 400
// naming its fields), so that both modes answer bad input alike; 1 for any
// other refusal, which printErr explains as for the other server commands.
func (a *accessEnv) finish(err error) int {
	var fe *engine.FieldError
	var ce *client.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &fe):
		fmt.Fprintf(a.stderr, "orchestrator: %s: %s\n", flagOf(fe.Field), fe.Reason)
		return 2
	case errors.As(err, &ce) && ce.Code == wire.CodeInvalidRequest && len(ce.Errors) > 0:
		for _, p := range ce.Errors {
			fmt.Fprintf(a.stderr, "orchestrator: %s: %s\n", flagOf(p.Field), p.Message)
		}
		return 2
	}
	printErr(a.stderr, err)
	return 1
}

// cliPrincipal is the admin the offline commands act as, named after the
// user who runs them: whoever can write the database file is its admin.
func cliPrincipal() *engine.Principal {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		return &engine.Principal{Name: "cli", Role: engine.RoleAdmin}
	}
	return &engine.Principal{Name: "cli:" + name, Role: engine.RoleAdmin}
}

// flagOf names the flag that sets a request field.
func flagOf(field string) string {
	if f, ok := quotaFlagOf(field); ok {
		return f
	}
	switch {
	case field == "id":
		return "ID"
	case field == "expires_at":
		return "--expires"
	case strings.HasPrefix(field, "task_types"):
		return "--task-types (" + field + ")"
	}
	// settings.retention_days is --retention-days, settings.allow_exec --allow-exec.
	return "--" + strings.ReplaceAll(strings.TrimPrefix(field, "settings."), "_", "-")
}

func tenantCreateCmd(a *accessEnv) func([]string) error {
	name := a.fs.String("name", "", "display name (default the id)")
	exec := a.fs.Bool("allow-exec", false, "allow the tenant's definitions to use exec tasks (the server's ENABLE_EXEC must be on too)")
	quotas := newQuotaFlags(a.fs)
	retention := a.fs.Int("retention-days", 0, "days the tenant's finished runs stay live before they are archived (0: the server's RETENTION, -1: forever)")
	return func(args []string) error {
		if err := quotas.check(); err != nil {
			return err
		}
		s := engine.TenantSettings{AllowExec: *exec, RetentionDays: *retention}
		applySettings(&s, &wire.SettingsChange{Quotas: quotas.change(a.fs)})
		t, err := a.b.createTenant(a.ctx, args[0], *name, s)
		if err != nil {
			return err
		}
		return a.print(t, func(w *tabwriter.Writer) { fmt.Fprintf(w, "created tenant %s (%s)\n", t.ID, t.Name) })
	}
}

func tenantTable(w *tabwriter.Writer, ts ...engine.Tenant) {
	fmt.Fprintln(w, "ID\tNAME\tSTATE\tEXEC\tCREATED\tUPDATED")
	for _, t := range ts {
		exec := "no"
		if t.Settings.AllowExec {
			exec = "allowed"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.State, exec, ts2(t.CreatedAt), ts2(t.UpdatedAt))
	}
}

func ts2(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func tenantListCmd(a *accessEnv) func([]string) error {
	return func([]string) error {
		ts, err := a.b.listTenants(a.ctx)
		if err != nil {
			return err
		}
		return a.print(ts, func(w *tabwriter.Writer) { tenantTable(w, ts...) })
	}
}

func tenantGetCmd(a *accessEnv) func([]string) error {
	return func(args []string) error {
		t, err := a.b.getTenant(a.ctx, args[0])
		if err != nil {
			return err
		}
		return a.print(t, func(w *tabwriter.Writer) {
			tenantTable(w, *t)
			if q := quotaLine(t.Settings.Quotas); q != "" {
				fmt.Fprintf(w, "\nquotas: %s\n", q)
			}
			if d := t.Settings.RetentionDays; d != 0 {
				fmt.Fprintf(w, "retention_days: %d\n", d)
			}
		})
	}
}

func tenantUpdateCmd(a *accessEnv) func([]string) error {
	name := a.fs.String("name", "", "new display name")
	exec := a.fs.Bool("allow-exec", false, "allow (true) or forbid (false) exec tasks")
	quotas := newQuotaFlags(a.fs)
	retention := a.fs.Int("retention-days", 0, "days the tenant's finished runs stay live (0: the server's RETENTION, -1: forever)")
	return func(args []string) error {
		// Only what the flags name: the other settings stay as the server
		// (or the file) holds them when the change is made.
		if err := quotas.check(); err != nil {
			return err
		}
		var c wire.UpdateTenantRequest
		s := &wire.SettingsChange{Quotas: quotas.change(a.fs)}
		a.fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "name":
				c.Name = name
			case "allow-exec":
				s.AllowExec = exec
			case "retention-days":
				s.RetentionDays = retention
			}
		})
		if s.AllowExec != nil || s.RetentionDays != nil || s.Quotas != nil {
			c.Settings = s
		}
		if c.Name == nil && c.Settings == nil {
			return &engine.FieldError{Field: "name", Reason: "give --name, --allow-exec, --retention-days or a quota flag: nothing to change"}
		}
		t, err := a.b.updateTenant(a.ctx, args[0], c)
		if err != nil {
			return err
		}
		return a.print(t, func(w *tabwriter.Writer) { tenantTable(w, *t) })
	}
}

func tenantStateCmd(state engine.TenantState) func(a *accessEnv) func([]string) error {
	return func(a *accessEnv) func([]string) error {
		return func(args []string) error {
			t, err := a.b.setTenantState(a.ctx, args[0], state)
			if err != nil {
				return err
			}
			return a.print(t, func(w *tabwriter.Writer) { fmt.Fprintf(w, "tenant %s is %s\n", t.ID, t.State) })
		}
	}
}

// newKey is what keys create prints with -o json: the key, once, and what
// is stored of it.
type newKey struct {
	Key string `json:"key"`
	*engine.APIKey
}

func keyCreateCmd(a *accessEnv) func([]string) error {
	tenant := a.fs.String("tenant", "", "the key's tenant; none for an admin key, which is made only on the file (without --server)")
	role := a.fs.String("role", "", "admin, owner, operator, viewer or worker")
	name := a.fs.String("name", "", "a name for the key, [A-Za-z0-9_.-]{1,64}; events record it with the key's id")
	types := a.fs.String("task-types", "", "worker keys: comma-separated task types it may lease (default every type)")
	expires := a.fs.Duration("expires", 0, "how long the key is valid, e.g. 720h (default no expiry)")
	return func([]string) error {
		r := engine.KeyRequest{TenantID: *tenant, Role: engine.Role(*role), Name: *name}
		if *types != "" {
			r.TaskTypes = strings.Split(*types, ",")
		}
		if *expires < 0 {
			return &engine.FieldError{Field: "expires_at", Reason: "must be a positive duration, e.g. 720h"}
		}
		if *expires > 0 {
			r.ExpiresAt = time.Now().Add(*expires)
		}
		k, token, err := a.b.createKey(a.ctx, r)
		if err != nil {
			return err
		}
		if a.output == "json" {
			return a.print(newKey{Key: token, APIKey: k}, nil)
		}
		owner := "of no tenant (system)"
		if k.TenantID != "" {
			owner = "of tenant " + k.TenantID
		}
		fmt.Fprintf(a.stderr, "created key %s: %s %s, named %s", k.ID, k.Role, owner, k.Name)
		if !k.ExpiresAt.IsZero() {
			fmt.Fprintf(a.stderr, ", expires %s", ts2(k.ExpiresAt))
		}
		fmt.Fprintln(a.stderr, "\nthis is the only time the key is shown: store it now (send it as Authorization: Bearer KEY)")
		_, err = fmt.Fprintln(a.stdout, token)
		return err
	}
}

func keyListCmd(a *accessEnv) func([]string) error {
	tenant := a.fs.String("tenant", "", "list this tenant's keys only (default every key; required with --server)")
	return func([]string) error {
		scope := engine.AllTenants
		if *tenant != "" {
			scope = *tenant
			if _, err := a.b.getTenant(a.ctx, scope); err != nil {
				return err
			}
		}
		keys, err := a.b.listKeys(a.ctx, scope)
		if err != nil {
			return err
		}
		if keys == nil {
			keys = []engine.APIKey{}
		}
		now := time.Now()
		return a.print(keys, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tTENANT\tNAME\tROLE\tTASK TYPES\tSTATUS\tCREATED\tEXPIRES\tLAST USED")
			for _, k := range keys {
				tn, types := k.TenantID, strings.Join(k.TaskTypes, ",")
				if tn == "" {
					tn = "-"
				}
				if types == "" {
					types = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, tn, k.Name, k.Role, types, k.Status(now),
					ts2(k.CreatedAt), ts2(k.ExpiresAt), ts2(k.LastUsedAt))
			}
		})
	}
}

func keyRevokeCmd(a *accessEnv) func([]string) error {
	tenant := a.fs.String("tenant", "", "the key's tenant: a key of another is not found (default any tenant; required with --server)")
	return func(args []string) error {
		scope := engine.AllTenants
		if *tenant != "" {
			scope = *tenant
		}
		k, err := a.b.revokeKey(a.ctx, scope, args[0])
		if err != nil {
			return err
		}
		return a.print(k, func(w *tabwriter.Writer) { fmt.Fprintf(w, "revoked key %s (%s)\n", k.ID, k.Name) })
	}
}
