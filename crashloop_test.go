package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// TestCrashLoop_TaskThatKillsTheServer runs a task that kills the server
// process at every attempt, as a task exhausting the memory would. Recovery
// retries an abandoned attempt without charging its retry budget, so without
// a bound the server would die again at every start; after MAX_ABANDONED
// attempts in a row the task fails and the server stays up.
func TestCrashLoop_TaskThatKillsTheServer(t *testing.T) {
	is := is.New(t)
	dbPath := filepath.Join(t.TempDir(), "loop.db")
	client := newClient()
	const def = `{"name":"fatal","tasks":[{"id":"boom","type":"die"},{"id":"after","type":"noop","depends_on":["boom"]}]}`
	start := func(c *child) (int, []byte, error) {
		req, _ := http.NewRequest(http.MethodPost, c.url("/v1/run"), strings.NewReader(`{"workflow":"fatal"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "the-one-run")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}

	deaths := 0
	registered := false
	for attempt := 0; attempt < 10; attempt++ {
		c, err := launchChild(t, dbPath, "MAX_ABANDONED=3")
		if err != nil {
			deaths++ // recovery ran the task again and it killed the process before it listened
			continue
		}
		if !registered {
			code, _, err := postJSON(client, c.url("/v1/workflows"), def)
			is.NoErr(err)                      // register
			is.Equal(code, http.StatusCreated) // stored
			registered = true
		}
		// Start (or, with the same key, find) the run; the process may die
		// before it answers, which the next round finds out.
		code, body, err := start(c)
		if err == nil && (code == http.StatusOK || code == http.StatusCreated) {
			id := jsonField(t, body, "id")
			deadline := time.Now().Add(20 * time.Second)
			for {
				resp, err := client.Get(c.url("/v1/runs/" + id))
				if err != nil {
					break // it died
				}
				var run struct {
					State string
					Tasks []struct {
						ID, State string
						Error     *struct{ Code, Message string }
					}
				}
				json.NewDecoder(resp.Body).Decode(&run)
				resp.Body.Close()
				if run.State == "failed" {
					is.Equal(run.Tasks[0].State, "failed")                              // the task that kills is failed
					is.Equal(run.Tasks[0].Error.Code, "abandoned_repeatedly")           // with the reason
					is.True(strings.Contains(run.Tasks[0].Error.Message, "3 attempts")) // saying how many
					is.Equal(run.Tasks[1].State, "skipped")                             // what depends on it is skipped
					// MAX_ABANDONED recorded deaths, and at most one before them whose
					// task.started was not yet durable.
					is.True(deaths >= 3 && deaths <= 4)
					resp, err := client.Get(c.url("/health"))
					is.NoErr(err) // the server stays up
					resp.Body.Close()
					is.Equal(resp.StatusCode, http.StatusOK) // and healthy
					c.kill(t)
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("run %s still %s", id, run.State)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			t.Fatal("the server neither died nor failed the run")
		}
		deaths++
	}
	t.Fatalf("the server died %d times: a task that kills it keeps it down", deaths)
}
