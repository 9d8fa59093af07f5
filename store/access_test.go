package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/pressly/goose/v3"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/schema"
	"github.com/orchestrator/orchestrator/store"
)

// abase is base as the store keeps times: to the microsecond.
var abase = micro(base)

// adminEvent is an admin log entry of action at abase+sec seconds.
func adminEvent(action engine.AdminAction, tenant string, sec int) *engine.AdminEvent {
	return &engine.AdminEvent{At: abase.Add(time.Duration(sec) * time.Second), Actor: "test", TenantID: tenant, Action: action,
		Data: []byte(`{"n":` + string(rune('0'+sec%10)) + `}`)}
}

// newTenant is an active tenant created at abase.
func newTenant(id string) *engine.Tenant {
	return &engine.Tenant{ID: id, Name: "Tenant " + id, State: engine.TenantActive, Version: 1, CreatedAt: abase, UpdatedAt: abase}
}

// newKey makes a key of role for tenant ("" for admin).
func newKey(t testing.TB, tenant string, role engine.Role, types ...string) (*engine.APIKey, string) {
	t.Helper()
	k, token, err := engine.NewAPIKey(engine.KeyRequest{TenantID: tenant, Role: role, Name: "k-" + string(role), TaskTypes: types}, abase)
	if err != nil {
		t.Fatalf("new key: %v", err)
	}
	return k, token
}

func adminCount(t testing.TB, db *store.DB) int {
	t.Helper()
	return count(t, rawDB(t, db.Path()), `SELECT count(*) FROM admin_log`)
}

func TestStore_Tenants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("the migration registers the tenant default", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		d, err := db.GetTenant(ctx, engine.DefaultTenantID)
		is.NoErr(err)                              // default exists
		is.Equal(d.State, engine.TenantActive)     // active
		is.True(d.Settings.AllowExec)              // keeps exec allowed (ENABLE_EXEC still gates it)
		is.Equal(d.Version, int64(1))              // first version
		is.True(!d.CreatedAt.IsZero())             // has a creation time
		is.Equal(d.CreatedAt.Location(), time.UTC) // in UTC
	})

	t.Run("create, get and list", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		acme := newTenant("acme")
		acme.Settings.AllowExec = true
		ev := adminEvent(engine.AdminTenantCreated, "acme", 1)
		is.NoErr(db.CreateTenant(ctx, acme, ev)) // create acme
		is.Equal(ev.ID, int64(1))                // the store numbered the entry
		is.Equal(len(ev.Hash), 64)               // and chained it
		got, err := db.GetTenant(ctx, "acme")
		is.NoErr(err)       // read back
		is.Equal(got, acme) // exactly as written
		is.NoErr(db.CreateTenant(ctx, newTenant("beta"), adminEvent(engine.AdminTenantCreated, "beta", 2)))
		all, err := db.ListTenants(ctx)
		is.NoErr(err) // list
		var ids []string
		for _, t := range all {
			ids = append(ids, t.ID)
		}
		is.Equal(ids, []string{"acme", "beta", "default"}) // every tenant, by id
	})

	t.Run("an id taken is a conflict and writes nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		is.NoErr(db.CreateTenant(ctx, newTenant("acme"), adminEvent(engine.AdminTenantCreated, "acme", 1)))
		again := newTenant("acme")
		again.Name = "Other"
		err := db.CreateTenant(ctx, again, adminEvent(engine.AdminTenantCreated, "acme", 2))
		is.True(errors.Is(err, engine.ErrConflict))       // refused as a conflict
		is.True(!strings.Contains(err.Error(), "UNIQUE")) // without SQLite's text
		is.Equal(adminCount(t, db), 1)                    // no admin entry for the refused create
		got, err := db.GetTenant(ctx, "acme")
		is.NoErr(err)                     // still there
		is.Equal(got.Name, "Tenant acme") // unchanged
	})

	t.Run("an unknown tenant is not found", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		_, err := db.GetTenant(ctx, "nope")
		is.True(errors.Is(err, engine.ErrTenantNotFound)) // tenant not found
		is.True(errors.Is(err, engine.ErrNotFound))       // which is a not found
	})

	t.Run("the schema refuses a bad id", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		for _, id := range []string{"", "a b", "..", strings.Repeat("x", 65), "é"} {
			err := db.CreateTenant(ctx, newTenant(id), adminEvent(engine.AdminTenantCreated, id, 1))
			is.True(err != nil) // refused
		}
		is.Equal(adminCount(t, db), 0) // nothing recorded
	})

	t.Run("update is a compare-and-set on version", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		is.NoErr(db.CreateTenant(ctx, newTenant("acme"), adminEvent(engine.AdminTenantCreated, "acme", 1)))
		read, err := db.GetTenant(ctx, "acme")
		is.NoErr(err) // read version 1
		next := *read
		next.State = engine.TenantSuspended
		next.UpdatedAt = abase.Add(time.Minute)
		is.NoErr(db.UpdateTenant(ctx, &next, adminEvent(engine.AdminTenantSuspended, "acme", 2))) // update from version 1
		got, err := db.GetTenant(ctx, "acme")
		is.NoErr(err)                                   // read back
		is.Equal(got.Version, int64(2))                 // version moved on
		is.Equal(got.State, engine.TenantSuspended)     // state written
		is.Equal(got.UpdatedAt, abase.Add(time.Minute)) // updated time written

		stale := *read // still version 1
		stale.Name = "Lost"
		err = db.UpdateTenant(ctx, &stale, adminEvent(engine.AdminTenantUpdated, "acme", 3))
		is.True(errors.Is(err, engine.ErrConflict)) // a stale version is a conflict
		got, err = db.GetTenant(ctx, "acme")
		is.NoErr(err)                     // read again
		is.Equal(got.Name, "Tenant acme") // the lost update wrote nothing
		is.Equal(adminCount(t, db), 2)    // nor its admin entry
		is.Equal(got.Version, int64(2))   // version unchanged

		ghost := newTenant("ghost")
		err = db.UpdateTenant(ctx, ghost, adminEvent(engine.AdminTenantUpdated, "ghost", 4))
		is.True(errors.Is(err, engine.ErrTenantNotFound)) // no such tenant
		is.Equal(adminCount(t, db), 2)                    // nothing recorded
	})
}

