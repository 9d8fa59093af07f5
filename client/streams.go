package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
)

// StreamEvent is one Server-Sent Event of a stream: its id (a seq on a
// run's stream, a log position on a tenant's; "" for end and resync), its
// type (an event type such as task.started, or end, run, resync) and its
// data (JSON).
type StreamEvent struct {
	ID    string
	Type  string
	Data  json.RawMessage
	Event *wire.Event     // decoded Data, on a run stream's history events
	End   *wire.StreamEnd // decoded Data, on a run stream's end event
	Run   *wire.Run       // decoded Data, on a tenant stream's run event
}

// maxStreamLine bounds one line of a stream (an event's data).
const maxStreamLine = 4 << 20

// FollowWorkflow streams a run's events (GET .../workflows/{id}/stream):
// those after seq afterSeq, then each as it commits, and an end event once
// the run is terminal (the stream stays open: a retry runs it again). It
// calls fn for each; fn returns ErrStop to end the stream with nil. When the
// connection breaks it reconnects with Last-Event-ID, so fn sees every
// event once, in order, until ctx is done (ctx.Err() is returned). A 4xx
// answer is returned as a *Error.
func (c *OrchestratorClient) FollowWorkflow(ctx context.Context, id string, afterSeq int64, fn func(StreamEvent) error) error {
	return c.follow(ctx, c.tenantPath("workflows", seg(id), "stream"), afterSeq, fn)
}

// FollowRun is FollowWorkflow on the short API (GET /v1/runs/{id}/stream,
// the tenant default).
func (c *OrchestratorClient) FollowRun(ctx context.Context, id string, afterSeq int64, fn func(StreamEvent) error) error {
	return c.follow(ctx, "/v1/runs/"+seg(id)+"/stream", afterSeq, fn)
}

// ErrNotAStream: the server answered a stream request with something other
// than text/event-stream.
var ErrNotAStream = errors.New("orchestrator: the answer is not an event stream")

func (c *OrchestratorClient) follow(ctx context.Context, path string, afterSeq int64, fn func(StreamEvent) error) error {
	last := strconv.FormatInt(afterSeq, 10)
	for {
		err := c.stream(ctx, path, last, func(ev StreamEvent) error {
			if ev.ID != "" {
				last = ev.ID
			}
			return fn(ev)
		})
		var apiErr *Error
		switch {
		case err == nil, errors.Is(err, ErrStop):
			return nil
		case errors.Is(err, ErrNotAStream):
			return err
		case errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusTooManyRequests:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		select { // the server went away or refused for now: try again shortly
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// FollowTenantRuns streams the tenant's runs (GET .../tenants/{id}/stream):
// a run event with the run summary whenever a run is created or changes
// state, and a resync event when runs changed that the stream did not send
// (read the list again). lastEventID resumes after a run event's id ("":
// from now). fn returns ErrStop to end with nil; the stream ends when ctx
// is done or the connection breaks (the error says which).
func (c *OrchestratorClient) FollowTenantRuns(ctx context.Context, lastEventID string, fn func(StreamEvent) error) error {
	err := c.stream(ctx, c.tenantPath("stream"), lastEventID, fn)
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// stream opens one event stream and calls fn for each event until the
// stream ends, fn fails, or ctx is done.
func (c *OrchestratorClient) stream(ctx context.Context, path, lastEventID string, fn func(StreamEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl := call{method: http.MethodGet, path: path, accept: "text/event-stream", header: http.Header{}}
	if lastEventID != "" {
		cl.header.Set("Last-Event-ID", lastEventID)
	}
	var timer *time.Timer
	if c.timeout > 0 {
		timer = time.AfterFunc(c.timeout, cancel) // bounds the wait for the answer to begin
	}
	res, err := c.start(ctx, cl)
	if timer != nil && !timer.Stop() {
		if err == nil {
			res.Body.Close()
		}
		return fmt.Errorf("orchestrator: GET %s: %w", path, context.DeadlineExceeded)
	}
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return decodeError(res, cl)
	}
	if ct, _, _ := strings.Cut(res.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "text/event-stream" {
		return fmt.Errorf("GET %s: %w (Content-Type %q)", path, ErrNotAStream, ct)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), maxStreamLine)
	var ev StreamEvent
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Type == "" && data.Len() == 0 {
				continue // a comment (keepalive) ends here
			}
			ev.Data = json.RawMessage(data.String())
			if err := decodeStreamEvent(&ev); err != nil {
				return fmt.Errorf("orchestrator: GET %s: %w", path, err)
			}
			if err := fn(ev); err != nil {
				return err
			}
			ev, data = StreamEvent{}, strings.Builder{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			ev.ID = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "event:"):
			ev.Type = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(line[5:], " "))
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("orchestrator: GET %s: read stream: %w", path, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("orchestrator: GET %s: %w", path, io.ErrUnexpectedEOF)
}

// decodeStreamEvent decodes the data of the event types it knows.
func decodeStreamEvent(ev *StreamEvent) error {
	var err error
	switch ev.Type {
	case "end":
		ev.End = &wire.StreamEnd{}
		err = json.Unmarshal(ev.Data, ev.End)
	case "run":
		ev.Run = &wire.Run{}
		err = json.Unmarshal(ev.Data, ev.Run)
	case "resync":
	default:
		ev.Event = &wire.Event{}
		err = json.Unmarshal(ev.Data, ev.Event)
	}
	if err != nil {
		return fmt.Errorf("decode %s event: %w", ev.Type, err)
	}
	return nil
}

// ExplainWorkflow answers why a run and each of its tasks that is not
// running waits (GET .../workflows/{id}/explain). Errors: 404.
func (c *OrchestratorClient) ExplainWorkflow(ctx context.Context, id string) (*wire.Explanation, error) {
	var out wire.Explanation
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("workflows", seg(id), "explain")}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
