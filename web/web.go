// Package web is the browser UI of the orchestrator: plain HTML, CSS and
// ES modules, embedded in the binary and served under /ui/ by package api.
// The files hold no data: every page reads the documented API with the
// caller's key, so serving them needs no permission.
//
// Assets answers each file with its Content-Type, a strong ETag (a hash of
// its content, so a conditional request costs a 304), and the security
// headers of every page: a Content-Security-Policy that allows only this
// origin's scripts, styles and connections (no inline script, no eval, no
// framing) and X-Content-Type-Options: nosniff.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is the policy every file is served with: scripts,
// styles and fetches of this origin only, images of this origin or data:
// URLs (the favicon), no plugins, no framing, no base or form target
// elsewhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, read once.
type asset struct {
	body        []byte
	etag        string
	contentType string
}

// Assets serves the embedded files. It is safe for concurrent use.
type Assets struct {
	files map[string]*asset // by path under static/, "index.html"...
}

// NewAssets reads every embedded file and hashes it.
func NewAssets() (*Assets, error) {
	a := &Assets{files: map[string]*asset{}}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a.files[p] = &asset{body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, contentType: contentType(p)}
		return nil
	})
	return a, err
}

// Names lists the embedded files' paths (under /ui/).
func (a *Assets) Names() []string {
	out := make([]string, 0, len(a.files))
	for p := range a.files {
		out = append(out, p)
	}
	return out
}

// contentType is the media type of a file by its extension; the kinds
// embedded (html, js, css) are fixed here rather than read from the
// system's mime.types, so that a module is always text/javascript
// whatever the host says.
func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(p)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// Serve answers the file at name (the path under /ui/, "" for the index).
// It reports false, having written nothing, when there is no such file.
func (a *Assets) Serve(w http.ResponseWriter, r *http.Request, name string) bool {
	name = strings.TrimPrefix(name, "/")
	if name == "" {
		name = "index.html"
	}
	f, ok := a.files[name]
	if !ok {
		return false
	}
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("ETag", f.etag)
	// The files change only with the binary: a browser may keep them but
	// asks again each time (a 304 when unchanged), so that an upgrade
	// never runs an old module against a new page.
	h.Set("Cache-Control", "no-cache")
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	h.Set("Content-Type", f.contentType)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(f.body)
	}
	return true
}

// etagMatches reports whether an If-None-Match list names etag (or is *).
func etagMatches(list, etag string) bool {
	for _, m := range strings.Split(list, ",") {
		m = strings.TrimPrefix(strings.TrimSpace(m), "W/")
		if m == etag || m == "*" {
			return true
		}
	}
	return false
}
