package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// adminLog returns the whole admin log.
func adminLog(t *testing.T, f *accessFixture) []engine.AdminEvent {
	t.Helper()
	log, err := f.db.ListAdmin(context.Background(), engine.AdminFilter{TenantID: engine.AllTenants})
	if err != nil {
		t.Fatalf("list admin log: %v", err)
	}
	return log
}

func TestAdmin_Tenants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("every change is recorded with its actor", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0) // created acme
		name := "Acme Corp"
		tn, err := f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "acme", engine.TenantChange{Name: &name,
			Settings: &engine.TenantSettings{AllowExec: true}})
		is.NoErr(err)                  // rename and allow exec
		is.Equal(tn.Name, name)        // renamed
		is.True(tn.Settings.AllowExec) // exec allowed
		is.Equal(tn.Version, int64(2)) // next version
		tn, err = f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "acme", engine.TenantChange{State: engine.TenantSuspended})
		is.NoErr(err)                              // suspend
		is.Equal(tn.State, engine.TenantSuspended) // suspended
		stored, err := f.db.GetTenant(ctx, "acme")
		is.NoErr(err)        // read back
		is.Equal(stored, tn) // what UpdateTenant returned is what is stored

		log := adminLog(t, f)
		var actions []engine.AdminAction
		for _, e := range log {
			actions = append(actions, e.Action)
			is.Equal(e.Actor, "local")   // by the local admin
			is.Equal(e.TenantID, "acme") // about acme
		}
		is.Equal(actions, []engine.AdminAction{engine.AdminTenantCreated, engine.AdminTenantUpdated, engine.AdminTenantSuspended})
		var data map[string]any
		is.NoErr(json.Unmarshal(log[1].Data, &data)) // the update's data
		is.Equal(data, map[string]any{"name": name, "settings": map[string]any{"allow_exec": true},
			"previous_settings": map[string]any{"allow_exec": false}}) // names what changed, and from what
		n, err := f.db.VerifyAdminLog(ctx)
		is.NoErr(err)  // the log verifies
		is.Equal(n, 3) // every entry
	})

	t.Run("a quota change is recorded with its old and new values", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		_, err := f.admin.CreateTenant(ctx, engine.LocalAdmin(), "quota", "", engine.TenantSettings{
			Quotas: engine.TenantQuotas{MaxActiveRuns: 5}})
		is.NoErr(err)
		_, err = f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "quota", engine.TenantChange{Settings: &engine.TenantSettings{
			Quotas: engine.TenantQuotas{MaxActiveRuns: 2, StartRate: 1.5, OnActiveLimit: engine.OnActiveQueue}}})
		is.NoErr(err)
		log := adminLog(t, f)
		var data map[string]any
		is.NoErr(json.Unmarshal(log[len(log)-1].Data, &data))
		is.Equal(data["settings"], map[string]any{"allow_exec": false, "quotas": map[string]any{
			"max_active_runs": 2.0, "start_rate": 1.5, "on_active_limit": "queue"}}) // the new values
		is.Equal(data["previous_settings"], map[string]any{"allow_exec": false, "quotas": map[string]any{
			"max_active_runs": 5.0}}) // and the old

		_, err = f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "quota", engine.TenantChange{Settings: &engine.TenantSettings{
			Quotas: engine.TenantQuotas{MaxActiveRuns: -2}}})
		var field *engine.FieldError
		is.True(errors.As(err, &field))                          // out of bounds
		is.Equal(field.Field, "settings.quotas.max_active_runs") // named
		is.Equal(len(adminLog(t, f)), len(log))                  // nothing recorded
		_, err = f.admin.CreateTenant(ctx, engine.LocalAdmin(), "beta", "", engine.TenantSettings{
			Quotas: engine.TenantQuotas{OnActiveLimit: "drop"}})
		is.True(errors.As(err, &field))
		is.Equal(field.Field, "settings.quotas.on_active_limit")
	})

	t.Run("a refused change writes nothing", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		owner := &engine.Principal{KeyID: "aaaaaaaaaaaa", Name: "boss", TenantID: "acme", Role: engine.RoleOwner}
		_, err := f.admin.CreateTenant(ctx, owner, "beta", "", engine.TenantSettings{})
		var fe *engine.ForbiddenError
		is.True(errors.As(err, &fe))                    // an owner may not create tenants
		is.Equal(fe.Action, engine.ActionTenantsManage) // naming the permission
		_, err = f.admin.CreateTenant(ctx, engine.LocalAdmin(), "a b", "", engine.TenantSettings{})
		var field *engine.FieldError
		is.True(errors.As(err, &field)) // a bad id
		is.Equal(field.Field, "id")     // named
		_, err = f.admin.CreateTenant(ctx, engine.LocalAdmin(), "acme", "", engine.TenantSettings{})
		is.True(errors.Is(err, engine.ErrConflict)) // taken
		_, err = f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "acme", engine.TenantChange{State: engine.TenantActive})
		var te *engine.TransitionError
		is.True(errors.As(err, &te))                   // resuming an active tenant
		is.Equal(te.From, string(engine.TenantActive)) // names its state
		_, err = f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "acme", engine.TenantChange{State: "gone"})
		is.True(errors.As(err, &field)) // an unknown state
		is.Equal(field.Field, "state")  // named
		_, err = f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "ghost", engine.TenantChange{State: engine.TenantSuspended})
		is.True(errors.Is(err, engine.ErrTenantNotFound)) // no such tenant
		tn, err := f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "acme", engine.TenantChange{})
		is.NoErr(err)                    // a change of nothing
		is.Equal(tn.Version, int64(1))   // writes nothing
		is.Equal(len(adminLog(t, f)), 1) // only the creation is recorded
	})

	t.Run("a viewer reads its own tenant only", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		viewer := &engine.Principal{KeyID: "aaaaaaaaaaaa", Name: "v", TenantID: "acme", Role: engine.RoleViewer}
		tn, err := f.admin.GetTenant(ctx, viewer, "acme")
		is.NoErr(err)           // its own
		is.Equal(tn.ID, "acme") // read
		_, err = f.admin.GetTenant(ctx, viewer, "default")
		is.True(errors.Is(err, engine.ErrForbidden)) // not another
		_, err = f.admin.ListTenants(ctx, viewer)
		is.True(errors.Is(err, engine.ErrForbidden)) // nor the list
		all, err := f.admin.ListTenants(ctx, engine.LocalAdmin())
		is.NoErr(err)         // the admin lists
		is.Equal(len(all), 2) // acme and default
	})
}

