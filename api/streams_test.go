package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// sseEvent is one Server-Sent Event as a client parses it; a comment line
// comes as an sseEvent with only Comment set.
type sseEvent struct {
	ID, Event, Data, Comment string
}

// sseStream is an open event stream read on its own goroutine.
type sseStream struct {
	res    *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

// openStream opens an event stream; it must answer 200 text/event-stream.
func (ts *testServer) openStream(t *testing.T, path string, header map[string]string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req) // no client timeout: a stream lasts
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		var buf bytes.Buffer
		buf.ReadFrom(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("GET %s: %d %s: %s", path, res.StatusCode, res.Header.Get("Content-Type"), buf.Bytes())
	}
	s := &sseStream{res: res, events: make(chan sseEvent, 1024), cancel: cancel}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ": "):
				ev.Comment = line[2:]
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.Data = line[6:]
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() {
	s.cancel()
	s.res.Body.Close()
}

// next returns the next event that is not a comment, failing after waitTimeout.
func (s *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	for {
		ev := s.nextAny(t)
		if ev.Comment == "" {
			return ev
		}
	}
}

// nextAny returns the next event or comment.
func (s *sseStream) nextAny(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatalf("no event within %s", waitTimeout)
	}
	return sseEvent{}
}

// until reads events until one of type typ, returning it and those before.
func (s *sseStream) until(t *testing.T, typ string) (sseEvent, []sseEvent) {
	t.Helper()
	var before []sseEvent
	for {
		ev := s.next(t)
		if ev.Event == typ {
			return ev, before
		}
		before = append(before, ev)
	}
}

// eventItems returns the items of GET .../events as raw JSON, by seq.
func (ts *testServer) eventItems(t *testing.T, runID string) []json.RawMessage {
	t.Helper()
	var page struct {
		Events []json.RawMessage `json:"events"`
	}
	ts.getJSON(t, "/v1/runs/"+runID+"/events", &page)
	return page.Events
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return buf.String()
}

func TestStream_RunEventsFromTheStoreThenLive(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	ts.register(t, quickStartDef)
	run := ts.startRun(t, `{"workflow":"wf1"}`) // external tasks: it waits for a worker
	ts.waitTask(t, run.ID, "t1", engine.TaskReady, 0)

	s := ts.openStream(t, "/api/v1/tenants/default/workflows/"+run.ID+"/stream", nil)
	items := ts.eventItems(t, run.ID)
	for i, item := range items {
		ev := s.next(t)
		is.Equal(ev.ID, strconv.Itoa(i+1))                      // ids are the seqs, from 1
		is.Equal(compact(t, []byte(ev.Data)), compact(t, item)) // data is the event as GET .../events has it
		var e wire.Event
		is.NoErr(json.Unmarshal([]byte(ev.Data), &e))
		is.Equal(ev.Event, string(e.Type)) // the SSE event name is the event type
	}

	is.Equal(ts.postJSON(t, "/v1/runs/"+run.ID+"/pause", "").Status, http.StatusOK)
	ev := s.next(t)
	is.Equal(ev.Event, "run.paused")            // a pause arrives live
	is.Equal(ev.ID, strconv.Itoa(len(items)+1)) // with the next seq
	is.Equal(ts.postJSON(t, "/v1/runs/"+run.ID+"/resume", "").Status, http.StatusOK)
	is.Equal(s.next(t).Event, "run.resumed") // and so does the resume

	is.Equal(ts.postJSON(t, "/v1/runs/"+run.ID+"/cancel", "").Status, http.StatusOK)
	end, before := s.until(t, "end")
	is.Equal(before[len(before)-1].Event, "run.cancelled") // the terminal event comes before end
	var e wire.StreamEnd
	is.NoErr(json.Unmarshal([]byte(end.Data), &e))
	is.Equal(e.State, wire.RunState("cancelled")) // end names the terminal state
	is.Equal(e.RunID, run.ID)
	is.Equal(strconv.FormatInt(e.LastSeq, 10), before[len(before)-1].ID) // and the last seq sent
	is.Equal(end.ID, "")                                                 // end has no id: resuming never skips it

	// The stream stays open after end: a retry's events follow.
	is.Equal(ts.postJSON(t, "/v1/runs/"+run.ID+"/retry", "").Status, http.StatusOK)
	is.Equal(s.next(t).Event, "run.retried") // the retried run streams on
}

