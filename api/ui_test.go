package api_test

import (
	"net/http"
	"path"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/web"
)

// TestUI_ServesEveryFileWithItsTypeAndTheSecurityHeaders: every embedded
// file of the UI answers under /ui/ with its media type, a strong ETag that
// a conditional request turns into a 304, the Content-Security-Policy and
// nosniff; /ui/ is the page, needing no key even with AUTH=required.
func TestUI_ServesEveryFileWithItsTypeAndTheSecurityHeaders(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{Access: true, AuthMode: "required"})
	assets, err := web.NewAssets()
	is.NoErr(err) // the embedded files
	names := assets.Names()
	is.True(len(names) >= 10) // the page, its style sheet and modules
	types := map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	for _, name := range append(names, "") {
		r := ts.get(t, "/ui/"+name)
		is.Equal(r.Status, http.StatusOK) // served without a key
		want := types[path.Ext(name)]
		if name == "" {
			want = types[".html"]
			is.True(strings.Contains(string(r.Body), `<script type="module" src="js/app.js">`)) // /ui/ is the page
		}
		if want != "" {
			is.Equal(r.Header.Get("Content-Type"), want) // the file's media type
		}
		is.Equal(r.Header.Get("Content-Security-Policy"), web.ContentSecurityPolicy) // the policy on every file
		is.Equal(r.Header.Get("X-Content-Type-Options"), "nosniff")
		etag := r.Header.Get("ETag")
		is.True(strings.HasPrefix(etag, `"`) && len(etag) > 10) // a strong ETag
		again := ts.request(t, "GET", "/ui/"+name, "", map[string]string{"If-None-Match": etag})
		is.Equal(again.Status, http.StatusNotModified) // unchanged: 304
		is.Equal(len(again.Body), 0)
		other := ts.request(t, "GET", "/ui/"+name, "", map[string]string{"If-None-Match": `"other"`})
		is.Equal(other.Status, http.StatusOK) // another ETag: the file
	}
	csp := web.ContentSecurityPolicy
	is.True(strings.Contains(csp, "script-src 'self'") && !strings.Contains(csp, "unsafe-inline") && !strings.Contains(csp, "unsafe-eval")) // no inline script, no eval
	is.True(strings.Contains(csp, "frame-ancestors 'none'"))                                                                                // no framing
}

// TestUI_RefusesWhatItDoesNotServe: an unknown file is a 404 problem, a
// query parameter a 400, another method a 405, and /ui redirects to /ui/.
func TestUI_RefusesWhatItDoesNotServe(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	problemOf(t, ts.get(t, "/ui/nope.js"), http.StatusNotFound, wire.CodeNotFound)
	problemOf(t, ts.get(t, "/ui/../openapi.json"), http.StatusNotFound, wire.CodeNotFound)
	problemOf(t, ts.get(t, "/ui/?debug=1"), http.StatusBadRequest, wire.CodeInvalidRequest)
	problemOf(t, ts.postJSON(t, "/ui/", "{}"), http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(ts.URL + "/ui")
	is.NoErr(err)
	res.Body.Close()
	is.True(res.StatusCode == http.StatusMovedPermanently || res.StatusCode == http.StatusPermanentRedirect) // /ui -> /ui/
	is.Equal(res.Header.Get("Location"), "/ui/")
}