func TestAdmin_Keys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("an owner manages its tenant's keys below admin", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		ownerKey, ownerToken := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOwner, Name: "boss"})
		owner, err := f.keys.Authenticate(ctx, ownerToken)
		is.NoErr(err) // the owner's principal
		ci, token, err := f.admin.CreateKey(ctx, owner, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOperator, Name: "ci"})
		is.NoErr(err)        // an operator key
		is.True(token != "") // shown once
		is.Equal(ci.Role, engine.RoleOperator)
		_, _, err = f.admin.CreateKey(ctx, owner, engine.KeyRequest{Role: engine.RoleAdmin, Name: "root"})
		is.True(errors.Is(err, engine.ErrForbidden)) // not an admin key
		_, _, err = f.admin.CreateKey(ctx, owner, engine.KeyRequest{TenantID: "default", Role: engine.RoleViewer, Name: "spy"})
		is.True(errors.Is(err, engine.ErrForbidden)) // not another tenant's key
		_, _, err = f.admin.CreateKey(ctx, owner, engine.KeyRequest{TenantID: "acme", Role: "root", Name: "x"})
		var field *engine.FieldError
		is.True(errors.As(err, &field)) // an unknown role is a bad field
		is.Equal(field.Field, "role")

		list, err := f.admin.ListKeys(ctx, owner, "acme")
		is.NoErr(err)          // its keys
		is.Equal(len(list), 2) // the owner's and ci's
		_, err = f.admin.ListKeys(ctx, owner, engine.AllTenants)
		is.True(errors.Is(err, engine.ErrForbidden)) // not everyone's

		other, _ := f.key(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleViewer, Name: "theirs"})
		_, err = f.admin.RevokeKey(ctx, owner, "acme", other.ID)
		is.True(errors.Is(err, engine.ErrNotFound)) // another tenant's id under its own path is not found
		_, err = f.admin.RevokeKey(ctx, owner, "default", other.ID)
		is.True(errors.Is(err, engine.ErrForbidden)) // another tenant's path is forbidden
		_, err = f.admin.RevokeKey(ctx, owner, "default", "0123456789abcdef")
		is.True(errors.Is(err, engine.ErrForbidden)) // whether or not the id exists
		revoked, err := f.admin.RevokeKey(ctx, owner, "acme", ci.ID)
		is.NoErr(err)                        // revoke ci
		is.True(!revoked.RevokedAt.IsZero()) // revoked now
		_, err = f.admin.RevokeKey(ctx, owner, "acme", ci.ID)
		is.True(errors.Is(err, engine.ErrConflict)) // twice is a conflict

		log := adminLog(t, f)
		last := log[len(log)-1]
		is.Equal(last.Action, engine.AdminKeyRevoked)       // recorded
		is.Equal(last.Actor, "key:"+ownerKey.ID+":boss")    // by the owner's key
		is.True(strings.Contains(string(last.Data), ci.ID)) // naming the key
		for _, e := range log {
			is.True(!strings.Contains(string(e.Data), token[len(token)-64:])) // no secret in the log
		}
	})

	t.Run("an operator manages no keys", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		op := &engine.Principal{KeyID: "aaaaaaaaaaaa", Name: "op", TenantID: "acme", Role: engine.RoleOperator}
		_, _, err := f.admin.CreateKey(ctx, op, engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "v"})
		var fe *engine.ForbiddenError
		is.True(errors.As(err, &fe))                 // refused
		is.Equal(fe.Action, engine.ActionKeysManage) // naming keys.manage
		is.Equal(len(adminLog(t, f)), 1)             // nothing recorded but the tenant
	})

	t.Run("a key of an unknown tenant is refused", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		_, _, err := f.admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "ghost", Role: engine.RoleViewer, Name: "v"})
		is.True(errors.Is(err, engine.ErrTenantNotFound)) // tenant not found
		is.Equal(len(adminLog(t, f)), 1)                  // nothing recorded
	})

	t.Run("an owner reads its tenant's admin log only", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0) // acme created
		f.key(t, engine.KeyRequest{TenantID: "default", Role: engine.RoleViewer, Name: "v"})
		owner := &engine.Principal{KeyID: "aaaaaaaaaaaa", Name: "boss", TenantID: "acme", Role: engine.RoleOwner}
		log, err := f.admin.ListAdmin(ctx, owner, engine.AdminFilter{TenantID: "acme"})
		is.NoErr(err)                                      // its own
		is.Equal(len(log), 1)                              // acme's creation only
		is.Equal(log[0].Action, engine.AdminTenantCreated) // it
		_, err = f.admin.ListAdmin(ctx, owner, engine.AdminFilter{TenantID: "default"})
		is.True(errors.Is(err, engine.ErrForbidden)) // not another tenant's
		_, err = f.admin.ListAdmin(ctx, owner, engine.AdminFilter{TenantID: engine.AllTenants})
		is.True(errors.Is(err, engine.ErrForbidden)) // nor everyone's
		viewer := &engine.Principal{KeyID: "bbbbbbbbbbbb", Name: "v", TenantID: "acme", Role: engine.RoleViewer}
		_, err = f.admin.ListAdmin(ctx, viewer, engine.AdminFilter{TenantID: "acme"})
		is.True(errors.Is(err, engine.ErrForbidden)) // a viewer reads runs, not key administration
		all, err := f.admin.ListAdmin(ctx, engine.LocalAdmin(), engine.AdminFilter{TenantID: engine.AllTenants})
		is.NoErr(err)         // the admin reads all
		is.Equal(len(all), 2) // both entries
	})

	t.Run("Record appends an action done elsewhere", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		ev, err := f.admin.Record(ctx, "server", engine.AdminPolicyLoaded, "", map[string]string{"hash": "abc"})
		is.NoErr(err)                // recorded
		is.Equal(ev.ID, int64(2))    // after the tenant's creation
		is.Equal(ev.Actor, "server") // by the actor named
		is.Equal(string(ev.Data), `{"hash":"abc"}`)
	})
}
