package api

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// Live updates as Server-Sent Events: a run's events as they commit, and a
// tenant's runs as they change state. Both are woken by an engine
// subscription and read what they send from the store, so that a stream
// that falls behind loses nothing of a run's history.

// Stream defaults.
const (
	DefaultMaxStreams          = 256
	DefaultMaxStreamsPerTenant = 64
	DefaultStreamKeepAlive     = 15 * time.Second
	// streamPage is how many events one store read of a stream takes.
	streamPage = 500
	// maxTenantReplay bounds the events a tenant stream resumed with
	// Last-Event-ID reads to catch up; past it the client is told to
	// resync.
	maxTenantReplay = 20_000
)

// StreamRetryAfter is the Retry-After of an answer refused because too many
// streams are open.
const StreamRetryAfter = 5 * time.Second

func (s *Server) streamRoutes() []route {
	return []route{
		{"GET", "/v1/runs/:id/stream", PermEventsRead, "stream", s.runStream, 0},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId/stream", PermEventsRead, "stream", s.runStream, 0},
		{"GET", "/api/v1/tenants/:tenantId/stream", PermRunsRead, "stream", s.tenantStream, 0},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId/explain", PermRunsRead, "explain", s.explainRun, 0},
	}
}

// streamSlots counts the open streams, per tenant and in all.
type streamSlots struct {
	mu       sync.Mutex // protects the fields below
	n        int
	byTenant map[string]int
}

// openStream takes a stream slot of the tenant, or refuses with 429.
func (s *Server) openStream(tenant string) (release func(), err error) {
	maxAll, maxTenant := s.MaxStreams, s.MaxStreamsPerTenant
	if maxAll <= 0 {
		maxAll = DefaultMaxStreams
	}
	if maxTenant <= 0 {
		maxTenant = DefaultMaxStreamsPerTenant
	}
	sl := &s.streams
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.byTenant == nil {
		sl.byTenant = map[string]int{}
	}
	if sl.n >= maxAll || sl.byTenant[tenant] >= maxTenant {
		p := newProblem(http.StatusTooManyRequests, wire.CodeTooManyStreams,
			fmt.Sprintf("too many event streams open (at most %d per tenant, %d in all); close one or try again later", maxTenant, maxAll))
		p.RetryAfter = StreamRetryAfter
		return nil, p
	}
	sl.n++
	sl.byTenant[tenant]++
	return func() {
		sl.mu.Lock()
		defer sl.mu.Unlock()
		sl.n--
		if sl.byTenant[tenant]--; sl.byTenant[tenant] == 0 {
			delete(sl.byTenant, tenant)
		}
	}, nil
}

// sseWriter writes Server-Sent Events, each batch flushed with a fresh
// write deadline. Its one ResponseController serves the whole stream.
type sseWriter struct {
	s       *Server
	r       *http.Request
	bw      *bufio.Writer
	rc      *http.ResponseController
	err     error
	checked time.Time // when the caller's key was last checked
}

// streamRecheck is how often a stream writing a long batch checks again
// that its caller's key still holds; each flush checks it too. A key
// revoked or expired, or its tenant suspended, while a stream is open thus
// ends the stream before its next batch (or keepalive) is sent, instead of
// letting it read the tenant's events for as long as it stays connected.
const streamRecheck = time.Second

// admitted checks again that the request's credentials still hold: always
// when now is set, else at most every streamRecheck. When they do not,
// nothing more is written.
func (sw *sseWriter) admitted(now bool) bool {
	if sw.err == nil && (now || time.Since(sw.checked) >= streamRecheck) {
		sw.checked = time.Now()
		if _, err := sw.s.Authenticator.Authenticate(sw.r); err != nil {
			sw.err = err
		}
	}
	return sw.err == nil
}

func (s *Server) newSSE(w http.ResponseWriter, r *http.Request) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // a proxy must not hold events back
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{s: s, r: r, bw: bufio.NewWriterSize(w, 32<<10), rc: http.NewResponseController(w), checked: time.Now()}
	sw.flush()
	return sw
}

// event writes one event: its id, type and data (one line of JSON).
func (sw *sseWriter) event(id, typ string, data []byte) {
	if !sw.admitted(false) {
		return
	}
	sw.s.extendWrite(sw.rc, sw.s.keepAlive())
	if id != "" {
		sw.bw.WriteString("id: " + id + "\n")
	}
	sw.bw.WriteString("event: " + typ + "\ndata: ")
	sw.bw.Write(data)
	_, sw.err = sw.bw.WriteString("\n\n")
}