func TestStore_Keys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("create, get and list by tenant", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		is.NoErr(db.CreateTenant(ctx, newTenant("acme"), adminEvent(engine.AdminTenantCreated, "acme", 1)))
		w, _ := newKey(t, "acme", engine.RoleWorker, "python", "shell")
		w.ExpiresAt = abase.Add(time.Hour)
		op, _ := newKey(t, "default", engine.RoleOperator)
		root, _ := newKey(t, "", engine.RoleAdmin)
		for _, k := range []*engine.APIKey{w, op, root} {
			is.NoErr(db.CreateKey(ctx, k, adminEvent(engine.AdminKeyCreated, k.TenantID, 2))) // create
		}
		got, err := db.GetKey(ctx, w.ID)
		is.NoErr(err)                                        // read back
		is.Equal(got, w)                                     // exactly as written, task types and expiry too
		is.Equal(got.TaskTypes, []string{"python", "shell"}) // task types kept in order
		got, err = db.GetKey(ctx, root.ID)
		is.NoErr(err)              // admin key read back
		is.Equal(got.TenantID, "") // belongs to no tenant
		is.Equal(got.TaskTypes, []string(nil))

		list, err := db.ListKeys(ctx, "acme")
		is.NoErr(err)          // list acme's
		is.Equal(len(list), 1) // only acme's
		is.Equal(list[0].ID, w.ID)
		list, err = db.ListKeys(ctx, "")
		is.NoErr(err)                 // list system keys
		is.Equal(len(list), 1)        // only the admin key
		is.Equal(list[0].ID, root.ID) // it
		list, err = db.ListKeys(ctx, engine.AllTenants)
		is.NoErr(err)          // list every key
		is.Equal(len(list), 3) // all three

		raw := rawDB(t, db.Path())
		is.Equal(count(t, raw, `SELECT count(*) FROM api_keys WHERE secret_hash = ?`, w.SecretHash), 1) // the hash is stored
		_, err = db.GetKey(ctx, "0123456789abcdef")
		is.True(errors.Is(err, engine.ErrNotFound)) // unknown id
	})

	t.Run("a key of an unknown tenant is refused and writes nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		k, _ := newKey(t, "ghost", engine.RoleViewer)
		err := db.CreateKey(ctx, k, adminEvent(engine.AdminKeyCreated, "ghost", 1))
		is.True(errors.Is(err, engine.ErrTenantNotFound)) // tenant not found
		_, err = db.GetKey(ctx, k.ID)
		is.True(errors.Is(err, engine.ErrNotFound)) // no key stored
		is.Equal(adminCount(t, db), 0)              // no entry either
	})

	t.Run("the schema refuses an admin key with a tenant and a tenant key without", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		k, _ := newKey(t, "", engine.RoleAdmin)
		k.TenantID = "default"
		is.True(db.CreateKey(ctx, k, adminEvent(engine.AdminKeyCreated, "default", 1)) != nil) // admin key in a tenant
		k, _ = newKey(t, "default", engine.RoleViewer)
		k.TenantID = ""
		is.True(db.CreateKey(ctx, k, adminEvent(engine.AdminKeyCreated, "", 1)) != nil) // tenant key without tenant
		k, _ = newKey(t, "default", engine.RoleViewer)
		k.TaskTypes = []string{"x"}
		is.True(db.CreateKey(ctx, k, adminEvent(engine.AdminKeyCreated, "default", 1)) != nil) // task types on a viewer
		is.Equal(adminCount(t, db), 0)                                                         // nothing recorded
	})

	t.Run("revoke is a compare-and-set", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		k, _ := newKey(t, "default", engine.RoleViewer)
		is.NoErr(db.CreateKey(ctx, k, adminEvent(engine.AdminKeyCreated, "default", 1)))
		at := abase.Add(time.Hour)
		is.NoErr(db.RevokeKey(ctx, k.ID, at, adminEvent(engine.AdminKeyRevoked, "default", 2))) // revoke
		got, err := db.GetKey(ctx, k.ID)
		is.NoErr(err)               // read back
		is.Equal(got.RevokedAt, at) // revocation time written
		err = db.RevokeKey(ctx, k.ID, at.Add(time.Hour), adminEvent(engine.AdminKeyRevoked, "default", 3))
		is.True(errors.Is(err, engine.ErrConflict)) // revoked already
		got, err = db.GetKey(ctx, k.ID)
		is.NoErr(err)               // read again
		is.Equal(got.RevokedAt, at) // first revocation time kept
		err = db.RevokeKey(ctx, "0123456789abcdef", at, adminEvent(engine.AdminKeyRevoked, "default", 4))
		is.True(errors.Is(err, engine.ErrNotFound)) // unknown key
		is.Equal(adminCount(t, db), 2)              // only the create and the one revocation recorded
	})

	t.Run("touch keeps the latest use in one write", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		a, _ := newKey(t, "default", engine.RoleViewer)
		b, _ := newKey(t, "default", engine.RoleWorker)
		for _, k := range []*engine.APIKey{a, b} {
			is.NoErr(db.CreateKey(ctx, k, adminEvent(engine.AdminKeyCreated, "default", 1)))
		}
		t1, t2 := abase.Add(time.Minute), abase.Add(2*time.Minute)
		is.NoErr(db.TouchKeys(ctx, map[string]time.Time{a.ID: t2, b.ID: t1, "0123456789abcdef": t1})) // an unknown id is ignored
		is.NoErr(db.TouchKeys(ctx, map[string]time.Time{a.ID: t1}))                                   // an older time
		got, err := db.GetKey(ctx, a.ID)
		is.NoErr(err)                // read a
		is.Equal(got.LastUsedAt, t2) // the older time did not win
		got, err = db.GetKey(ctx, b.ID)
		is.NoErr(err)                  // read b
		is.Equal(got.LastUsedAt, t1)   // written
		is.Equal(adminCount(t, db), 2) // use is not an administrative action
	})
}

