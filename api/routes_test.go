package api

import (
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestRoutes_Permissions holds every route to a known permission, so that
// the role check has a rule for each, and every route acting on a tenant to
// an operation, so that a policy can tell them apart.
func TestRoutes_Permissions(t *testing.T) {
	is := is.New(t)
	for _, rt := range (&Server{}).routes() {
		if !slices.Contains(Permissions(), rt.perm) {
			t.Errorf("%s %s: permission %q is not one of Permissions()", rt.method, rt.path, rt.perm)
		}
		if rt.scoped() && rt.op == "" {
			t.Errorf("%s %s: acts on a tenant without an operation", rt.method, rt.path)
		}
		if rt.method == "GET" {
			is.True(rt.flags&routeDecides == 0) // a GET's resource is in its path
		}
		if strings.Contains(rt.path, "/tasks/:id/:verb") {
			is.True(rt.flags&routeLease != 0) // a worker's report is checked against its lease's task type
		}
	}
}
