package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestCLI_Webhooks(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	url := newServer(t)
	def := filepath.Join(t.TempDir(), "d.json")
	is.NoErr(os.WriteFile(def, []byte(`{"name":"onpush","tasks":[{"id":"a","type":"noop"}]}`), 0o600))
	code, _, _ := run(url, "definitions", "register", def)
	is.Equal(code, 0) // the workflow

	code, out, _ := run(url, "webhooks", "create", "gh", "--workflow", "onpush", "--delivery-header", "X-GitHub-Delivery",
		"--input", `{"repo":"${/body/repository/full_name}"}`, "-o", "json")
	is.Equal(code, 0) // created
	var created struct{ Secret, URL string }
	is.NoErr(json.Unmarshal([]byte(out), &created))
	is.Equal(len(created.Secret), 64)                                       // the secret, once
	is.Equal(created.URL, "/api/v1/tenants/default/webhooks/gh/deliveries") // and where to deliver
	code, out, _ = run(url, "webhooks", "list")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "gh") && !strings.Contains(out, created.Secret)) // listed without the secret
	code, out, _ = run(url, "webhooks", "update", "gh", "--state", "disabled", "--rotate-secret")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "disabled, version 2")) // changed
	is.True(strings.Contains(out, "shown this once"))     // with a new secret
	code, _, errOut := run(url, "webhooks", "create", "bad", "--workflow", "nope")
	is.Equal(code, 1)                               // refused
	is.True(strings.Contains(errOut, "workflow: ")) // naming the field
	code, out, _ = run(url, "webhooks", "delete", "gh")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "deleted gh"))
	code, _, errOut = run(url, "triggers", "create", "s", "--kind", "nats", "--workflow", "onpush", "--config", `{"servers":["http://x"],"stream":"S"}`)
	is.Equal(code, 1)                                    // a bad server address
	is.True(strings.Contains(errOut, "nats.servers[0]")) // named
}
