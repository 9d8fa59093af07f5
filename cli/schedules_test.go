package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestCLI_Schedules(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	url := newServer(t)
	def := filepath.Join(t.TempDir(), "d.json")
	is.NoErr(os.WriteFile(def, []byte(`{"name":"demo","tasks":[{"id":"a","type":"noop"}]}`), 0o600))
	code, _, _ := run(url, "definitions", "register", def)
	is.Equal(code, 0) // registered

	code, _, stderr := run(url, "schedules", "create", "s1", "--cron", "not cron", "--workflow", "demo")
	is.Equal(code, 1)                         // refused
	is.True(strings.Contains(stderr, "cron")) // naming the field
	code, out, _ := run(url, "schedules", "create", "s1", "--cron", "0 6 * * *", "--time-zone", "Asia/Tokyo",
		"--workflow", "demo", "--input", `{"at":"${schedule.time}"}`)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "s1 (version 1)"))
	code, out, _ = run(url, "schedules", "get", "s1", "--next", "2")
	is.Equal(code, 0)
	is.Equal(strings.Count(out, "next\t")+strings.Count(out, "next "), 2) // two fire times
	code, out, _ = run(url, "schedules", "list")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "s1"))
	code, out, _ = run(url, "schedules", "update", "s1", "--version", "1", "--cron", "@hourly", "--workflow", "demo")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "version 2"))
	code, _, _ = run(url, "schedules", "pause", "s1")
	is.Equal(code, 0)
	code, _, _ = run(url, "schedules", "unpause", "s1")
	is.Equal(code, 0)
	code, out, _ = run(url, "schedules", "trigger", "s1")
	is.Equal(code, 0)
	is.True(strings.Contains(out, "started run"))
	to := time.Now().UTC().Truncate(time.Hour).Add(-30 * time.Minute) // two hourly slots in [to-2h, to], wherever now falls in its hour
	code, out, _ = run(url, "schedules", "backfill", "s1", "--from", to.Add(-2*time.Hour).Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	is.Equal(code, 0)
	is.Equal(strings.Count(out, "\n"), 3) // a header and two slots
	code, _, _ = run(url, "schedules", "delete", "s1")
	is.Equal(code, 0)
	code, _, _ = run(url, "schedules", "get", "s1")
	is.Equal(code, 1) // gone
}