func TestStore_AdminLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("entries chain, list by tenant and page", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		tenants := []string{"acme", "", "beta", "acme", ""}
		for i, tn := range tenants {
			ev := adminEvent(engine.AdminPolicyLoaded, tn, i)
			is.NoErr(db.AppendAdmin(ctx, ev)) // append
			is.Equal(ev.ID, int64(i+1))       // numbered 1..n
		}
		n, err := db.VerifyAdminLog(ctx)
		is.NoErr(err)  // the chain verifies
		is.Equal(n, 5) // every entry checked

		all, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: engine.AllTenants})
		is.NoErr(err)         // list all
		is.Equal(len(all), 5) // every entry
		for i := range all {
			var prev *engine.AdminEvent
			if i > 0 {
				prev = &all[i-1]
			}
			is.NoErr(engine.VerifyAdminEntry(prev, &all[i])) // each chained to the one before
		}
		acme, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: "acme"})
		is.NoErr(err)                                            // list acme's
		is.Equal([]int64{acme[0].ID, acme[1].ID}, []int64{1, 4}) // acme's only
		sys, err := db.ListAdmin(ctx, engine.AdminFilter{})
		is.NoErr(err)                                          // list system entries
		is.Equal([]int64{sys[0].ID, sys[1].ID}, []int64{2, 5}) // those of no tenant
		page, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: engine.AllTenants, After: 2, Limit: 2})
		is.NoErr(err)                                            // a page
		is.Equal([]int64{page[0].ID, page[1].ID}, []int64{3, 4}) // after 2, two entries
		is.Equal(page[0], all[2])                                // as written
	})

	t.Run("the triggers refuse UPDATE and DELETE", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		is.NoErr(db.AppendAdmin(ctx, adminEvent(engine.AdminKeyCreated, "default", 1)))
		before, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: engine.AllTenants})
		is.NoErr(err) // entries before
		raw := rawDB(t, db.Path())
		_, err = raw.Exec(`UPDATE admin_log SET actor = 'someone else'`)
		is.True(err != nil)                                   // update refused
		is.True(strings.Contains(err.Error(), "append-only")) // says why
		_, err = raw.Exec(`DELETE FROM admin_log`)
		is.True(err != nil)                                   // delete refused
		is.True(strings.Contains(err.Error(), "append-only")) // says why
		after, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: engine.AllTenants})
		is.NoErr(err)           // entries after
		is.Equal(after, before) // unchanged
	})

	t.Run("verify finds an entry changed behind the triggers' back", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		for i := range 3 {
			is.NoErr(db.AppendAdmin(ctx, adminEvent(engine.AdminKeyCreated, "default", i)))
		}
		raw := rawDB(t, db.Path())
		_, err := raw.Exec(`DROP TRIGGER admin_log_no_update`)
		is.NoErr(err) // a tamperer with file access drops the trigger
		_, err = raw.Exec(`UPDATE admin_log SET actor = 'someone else' WHERE id = 2`)
		is.NoErr(err) // and rewrites an entry
		n, err := db.VerifyAdminLog(ctx)
		is.True(err != nil)                               // the chain breaks
		is.True(strings.Contains(err.Error(), "entry 2")) // at the entry changed
		is.Equal(n, 1)                                    // the one before it verified
	})

	t.Run("an entry without actor or time is refused", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		is.True(db.AppendAdmin(ctx, &engine.AdminEvent{At: abase, Action: engine.AdminPolicyLoaded}) != nil)  // no actor
		is.True(db.AppendAdmin(ctx, &engine.AdminEvent{Actor: "x", Action: engine.AdminPolicyLoaded}) != nil) // no time
		is.Equal(adminCount(t, db), 0)                                                                        // nothing written
	})

	t.Run("entries appended at once from many goroutines still chain", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		release := holdWriter(t, db) // appends queue up behind it and commit in batches
		errs := make(chan error, 20)
		for i := range 20 {
			go func() { errs <- db.AppendAdmin(ctx, adminEvent(engine.AdminKeyCreated, "default", i)) }()
		}
		release()
		for range 20 {
			is.NoErr(recv(t, errs, "append")) // each append
		}
		n, err := db.VerifyAdminLog(ctx)
		is.NoErr(err)   // the chain verifies
		is.Equal(n, 20) // with every entry
	})
}

