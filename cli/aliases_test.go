package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestCLI_VersionsDiffAndAliases(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	url := newServer(t)
	dir := t.TempDir()
	for _, d := range []string{
		`{"name":"shop","tasks":[{"id":"a","type":"noop"}]}`,
		`{"name":"shop","tasks":[{"id":"a","type":"noop","priority":3},{"id":"b","type":"noop"}]}`,
	} {
		f := filepath.Join(dir, "d.json")
		is.NoErr(os.WriteFile(f, []byte(d), 0o600))
		code, _, _ := run(url, "definitions", "register", f)
		is.Equal(code, 0) // registered
	}
	code, out, _ := run(url, "definitions", "versions", "shop")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "VERSION") && strings.Contains(out, "\n2 ")) // both versions listed
	code, out, _ = run(url, "definitions", "diff", "shop", "1", "2")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "+ task b"))          // b added
	is.True(strings.Contains(out, "~ task a priority")) // a's priority changed

	code, _, errs := run(url, "definitions", "alias", "set", "shop", "live", "--versions", "1:50,2:40")
	is.Equal(code, 1)                                    // refused
	is.True(strings.Contains(errs, "weights sum to 90")) // saying why
	is.True(strings.Contains(errs, "versions:"))         // naming the field
	code, out, errs = run(url, "definitions", "alias", "set", "shop", "live", "--versions", "1:90,2:10",
		"--sticky-key", "${workflow.input.customer}", "--rollback-window", "20")
	is.Equal(code, 0) // set
	is.True(strings.Contains(out, "shop@live") && strings.Contains(out, "v1:90% v2:10%"))
	code, out, _ = run(url, "definitions", "alias", "get", "shop", "live", "-o", "json")
	is.Equal(code, 0)
	var a struct {
		Versions []struct{ Version, Weight int }
		Revision int
	}
	is.NoErr(json.Unmarshal([]byte(out), &a))
	is.Equal(len(a.Versions), 2) // read back
	is.Equal(a.Revision, 1)
	code, out, _ = run(url, "definitions", "alias", "list", "shop")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "shop@live")) // listed

	code, out, _ = run(url, "workflows", "start", "shop@live", "--input", `{"customer":"acme"}`, "-o", "json")
	is.Equal(code, 0) // a start through the alias
	var run1 struct {
		Alias   string
		Version int
	}
	is.NoErr(json.Unmarshal([]byte(out), &run1))
	is.Equal(run1.Alias, "live") // recorded

	code, _, _ = run(url, "definitions", "alias", "delete", "shop", "live")
	is.Equal(code, 0)
	code, _, errs = run(url, "definitions", "alias", "get", "shop", "live")
	is.Equal(code, 1) // gone
	is.True(strings.Contains(errs, "404"))
}
