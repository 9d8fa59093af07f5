package web

import (
	"io/fs"
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