// TestStore_AccessMigration opens a database made before access control with
// data of several tenants, and checks that the migration registers them.
func TestStore_AccessMigration(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	is.NoErr(err) // open a plain connection
	defer raw.Close()
	p, err := goose.NewProvider(goose.DialectSQLite3, raw, schema.FS)
	is.NoErr(err) // migrations
	_, err = p.UpTo(ctx, 6)
	is.NoErr(err) // the schema before access control
	for _, w := range []struct{ tenant, typ string }{{"acme", "exec"}, {"beta", "noop"}, {"bad id", "noop"}, {"default", "noop"}} {
		_, err := raw.Exec(`INSERT INTO workflows (tenant_id, name, version, definition, hash, created_at) VALUES (?, 'wf', 1, ?, 'h', ?)`,
			w.tenant, `{"name":"wf","tasks":[{"id":"a","type":"`+w.typ+`"}]}`, engine.FormatTime(abase))
		is.NoErr(err) // a definition of the tenant
	}

	db := openAt(t, path, store.Options{}) // migrates to the latest
	all, err := db.ListTenants(ctx)
	is.NoErr(err) // list
	got := map[string]bool{}
	for _, tn := range all {
		got[tn.ID] = tn.Settings.AllowExec
		is.Equal(tn.State, engine.TenantActive) // every one active
	}
	is.Equal(got, map[string]bool{"acme": true, "beta": false, "default": true}) // exec stays allowed where it was used; the unusable id is left out
}