// resync writes a resync event: runs changed that the stream did not send.
func (sw *sseWriter) resync(reason string) {
	b, _ := json.Marshal(wire.StreamResync{Reason: reason})
	sw.event("", "resync", b)
}

// comment writes a comment line, which clients ignore: a keepalive.
func (sw *sseWriter) comment(text string) {
	if sw.err == nil {
		sw.s.extendWrite(sw.rc, sw.s.keepAlive())
		_, sw.err = sw.bw.WriteString(": " + text + "\n\n")
	}
}

// flush sends what is buffered.
func (sw *sseWriter) flush() error {
	if sw.admitted(true) {
		sw.s.extendWrite(sw.rc, sw.s.keepAlive())
		if sw.err = sw.bw.Flush(); sw.err == nil {
			sw.err = sw.rc.Flush()
		}
	}
	return sw.err
}

func (s *Server) keepAlive() time.Duration {
	if s.StreamKeepAlive > 0 {
		return s.StreamKeepAlive
	}
	return DefaultStreamKeepAlive
}

// lastEventID reads where a stream resumes: the Last-Event-ID header, or
// the query parameter name; 0 = the start.
func lastEventID(r *http.Request, name string) (int64, error) {
	if v := strings.TrimSpace(r.Header.Get("Last-Event-ID")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fieldProblem("Last-Event-ID", fmt.Sprintf("must be a non-negative integer (the id of the last event received), not %q", v))
		}
		return n, nil
	}
	n, err := intParam(r.URL.Query(), name, 0, 0, 1<<62)
	return int64(n), err
}

// runStream streams a run's events: those after Last-Event-ID (a seq) or
// ?after= from the store, then each as it commits; an end event once the
// run is terminal, and the stream stays open (a retry runs it again) until
// the client closes it or the server stops.
func (s *Server) runStream(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	id := runIDOf(p)
	if err := onlyParams(r.URL.Query(), "after"); err != nil {
		return err
	}
	after, err := lastEventID(r, "after")
	if err != nil {
		return err
	}
	release, err := s.openStream(tenant)
	if err != nil {
		return err
	}
	defer release()
	// Subscribe first: a commit after the read below then wakes the loop.
	sub := s.Engine.Subscribe(tenant, id, 16)
	defer sub.Close()
	run, err := s.Engine.GetRunRow(r.Context(), tenant, id)
	if err != nil {
		return s.runNotFound(r, err, tenant, id)
	}
	state, stateSeq := run.State, run.LastSeq
	sw := s.newSSE(w, r)
	ended := false // an end event was sent for the terminal state the run is in
	ticker := time.NewTicker(s.keepAlive())
	defer ticker.Stop()
	for {
		for {
			events, err := s.Engine.RunEvents(r.Context(), tenant, id, after, streamPage)
			if err != nil {
				return s.streamBroke(r, tenant, err)
			}
			for i := range events {
				e := &events[i]
				b, err := json.Marshal(wireEvent(e))
				if err != nil {
					return s.streamBroke(r, tenant, err)
				}
				sw.event(strconv.FormatInt(e.Seq, 10), string(e.Type), b)
				after = e.Seq
				if to, ok := runStateAfter(e.Type); ok && e.Seq >= stateSeq {
					state, stateSeq = to, e.Seq
				}
			}
			if len(events) < streamPage {
				break
			}
			if sw.flush() != nil {
				return nil
			}
		}
		switch {
		case state.Terminal() && after >= stateSeq && !ended:
			b, _ := json.Marshal(wire.StreamEnd{RunID: id, State: wire.RunState(state), LastSeq: after})
			sw.event("", "end", b)
			ended = true
		case !state.Terminal():
			ended = false
		}
		if sw.flush() != nil {
			return nil
		}
	waiting:
		for {
			select {
			case c := <-sub.C():
				if c.LastSeq >= stateSeq {
					state, stateSeq = c.State, c.LastSeq
				}
				if sub.Lagged() {
					// Changes were dropped: the latest state is the store's.
					if run, err := s.Engine.GetRunRow(r.Context(), tenant, id); err == nil && run.LastSeq >= stateSeq {
						state, stateSeq = run.State, run.LastSeq
					}
				}
				if c.LastSeq > after || state.Terminal() {
					break waiting // something to read, or an end to send
				}
			case <-ticker.C:
				sw.comment("keepalive")
				if sw.flush() != nil {
					return nil
				}
			case <-r.Context().Done():
				return nil
			case <-sub.Done():
				return nil
			}
		}
	}
}