func TestStream_ResumesAfterLastEventID(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	ts.register(t, `{"name":"n","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
	run := ts.startRun(t, `{"workflow":"n"}`)
	done := ts.waitState(t, run.ID, engine.RunCompleted)
	path := "/v1/runs/" + run.ID + "/stream"

	t.Run("Last-Event-ID starts after that seq", func(t *testing.T) {
		is := is.New(t)
		s := ts.openStream(t, path, map[string]string{"Last-Event-ID": "3"})
		is.Equal(s.next(t).ID, "4") // the first event after 3
		end, before := s.until(t, "end")
		is.Equal(len(before), int(done.LastSeq)-4)         // then the rest, each once
		is.True(strings.Contains(end.Data, `"completed"`)) // and end: the run is terminal
	})
	t.Run("the header wins over ?after=", func(t *testing.T) {
		s := ts.openStream(t, path+"?after=1", map[string]string{"Last-Event-ID": "5"})
		is.New(t).Equal(s.next(t).ID, "6")
	})
	t.Run("?after= for clients that cannot set headers", func(t *testing.T) {
		s := ts.openStream(t, path+"?after=2", nil)
		is.New(t).Equal(s.next(t).ID, "3")
	})
	t.Run("resumed at the end, only the end event", func(t *testing.T) {
		s := ts.openStream(t, path, map[string]string{"Last-Event-ID": strconv.FormatInt(done.LastSeq, 10)})
		is.New(t).Equal(s.next(t).Event, "end")
	})
	t.Run("a bad Last-Event-ID is refused naming it", func(t *testing.T) {
		r := ts.request(t, "GET", path, "", map[string]string{"Last-Event-ID": "abc"})
		is.New(t).Equal(fieldOf(t, problemOf(t, r, http.StatusBadRequest, wire.CodeInvalidRequest)), "Last-Event-ID")
	})
	t.Run("an unknown run is 404", func(t *testing.T) {
		problemOf(t, ts.get(t, "/v1/runs/nope/stream"), http.StatusNotFound, wire.CodeNotFound)
	})
	t.Run("another tenant's run is 404", func(t *testing.T) {
		problemOf(t, ts.get(t, "/api/v1/tenants/other/workflows/"+run.ID+"/stream"), http.StatusNotFound, wire.CodeNotFound)
	})
}

func TestStream_KeepAliveComments(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{StreamKeepAlive: 20 * time.Millisecond})
	s := ts.openStream(t, "/api/v1/tenants/default/stream", nil)
	is.New(t).Equal(s.nextAny(t).Comment, "keepalive") // an idle stream sends keepalive comments
}

// TestStream_OutlivesWriteTimeout: each write of a stream gets
// WriteTimeout anew, so a stream read by its client lasts many times
// longer than one answer may take.
func TestStream_OutlivesWriteTimeout(t *testing.T) {
	t.Parallel()
	const writeTimeout, keepAlive = 100 * time.Millisecond, 20 * time.Millisecond
	ts := newServer(t, serverOptions{WriteTimeout: writeTimeout, StreamKeepAlive: keepAlive})
	s := ts.openStream(t, "/api/v1/tenants/default/stream", nil)
	opened := time.Now()
	for time.Since(opened) < 6*(writeTimeout+keepAlive) {
		ev := s.nextAny(t) // fails if the stream ended: a write past its deadline
		is.New(t).Equal(ev.Comment, "keepalive")
	}
}

func TestStream_BoundedPerTenant(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{MaxStreamsPerTenant: 2, MaxStreams: 3})
	a := ts.openStream(t, "/api/v1/tenants/acme/stream", nil)
	ts.openStream(t, "/api/v1/tenants/acme/stream", nil)
	r := ts.get(t, "/api/v1/tenants/acme/stream")
	problemOf(t, r, http.StatusTooManyRequests, wire.CodeTooManyStreams)                                           // a third of one tenant is refused
	is.Equal(r.Header.Get("Retry-After"), "5")                                                                     // with when to try again
	ts.openStream(t, "/api/v1/tenants/globex/stream", nil)                                                         // another tenant has its own
	problemOf(t, ts.get(t, "/api/v1/tenants/initech/stream"), http.StatusTooManyRequests, wire.CodeTooManyStreams) // the server's bound holds across tenants

	a.close() // a closed stream gives its slot back, once the server sees it
	waitFor(t, "the slot of a closed stream to come back", func() bool {
		return ts.request(t, "GET", "/api/v1/tenants/acme/stream", "", nil).Status == http.StatusOK
	})
}

func TestStream_TenantRuns(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	ts.register(t, quickStartDef)
	s := ts.openStream(t, "/api/v1/tenants/default/stream", nil)
	other := ts.openStream(t, "/api/v1/tenants/acme/stream", nil)

	run := ts.startRun(t, `{"workflow":"wf1","input":{"big":"payload"}}`)
	var seen []wire.Run
	var ids []int64
	next := func() wire.Run {
		ev := s.next(t)
		is.Equal(ev.Event, "run") // run events only
		var r wire.Run
		is.NoErr(json.Unmarshal([]byte(ev.Data), &r))
		id, err := strconv.ParseInt(ev.ID, 10, 64)
		is.NoErr(err) // the id is a log position
		if len(ids) > 0 {
			is.True(id > ids[len(ids)-1]) // that grows
		}
		ids = append(ids, id)
		seen = append(seen, r)
		return r
	}
	r := next()
	is.Equal(r.ID, run.ID)     // the new run
	is.True(r.Input == nil)    // as a summary, without input
	for r.State != "running" { // created and started may come as one commit
		r = next()
	}
	is.Equal(ts.postJSON(t, "/v1/runs/"+run.ID+"/pause", "").Status, http.StatusOK)
	is.Equal(next().State, wire.RunState("paused")) // a pause arrives live
	is.Equal(ts.postJSON(t, "/v1/runs/"+run.ID+"/cancel", "").Status, http.StatusOK)
	is.Equal(next().State, wire.RunState("cancelled"))
	select {
	case ev := <-other.events:
		if ev.Comment == "" {
			t.Fatalf("another tenant's stream got %+v", ev)
		}
	default:
	}

	t.Run("resumed with Last-Event-ID, the runs changed since come first", func(t *testing.T) {
		is := is.New(t)
		second := ts.startRun(t, `{"workflow":"wf1"}`)
		ts.waitState(t, second.ID, engine.RunRunning)
		s := ts.openStream(t, "/api/v1/tenants/default/stream", map[string]string{"Last-Event-ID": strconv.FormatInt(ids[0], 10)})
		got := map[string]wire.RunState{}
		for len(got) < 2 || got[run.ID] != "cancelled" || got[second.ID] != "running" {
			ev := s.next(t)
			var r wire.Run
			is.NoErr(json.Unmarshal([]byte(ev.Data), &r))
			got[r.ID] = r.State
		}
		is.Equal(len(got), 2) // both runs changed after the first event, each with its current state
	})
}

func TestStream_EndsWhenTheEngineStops(t *testing.T) {
	t.Parallel()
	ts := newServer(t, serverOptions{})
	s := ts.openStream(t, "/api/v1/tenants/default/stream", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts.Engine.Stop(ctx) // as on SIGTERM: HTTP shutdown waits for this stream to end
	select {
	case _, open := <-s.events:
		for open {
			_, open = <-s.events
		}
	case <-time.After(waitTimeout):
		t.Fatal("the stream outlived the engine")
	}
}

func TestExplain_API(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{})
	ts.register(t, quickStartDef)
	run := ts.startRun(t, `{"workflow":"wf1"}`)
	ts.waitTask(t, run.ID, "t1", engine.TaskReady, 0)
	var x wire.Explanation
	ts.getJSON(t, "/api/v1/tenants/default/workflows/"+run.ID+"/explain", &x)
	is.Equal(x.Run.ID, run.ID)
	is.Equal(x.Run.State, wire.RunState("running"))
	is.Equal(len(x.Waiting), 2) // both tasks wait
	is.Equal(x.Waiting[0].Task, "t1")
	is.Equal(x.Waiting[0].Reason, engine.WaitNoWorker) // no worker polls http here
	is.Equal(x.Waiting[1].Reason, engine.WaitDependencies)
	is.Equal(x.Waiting[1].Dependencies, []wire.Dependency{{Task: "t1", State: "ready"}})
	is.True(!x.Stalled) // not idle for STUCK_AFTER

	problemOf(t, ts.get(t, "/api/v1/tenants/default/workflows/nope/explain"), http.StatusNotFound, wire.CodeNotFound)
	r := ts.get(t, "/api/v1/tenants/default/workflows/"+run.ID+"/explain?x=1")
	is.Equal(fieldOf(t, problemOf(t, r, http.StatusBadRequest, wire.CodeInvalidRequest)), "x") // no query parameters
}

func TestStream_TenantResumedFromTooFarBackResyncs(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{TenantReplayMax: 1})
	ts.register(t, quickStartDef)
	run := ts.startRun(t, `{"workflow":"wf1"}`)
	ts.waitTask(t, run.ID, "t1", engine.TaskReady, 0) // two events after the first: started, ready
	s := ts.openStream(t, "/api/v1/tenants/default/stream", map[string]string{"Last-Event-ID": "1"})
	ev := s.next(t)
	is.Equal(ev.Event, "resync") // too far back to catch up: read the list again
	var d wire.StreamResync
	is.NoErr(json.Unmarshal([]byte(ev.Data), &d))
	is.Equal(d.Reason, "too_far_behind")
	is.Equal(ev.ID, "") // no id: a reconnect resumes from the last run event
	is.Equal(ts.postJSON(t, "/v1/runs/"+run.ID+"/pause", "").Status, http.StatusOK)
	ev = s.next(t)
	is.Equal(ev.Event, "run") // then live
	is.True(strings.Contains(ev.Data, `"paused"`))
}

// A stream whose key is revoked while it is open ends before it sends
// anything more (README: keys "are revoked at once on the server that
// revokes them"), instead of going on sending the tenant's runs for as
// long as the client stays connected; a new stream with it is 401.
func TestStream_EndsWhenItsKeyIsRevoked(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ts := newServer(t, serverOptions{Access: true, AuthMode: api.AuthRequired})
	ts.tenant(t, "acme", engine.TenantSettings{})
	_, op := ts.newKey(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOperator, Name: "op"})
	viewer, token := ts.newKey(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "watcher"})
	def := `{"name":"held","tasks":[{"id":"a","type":"python"}]}` // runs until a worker comes: no change of its own
	is.Equal(ts.request(t, "POST", "/api/v1/tenants/acme/definitions", def, bearer(op)).Status, http.StatusCreated)
	start := func() {
		t.Helper()
		is.Equal(ts.request(t, "POST", "/api/v1/tenants/acme/workflows", `{"workflow":"held"}`, bearer(op)).Status, http.StatusCreated)
	}
	const path = "/api/v1/tenants/acme/stream"
	s := ts.openStream(t, path, map[string]string{"Authorization": "Bearer " + token})
	start()
	for state := ""; state != "running"; { // the stream works, up to the run's last change
		ev := s.next(t)
		is.Equal(ev.Event, "run")
		var r wire.Run
		is.NoErr(json.Unmarshal([]byte(ev.Data), &r))
		state = string(r.State)
	}
	if _, err := ts.Admin.RevokeKey(context.Background(), engine.LocalAdmin(), "acme", viewer.ID); err != nil {
		t.Fatal(err)
	}
	start() // a run the revoked key must not see
	deadline := time.After(waitTimeout)
	for ended := false; !ended; {
		select {
		case ev, ok := <-s.events:
			if ev.Event == "run" {
				t.Fatalf("a revoked key's stream got %+v", ev)
			}
			ended = !ok
		case <-deadline:
			t.Fatal("the stream of a revoked key stayed open")
		}
	}
	r := ts.request(t, "GET", path, "", map[string]string{"Authorization": "Bearer " + token})
	is.Equal(r.Status, http.StatusUnauthorized) // and cannot be opened again
}
