package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

var (
	inlineScript  = regexp.MustCompile(`(?i)<script(\s[^>]*)?>`)
	inlineHandler = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	inlineStyle   = regexp.MustCompile(`(?i)<style|\sstyle\s*=`)
	importFrom    = regexp.MustCompile(`(?m)^import .* from '([^']+)';$|import\('([^']+)'\)`)
	fetchOutside  = regexp.MustCompile(`https?://|//cdn|unpkg|jsdelivr`)
	evalLike      = regexp.MustCompile(`\beval\(|new Function\(|setTimeout\('|innerHTML\s*=`)
)

// TestStatic_PagesNeedNoInlineCode: what the Content-Security-Policy
// forbids is not in the files: no inline script, event handler attribute
// or style; scripts are modules of this origin; no eval, no innerHTML, no
// URL of another host.
func TestStatic_PagesNeedNoInlineCode(t *testing.T) {
	sub, _ := fs.Sub(static, "static")
	err := fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		s := string(b)
		switch path.Ext(p) {
		case ".html":
			for _, m := range inlineScript.FindAllStringSubmatch(s, -1) {
				if !strings.Contains(m[1], "src=") || !strings.Contains(m[1], `type="module"`) {
					t.Errorf("%s: %s is not a module loaded from a file", p, m[0])
				}
			}
			if inlineHandler.MatchString(s) || inlineStyle.MatchString(s) {
				t.Errorf("%s: an inline event handler or style", p)
			}
		case ".js":
			if m := evalLike.FindString(s); m != "" {
				t.Errorf("%s: %s", p, m)
			}
		}
		if m := fetchOutside.FindString(s); m != "" && !strings.Contains(s, "http://www.w3.org/2000/svg") {
			t.Errorf("%s names another host: %s", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStatic_ModulesAreSmallAndTheirImportsResolve: every import of a
// module, static or dynamic, names an embedded module, and no module passes
// 550 lines.
func TestStatic_ModulesAreSmallAndTheirImportsResolve(t *testing.T) {
	mods, err := fs.Glob(static, "static/js/*.js")
	if err != nil || len(mods) < 5 {
		t.Fatalf("modules: %v %v", mods, err)
	}
	imports := 0
	for _, m := range mods {
		b, _ := fs.ReadFile(static, m)
		if n := strings.Count(string(b), "\n"); n > 550 {
			t.Errorf("%s has %d lines", m, n)
		}
		for _, imp := range importFrom.FindAllStringSubmatch(string(b), -1) {
			name := imp[1] + imp[2] // a static or a dynamic import
			target := path.Join(path.Dir(m), name)
			if _, err := fs.Stat(static, target); err != nil || !strings.HasPrefix(name, "./") {
				t.Errorf("%s imports %s, which is not an embedded module", m, name)
			}
			imports++
		}
	}
	if imports < 20 {
		t.Errorf("only %d imports found: the pattern no longer reads the modules", imports)
	}
}

// TestAssets_ETagFollowsTheContent: two files with different content have
// different ETags, and If-None-Match lists are read item by item.
func TestAssets_ETagFollowsTheContent(t *testing.T) {
	a, err := NewAssets()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for name, f := range a.files {
		if other, dup := seen[f.etag]; dup {
			t.Errorf("%s and %s share the ETag %s", name, other, f.etag)
		}
		seen[f.etag] = name
	}
	if !etagMatches(`W/"x", "y"`, `"y"`) || !etagMatches(`*`, `"y"`) || etagMatches(`"x"`, `"y"`) {
		t.Error("If-None-Match is misread")
	}
}

// TestAssets_ServeSetsTheCachingAndSecurityHeaders: every answer, a 304
// included, says no-cache (a browser asks again, so an upgrade never runs
// an old module), no-referrer and no framing; a HEAD has the headers and
// no body; an unknown name writes nothing.
func TestAssets_ServeSetsTheCachingAndSecurityHeaders(t *testing.T) {
	a, err := NewAssets()
	if err != nil {
		t.Fatal(err)
	}
	etag := a.files["index.html"].etag
	for _, tc := range []struct {
		method, match string
		status        int
		body          bool
	}{
		{http.MethodGet, "", http.StatusOK, true},
		{http.MethodHead, "", http.StatusOK, false},
		{http.MethodGet, etag, http.StatusNotModified, false},
	} {
		r := httptest.NewRequest(tc.method, "/ui/", nil)
		if tc.match != "" {
			r.Header.Set("If-None-Match", tc.match)
		}
		w := httptest.NewRecorder()
		if !a.Serve(w, r, "") {
			t.Fatalf("%s /ui/: not served", tc.method)
		}
		h := w.Header()
		if w.Code != tc.status || (w.Body.Len() > 0) != tc.body {
			t.Errorf("%s /ui/ %q: %d with %d bytes", tc.method, tc.match, w.Code, w.Body.Len())
		}
		for k, want := range map[string]string{"Cache-Control": "no-cache", "Referrer-Policy": "no-referrer",
			"X-Frame-Options": "DENY", "ETag": etag, "Content-Security-Policy": ContentSecurityPolicy} {
			if got := h.Get(k); got != want {
				t.Errorf("%s /ui/ %q: %s is %q, want %q", tc.method, tc.match, k, got, want)
			}
		}
	}
	w := httptest.NewRecorder()
	if a.Serve(w, httptest.NewRequest(http.MethodGet, "/ui/nope.js", nil), "nope.js") || len(w.Header()) != 0 || w.Body.Len() != 0 {
		t.Error("an unknown file was answered")
	}
}

// TestStatic_IndexPreloadsWhatTheRunsListNeeds: the modules index.html
// preloads are exactly those the runs list, the first page, waits for
// (app.js's and runs.js's static imports, transitively), and no other
// page's module is among them: they load when their page is first shown.
func TestStatic_IndexPreloadsWhatTheRunsListNeeds(t *testing.T) {
	staticImport := regexp.MustCompile(`(?m)^import .* from '\./([^']+)';$`)
	need := map[string]bool{}
	var visit func(string)
	visit = func(m string) {
		if need[m] {
			return
		}
		need[m] = true
		b, err := fs.ReadFile(static, "static/js/"+m)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		for _, imp := range staticImport.FindAllStringSubmatch(string(b), -1) {
			visit(imp[1])
		}
	}
	visit("app.js")
	visit("runs.js")
	index, _ := fs.ReadFile(static, "static/index.html")
	preloaded := map[string]bool{"app.js": true} // the page's own script
	for _, m := range regexp.MustCompile(`<link rel="modulepreload" href="js/([^"]+)">`).FindAllStringSubmatch(string(index), -1) {
		preloaded[m[1]] = true
	}
	for m := range need {
		if !preloaded[m] {
			t.Errorf("the runs list waits for %s, which index.html does not preload", m)
		}
	}
	for m := range preloaded {
		if !need[m] {
			t.Errorf("index.html preloads %s, which the runs list does not need", m)
		}
	}
	if len(need) != 6 {
		t.Errorf("the runs list waits for %d modules; the README says six", len(need))
	}
}