// runStateAfter is the run state a run event leads to, if it moves the run
// (run.stalled, a fact, does not).
func runStateAfter(t engine.EventType) (engine.RunState, bool) {
	for _, from := range engine.RunStates() {
		if to, ok := engine.RunEventAllowed(t, from); ok && to != from {
			return to, true
		}
	}
	if t == engine.EventRunCreated {
		return engine.RunPending, true
	}
	return "", false
}

// streamBroke ends a stream whose answer has begun: a problem document
// would corrupt it, so the failure is logged and the client sees the
// stream end (and resumes with Last-Event-ID).
func (s *Server) streamBroke(r *http.Request, tenant string, err error) error {
	if r.Context().Err() == nil {
		s.Logger.Error("event stream broke off", logTenant, tenant, "err", err)
	}
	return nil
}

// tenantStream streams a tenant's runs as they are created or change
// state: each a run event whose data is the run summary as the runs list
// has it and whose id is the id (log position) of the run's last event
// then. Resumed with Last-Event-ID, it first sends every run whose state
// changed after that event (up to maxTenantReplay events later; beyond,
// and whenever it fell behind live, a resync event tells the client to
// read the list again).
func (s *Server) tenantStream(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query(), "after"); err != nil {
		return err
	}
	cursor, err := lastEventID(r, "after")
	if err != nil {
		return err
	}
	release, err := s.openStream(tenant)
	if err != nil {
		return err
	}
	defer release()
	sub := s.Engine.Subscribe(tenant, "", 256)
	defer sub.Close()
	sw := s.newSSE(w, r)
	ctx := r.Context()
	sendRun := func(runID string, eventID int64) error {
		run, err := s.Engine.GetRunRow(ctx, tenant, runID)
		if err != nil {
			return err
		}
		run.Input, run.Output = nil, nil // a summary, as in the runs list
		b, err := json.Marshal(wireRun(run))
		if err != nil {
			return err
		}
		sw.event(strconv.FormatInt(eventID, 10), "run", b)
		return nil
	}
	if cursor > 0 {
		if err := s.tenantReplay(r, tenant, cursor, sw, sendRun); err != nil {
			return s.streamBroke(r, tenant, err)
		}
		if sw.flush() != nil {
			return nil
		}
	}
	ticker := time.NewTicker(s.keepAlive())
	defer ticker.Stop()
	for {
		select {
		case c := <-sub.C():
			if sub.Lagged() {
				sw.resync("lagged")
			}
			if c.Moved() {
				evs, err := s.Engine.RunEvents(ctx, tenant, c.RunID, c.LastSeq-1, 1)
				if err != nil {
					return s.streamBroke(r, tenant, err)
				}
				if len(evs) == 1 && evs[0].ID > cursor {
					if err := sendRun(c.RunID, evs[0].ID); err != nil {
						return s.streamBroke(r, tenant, err)
					}
				}
			}
			// Send what else is waiting in one flush.
			if len(sub.C()) > 0 {
				continue
			}
			if sw.flush() != nil {
				return nil
			}
		case <-ticker.C:
			sw.comment("keepalive")
			if sw.flush() != nil {
				return nil
			}
		case <-ctx.Done():
			return nil
		case <-sub.Done():
			return nil
		}
	}
}

// tenantReplay sends the runs whose state changed after event cursor, each
// once, in the order of their last such change.
func (s *Server) tenantReplay(r *http.Request, tenant string, cursor int64, sw *sseWriter, send func(string, int64) error) error {
	last := map[string]int64{} // run -> id of its last state change
	var order []string
	scanned := 0
	limit := maxTenantReplay
	if s.replayMax > 0 {
		limit = s.replayMax
	}
	f := engine.EventFilter{TenantID: tenant, After: &engine.EventCursor{ID: cursor}, Limit: limit + 1}
	err := s.Engine.StreamEvents(r.Context(), f, func(e *engine.Event) error {
		if scanned++; scanned > limit {
			return errPageFull
		}
		if _, ok := runStateAfter(e.Type); !ok || e.TaskID != "" {
			return nil
		}
		if _, seen := last[e.RunID]; !seen {
			order = append(order, e.RunID)
		}
		last[e.RunID] = e.ID
		return nil
	})
	if err == errPageFull {
		sw.resync("too_far_behind")
		return nil
	}
	if err != nil {
		return err
	}
	// In the order of each run's last change, so that ids only grow.
	slices.SortFunc(order, func(a, b string) int { return cmp.Compare(last[a], last[b]) })
	for _, id := range order {
		if err := send(id, last[id]); err != nil {
			return err
		}
	}
	return nil
}
