package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// GET .../workflows/{id}?as_of_seq=N is the replay of events 1..N, for
// every N; ?as_of=T the state at a time: paused at the moment it was paused.
func TestAPI_RunAsOf(t *testing.T) {
	is := is.New(t)
	e := newParamsEnv(t, nil)
	def := `{"name":"wf","tasks":[{"id":"a","type":"python"},{"id":"b","type":"python","depends_on":["a"]}]}`
	st, body := e.call(t, "POST", "/api/v1/tenants/acme/workflows", `{"definition":`+def+`,"input":{"n":1}}`)
	is.Equal(st, http.StatusCreated)
	var run wire.RunDetails
	is.NoErr(json.Unmarshal(body, &run))
	base := "/api/v1/tenants/acme/workflows/" + run.ID
	for _, verb := range []string{"pause", "resume", "cancel"} {
		st, body := e.call(t, "POST", base+"/"+verb, "")
		is.Equal(st, http.StatusOK) // the run moves on
		_ = body
	}
	events, err := e.eng.RunEvents(context.Background(), "acme", run.ID, 0, 0)
	is.NoErr(err)
	_, plan, problems := definition.CompileJSON([]byte(def), definition.ValidateOptions{})
	is.Equal(len(problems), 0)
	var pausedAt time.Time
	for n := 1; n <= len(events); n++ {
		want, err := engine.Replay(plan, events[:n])
		is.NoErr(err)
		st, body := e.call(t, "GET", fmt.Sprintf("%s?as_of_seq=%d", base, n), "")
		is.Equal(st, http.StatusOK)
		var got wire.RunDetails
		is.NoErr(json.Unmarshal(body, &got))
		is.Equal(string(got.State), string(want.Run.State)) // the run's state after event n
		is.Equal(got.LastSeq, int64(n))                     // folded to n
		for i, task := range got.Tasks {
			is.Equal(string(task.State), string(want.Tasks[i].State)) // and each task's
		}
		if events[n-1].Type == engine.EventRunPaused {
			pausedAt = events[n-1].At
		}
	}
	st, body = e.call(t, "GET", base+"?as_of="+url.QueryEscape(pausedAt.Format(time.RFC3339Nano)), "")
	is.Equal(st, http.StatusOK)
	is.True(strings.Contains(string(body), `"state":"paused"`)) // as it was when it was paused
	st, now := e.call(t, "GET", base+"?as_of_seq=100000", "")
	_, current := e.call(t, "GET", base, "")
	is.Equal(st, http.StatusOK)
	is.Equal(string(now), string(current)) // past the last event: as it is now

	for _, q := range []string{"as_of_seq=0", "as_of_seq=", "as_of_seq=x", "as_of=yesterday", "as_of=2000-01-01T00:00:00Z",
		"as_of_seq=1&as_of=2030-01-01T00:00:00Z"} {
		st, body := e.call(t, "GET", base+"?"+q, "")
		field := "as_of"
		if strings.HasPrefix(q, "as_of_seq") && !strings.Contains(q, "&") {
			field = "as_of_seq"
		}
		if st != http.StatusBadRequest || !strings.Contains(string(body), `"field":"`+field+`"`) {
			t.Errorf("?%s: %d %s, want 400 naming %s", q, st, body, field)
		}
	}
	st, _ = e.call(t, "GET", "/api/v1/tenants/other/workflows/"+run.ID+"?as_of_seq=1", "")
	is.Equal(st, http.StatusNotFound) // another tenant's run is not found, as of any time
}
