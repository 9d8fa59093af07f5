package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// roleMatrix is the role table as the product promises it, written out
// apart from the code: for each action, the roles that hold it.
var roleMatrix = map[string][]engine.Role{
	engine.ActionTenantsManage:    {engine.RoleAdmin},
	engine.ActionPolicyReload:     {engine.RoleAdmin},
	engine.ActionServerMetrics:    {engine.RoleAdmin},
	engine.ActionServerBackup:     {engine.RoleAdmin},
	engine.ActionServerCheckpoint: {engine.RoleAdmin},
	engine.ActionTenantsRead:      {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator, engine.RoleViewer},
	engine.ActionKeysManage:       {engine.RoleAdmin, engine.RoleOwner},
	engine.ActionAdminLogRead:     {engine.RoleAdmin, engine.RoleOwner},
	engine.ActionDefinitionsWrite: {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator},
	engine.ActionDefinitionsRead:  {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator, engine.RoleViewer},
	engine.ActionRunsStart:        {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator},
	engine.ActionRunsControl:      {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator},
	engine.ActionRunsRead:         {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator, engine.RoleViewer},
	engine.ActionEventsRead:       {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator, engine.RoleViewer},
	engine.ActionMetricsRead:      {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator, engine.RoleViewer},
	engine.ActionSchedulesWrite:   {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator},
	engine.ActionSchedulesRead:    {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator, engine.RoleViewer},
	engine.ActionTriggersWrite:    {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator},
	engine.ActionTriggersRead:     {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator, engine.RoleViewer},
	engine.ActionWorkersPoll:      {engine.RoleAdmin, engine.RoleOwner, engine.RoleWorker},
	engine.ActionActOnBehalf:      {engine.RoleAdmin, engine.RoleOwner, engine.RoleOperator},
}

func TestRoleAllows(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	is.Equal(len(engine.Actions()), len(roleMatrix)) // every action of the table has a row here, and no more
	for _, action := range engine.Actions() {
		holders, ok := roleMatrix[action]
		is.True(ok) // the action is in the matrix
		for _, role := range engine.Roles() {
			want := false
			for _, h := range holders {
				want = want || h == role
			}
			if got := engine.RoleAllows(role, action); got != want {
				t.Errorf("RoleAllows(%s, %s) = %v, want %v", role, action, got, want)
			}
		}
	}
	for _, role := range engine.Roles() {
		is.True(!engine.RoleAllows(role, "runs.delete_everything")) // an action without a rule is closed, to the admin too
	}
	is.True(!engine.RoleAllows("root", engine.ActionRunsRead)) // an unknown role holds nothing
	is.True(!engine.RoleAllows("", engine.ActionRunsRead))     // nor does no role
}

func TestRoles(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	is.Equal(engine.Roles(), []engine.Role{"admin", "owner", "operator", "viewer", "worker"}) // the five roles the schema's CHECK lists
	for _, r := range engine.Roles() {
		is.True(r.Valid()) // each is valid
	}
	is.True(!engine.Role("Admin").Valid()) // case matters
}

func TestSystemAction(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	for _, a := range engine.Actions() {
		want := a == engine.ActionTenantsManage || a == engine.ActionPolicyReload || a == engine.ActionServerMetrics ||
			a == engine.ActionServerBackup || a == engine.ActionServerCheckpoint
		is.Equal(engine.SystemAction(a), want) // only the admin's actions are about the whole server
	}
}

func TestPrincipal_Authorize(t *testing.T) {
	t.Parallel()
	admin := &engine.Principal{KeyID: "aaaaaaaaaaaa", Name: "root", Role: engine.RoleAdmin}
	owner := &engine.Principal{KeyID: "bbbbbbbbbbbb", Name: "boss", TenantID: "acme", Role: engine.RoleOwner}
	viewer := &engine.Principal{KeyID: "cccccccccccc", Name: "dash", TenantID: "acme", Role: engine.RoleViewer}
	cases := []struct {
		name    string
		p       *engine.Principal
		action  string
		tenant  string
		allowed bool
		reason  string
	}{
		{"the admin acts on any tenant", admin, engine.ActionRunsControl, "beta", true, ""},
		{"the admin manages tenants", admin, engine.ActionTenantsManage, "", true, ""},
		{"the built-in local admin too", engine.LocalAdmin(), engine.ActionPolicyReload, "", true, ""},
		{"an owner manages its keys", owner, engine.ActionKeysManage, "acme", true, ""},
		{"an owner may not touch another tenant", owner, engine.ActionRunsRead, "beta", false, "belongs to tenant acme, not beta"},
		{"an owner may not manage tenants", owner, engine.ActionTenantsManage, "", false, "role owner does not allow tenants.manage"},
		{"a viewer reads", viewer, engine.ActionRunsRead, "acme", true, ""},
		{"a viewer may not start", viewer, engine.ActionRunsStart, "acme", false, "role viewer does not allow runs.start"},
		{"a viewer may not start elsewhere either", viewer, engine.ActionRunsStart, "beta", false, "runs.start"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			err := c.p.Authorize(c.action, c.tenant)
			if c.allowed {
				is.NoErr(err) // allowed
				return
			}
			is.True(errors.Is(err, engine.ErrForbidden)) // refused as forbidden
			var fe *engine.ForbiddenError
			is.True(errors.As(err, &fe))                     // with detail
			is.Equal(fe.Action, c.action)                    // naming the permission
			is.True(strings.Contains(err.Error(), c.reason)) // and why
		})
	}
}

func TestPrincipal_AuthorizeTaskType(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	limited := &engine.Principal{KeyID: "dddddddddddd", Name: "py", TenantID: "acme", Role: engine.RoleWorker, TaskTypes: []string{"python"}}
	is.NoErr(limited.AuthorizeTaskType("python")) // its type
	err := limited.AuthorizeTaskType("shell")
	is.True(errors.Is(err, engine.ErrForbidden))    // not another
	is.True(strings.Contains(err.Error(), "shell")) // naming the type
	is.True(strings.Contains(err.Error(), "py"))    // and the key
	every := &engine.Principal{KeyID: "eeeeeeeeeeee", Name: "all", TenantID: "acme", Role: engine.RoleWorker}
	is.NoErr(every.AuthorizeTaskType("shell")) // a worker key naming no types leases any
	owner := &engine.Principal{KeyID: "ffffffffffff", Name: "o", TenantID: "acme", Role: engine.RoleOwner}
	is.NoErr(owner.AuthorizeTaskType("shell")) // other roles are not limited by type
}

func TestRoleCanGrant(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	for _, r := range engine.Roles() {
		is.True(engine.RoleCanGrant(engine.RoleAdmin, r))                         // the admin grants any role
		is.Equal(engine.RoleCanGrant(engine.RoleOwner, r), r != engine.RoleAdmin) // an owner any but admin
		for _, by := range []engine.Role{engine.RoleOperator, engine.RoleViewer, engine.RoleWorker} {
			is.True(!engine.RoleCanGrant(by, r)) // the others none
		}
	}
	is.True(!engine.RoleCanGrant(engine.RoleAdmin, "root")) // nor an unknown role
}

func TestPrincipal_Actor(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	k := &engine.APIKey{ID: "0123456789abcdef", Name: "ci", TenantID: "acme", Role: engine.RoleOperator}
	is.Equal(k.Principal().Actor(), "key:0123456789abcdef:ci") // a key is recorded by id and name
	is.Equal(engine.LocalAdmin().Actor(), "local")             // the local admin by its name
}
