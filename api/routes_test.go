package api

import (
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestRoutes_Permissions holds every route to a known permission, so that
// the role check has a name for each.
func TestRoutes_Permissions(t *testing.T) {
	is := is.New(t)
	used := map[Permission]bool{}
	for _, rt := range (&Server{}).routes() {
		if !slices.Contains(Permissions(), rt.perm) {
			t.Errorf("%s %s: permission %q is not one of Permissions()", rt.method, rt.path, rt.perm)
		}
		used[rt.perm] = true
		resource, action, ok := strings.Cut(string(rt.perm), ".")
		is.True(ok && resource != "" && action != "") // named <resource>.<action>
		if rt.method == "GET" {
			is.True(action == "read") // a GET only reads
		}
	}
	for _, p := range Permissions() {
		is.True(used[p]) // and no permission is left without a route
	}
}
