// Package api serves the orchestrator over HTTP: the short /v1 API of the
// tenant "default", health and metrics. Handlers decode and check requests,
// call the engine or the store, and answer JSON or problem+json.
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// DefaultTenant is the tenant the short /v1 API acts on.
const DefaultTenant = "default"

// DefaultMaxBodyBytes caps request bodies; a definition may be up to 1 MiB.
const DefaultMaxBodyBytes = 2 << 20

// ActorAPI is recorded on events caused by an API call.
const ActorAPI = "api"

// Server is the HTTP API. Set the fields, then serve Handler().
type Server struct {
	Engine       *engine.Engine
	Store        *store.DB
	Metrics      *metrics.Set // written by GET /metrics with the process metrics
	Logger       *slog.Logger
	MaxBodyBytes int64 // default DefaultMaxBodyBytes
	// WriteTimeout is the http.Server's: the time an answer may take. A
	// long poll gets its wait on top of it and an event stream gets it
	// anew for each batch it sends. 0: no deadline is set.
	WriteTimeout time.Duration
	// MaxPageBytes bounds the encoded items of one page of a list: a page
	// ends early, with its token, once it would pass the bound (it always
	// holds at least one item). Default DefaultMaxPageBytes.
	MaxPageBytes int
}

// Handler returns the router with every route and the middleware.
func (s *Server) Handler() http.Handler {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.MaxBodyBytes <= 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if s.MaxPageBytes <= 0 {
		s.MaxPageBytes = DefaultMaxPageBytes
	}
	r := httprouter.New()
	r.HandleMethodNotAllowed = true
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusNotFound, wire.CodeNotFound, "no route for "+r.Method+" "+r.URL.Path))
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path))
	})
	r.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		s.Logger.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
		writeProblem(w, newProblem(http.StatusInternalServerError, wire.CodeInternal, "internal error; see the server log"))
	}
	for _, rt := range s.routes() {
		r.Handle(rt.method, rt.path, s.wrap(rt.h))
	}
	return r
}

type route struct {
	method, path string
	h            handlerFunc
}

// handlerFunc is a handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error

func (s *Server) routes() []route {
	return []route{
		{"GET", "/health", s.health},
		{"GET", "/metrics", s.metrics},
		{"GET", "/openapi.json", s.openapi},
		{"POST", "/v1/workflows", s.registerDefinition},
		{"GET", "/v1/workflows", s.getWorkflow},
		{"POST", "/v1/run", s.executeWorkflow},
		{"GET", "/v1/runs/:id", s.getRun},
		{"GET", "/v1/runs/:id/events", s.runEvents},
		{"POST", "/v1/runs/:id/pause", s.control(engine.EventRunPaused)},
		{"POST", "/v1/runs/:id/resume", s.control(engine.EventRunResumed)},
		{"POST", "/v1/runs/:id/cancel", s.control(engine.EventRunCancelled)},
		{"POST", "/v1/runs/:id/retry", s.control(engine.EventRunRetried)},
		{"POST", "/api/v1/tenants/:tenantId/workflows", s.executeWorkflow},
		{"GET", "/api/v1/tenants/:tenantId/workflows", s.listRuns},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId", s.getRun},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/pause", s.control(engine.EventRunPaused)},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/resume", s.control(engine.EventRunResumed)},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/cancel", s.control(engine.EventRunCancelled)},
		{"POST", "/api/v1/tenants/:tenantId/workflows/:workflowId/retry", s.control(engine.EventRunRetried)},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId/metrics", s.runMetrics},
		{"GET", "/api/v1/tenants/:tenantId/workflows/:workflowId/events", s.runEvents},
		{"GET", "/api/v1/tenants/:tenantId/events", s.tenantEvents},
		{"POST", "/api/v1/tenants/:tenantId/definitions", s.registerDefinition},
		{"GET", "/api/v1/tenants/:tenantId/definitions", s.listDefinitions},
		{"GET", "/api/v1/tenants/:tenantId/definitions/:name/versions/:version", s.getDefinitionVersion},
		{"POST", "/api/v1/dag/validate", s.validateDAG},
		{"POST", "/v1/tasks/:id", s.taskPost},
		{"POST", "/v1/tasks/:id/:verb", s.taskVerb},
		{"POST", "/api/v1/tenants/:tenantId/tasks/:id", s.taskPost},
		{"POST", "/api/v1/tenants/:tenantId/tasks/:id/:verb", s.taskVerb},
	}
}

// wrap turns a returned error into a problem answer and logs server errors.
func (s *Server) wrap(h handlerFunc) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		err := error(nil)
		if r.Method == http.MethodPost {
			// No POST takes query parameters: one given is a mistake (a
			// dry_run the server does not know), not something to ignore.
			err = onlyParams(r.URL.Query())
		}
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			prob := problemFor(err)
			switch {
			case prob.Code == wire.CodeStorageUnavailable:
				// The store logs when its storage fails and when it is back.
				s.Logger.Debug("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			case prob.Status >= 500:
				s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeProblem(w, prob)
		}
	}
}

// extendWrite gives an answer that waits (a long poll) or runs long (a
// stream) d more than WriteTimeout from now to be written.
func (s *Server) extendWrite(w http.ResponseWriter, d time.Duration) {
	if s.WriteTimeout > 0 {
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d + s.WriteTimeout))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// readBody reads a JSON request body, refusing a wrong media type (415), a
// body over the limit (413) before reading it whole, and a body that is not
// UTF-8 (400, naming the field that holds the first bad byte).
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		// curl -d sends application/x-www-form-urlencoded unless told
		// otherwise; the body is still parsed as JSON.
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "application/x-www-form-urlencoded") {
			return nil, newProblem(http.StatusUnsupportedMediaType, wire.CodeUnsupportedMedia,
				fmt.Sprintf("Content-Type %q: send application/json", ct))
		}
	}
	tooLarge := newProblem(http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge,
		fmt.Sprintf("request body is over the limit of %d bytes", s.MaxBodyBytes))
	if r.ContentLength > s.MaxBodyBytes {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.MaxBodyBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge
	}
	if err != nil {
		return nil, newProblem(http.StatusBadRequest, wire.CodeInvalidRequest, "reading the request body: "+err.Error())
	}
	if !utf8.Valid(body) { // JSON text is UTF-8, and every answer echoing it must be
		return nil, invalidUTF8(body)
	}
	return body, nil
}

// decodeStrict decodes a JSON object into v, refusing unknown fields, wrong
// types and trailing data with a problem naming the field.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, "the request body is empty; send a JSON object")
	}
	if err := validJSON(body); err != nil {
		return err
	}
	if err := checkKeys(body, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, "the request body must be a JSON object")
		}
		return fieldProblem(field, fmt.Sprintf("must be %s, not %s", jsonKind(te.Type.Kind().String()), te.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fieldProblem(field, "unknown field")
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, "malformed JSON: "+err.Error())
	}
	return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, err.Error())
}

// validJSON refuses a body that is not JSON with invalid_json and the
// parser's reason.
func validJSON(body []byte) error {
	if json.Valid(body) {
		return nil
	}
	var x any
	return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, "malformed JSON: "+fmt.Sprint(json.Unmarshal(body, &x)))
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return goKind
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) error {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if s.Metrics != nil {
		s.Metrics.WritePrometheus(w)
	}
	metrics.WriteProcessMetrics(w)
	return nil
}

func (s *Server) getWorkflow(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	q := r.URL.Query()
	if err := onlyParams(q, "name", "version"); err != nil {
		return err
	}
	name := q.Get("name")
	if name == "" {
		return fieldProblem("name", "required query parameter, e.g. ?name=wf1")
	}
	version := 0
	if v := q.Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fieldProblem("version", fmt.Sprintf("must be a positive integer, not %q", v))
		}
		version = n
	}
	sd, err := s.Store.GetDefinition(r.Context(), DefaultTenant, name, version)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wireDefinition(sd))
	return nil
}

// newRunView is a run with its tasks and progress, as GET /v1/runs/{id}
// shows it.
func newRunView(run *engine.Run, tasks []engine.Task) wire.RunDetails {
	p := wire.Progress{Total: len(tasks), States: map[wire.TaskState]int{}}
	for _, s := range engine.TaskStates() {
		p.States[wire.TaskState(s)] = 0
	}
	v := wire.RunDetails{Run: wireRun(run), Tasks: make([]wire.Task, len(tasks))}
	for i := range tasks {
		p.States[wire.TaskState(tasks[i].State)]++
		if tasks[i].State.Terminal() {
			p.Done++
		}
		v.Tasks[i] = wireTask(&tasks[i])
	}
	if p.Total > 0 {
		p.Percent = float64(int(1000*float64(p.Done)/float64(p.Total))) / 10
	}
	v.Progress = p
	return v
}

// runIDOf is the run a request names: {id} on the short API, {workflowId}
// on the tenant API.
func runIDOf(p httprouter.Params) string {
	if id := p.ByName("workflowId"); id != "" {
		return id
	}
	return p.ByName("id")
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	id := runIDOf(p)
	run, tasks, err := s.Store.GetRun(r.Context(), tenant, id)
	if err != nil {
		return runNotFound(err, id)
	}
	writeJSON(w, http.StatusOK, newRunView(run, tasks))
	return nil
}

func runNotFound(err error, id string) error {
	if errors.Is(err, engine.ErrNotFound) {
		return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("run %q does not exist", id))
	}
	return err
}

// runEvents serves a run's history in seq order, paginated by ?after=SEQ,
// filtered by ?task_id= and ?type=; ?verify=true also checks its hash chain.
func (s *Server) runEvents(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	id := runIDOf(p)
	q := r.URL.Query()
	if err := onlyParams(q, "after", "limit", "task_id", "type", "verify"); err != nil {
		return err
	}
	after, err := intParam(q, "after", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := intParam(q, "limit", 1000, 1, store.MaxPage)
	if err != nil {
		return err
	}
	verify := q.Get("verify")
	if verify != "" && verify != "true" && verify != "false" {
		return fieldProblem("verify", "must be true or false")
	}
	if _, err := s.Store.GetRunRow(r.Context(), tenant, id); err != nil {
		return runNotFound(err, id)
	}
	typ, err := eventTypeParam(q)
	if err != nil {
		return err
	}
	items, last, more, err := s.eventPage(r, store.EventFilter{TenantID: tenant, RunID: id, TaskID: q.Get("task_id"),
		Type: typ, AfterSeq: int64(after), Limit: limit + 1}, limit)
	if err != nil {
		return err
	}
	page := wire.RunEventsPage[json.RawMessage]{RunID: id, Events: items}
	if more {
		page.NextAfter = last.Seq
	}
	if verify == "true" {
		all, err := s.Store.RunEvents(r.Context(), id, 0, 0)
		if err != nil {
			return err
		}
		ok := true
		if err := engine.VerifyChain(all); err != nil {
			ok, page.VerifyError = false, err.Error()
		}
		page.Verified = &ok
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// control serves one of pause, resume, cancel, retry. The body, if any, is
// a JSON object; retry takes {"task_id"}.
func (s *Server) control(verb engine.EventType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
		tenant, err := tenantOf(p)
		if err != nil {
			return err
		}
		actor, err := actorOf(r)
		if err != nil {
			return err
		}
		body, err := s.readBody(r)
		if err != nil {
			return err
		}
		var req wire.ControlRequest
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decodeStrict(body, &req); err != nil {
				return err
			}
		}
		if req.TaskID != "" && verb != engine.EventRunRetried {
			return fieldProblem("task_id", "only retry takes a task")
		}
		id := runIDOf(p)
		var run *engine.Run
		switch verb {
		case engine.EventRunPaused:
			run, err = s.Engine.Pause(r.Context(), tenant, id, actor)
		case engine.EventRunResumed:
			run, err = s.Engine.Resume(r.Context(), tenant, id, actor)
		case engine.EventRunCancelled:
			run, err = s.Engine.Cancel(r.Context(), tenant, id, actor)
		default:
			run, err = s.Engine.RetryTask(r.Context(), tenant, id, req.TaskID, actor)
		}
		if err != nil {
			if errors.Is(err, engine.ErrNotFound) && req.TaskID != "" {
				if _, gerr := s.Store.GetRunRow(r.Context(), tenant, id); gerr == nil {
					return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("run %q has no task %q", id, req.TaskID))
				}
			}
			return runNotFound(err, id)
		}
		writeJSON(w, http.StatusOK, wireRun(run))
		return nil
	}
}

// actorOf is who asked: the X-Actor header (until API keys name callers), or
// "api".
func actorOf(r *http.Request) (string, error) {
	a := r.Header.Get("X-Actor")
	if a == "" {
		return ActorAPI, nil
	}
	if len(a) > 128 {
		return "", fieldProblem("X-Actor", "must be at most 128 characters")
	}
	if !utf8.ValidString(a) {
		return "", fieldProblem("X-Actor", "must be valid UTF-8")
	}
	for _, c := range a {
		if c < 0x20 || c == 0x7f {
			return "", fieldProblem("X-Actor", "must not contain control characters")
		}
	}
	return a, nil
}

// intParam reads an optional integer query parameter within [lo, hi].
func intParam(q url.Values, name string, def, lo, hi int64) (int, error) {
	v := q.Get(name)
	if v == "" {
		return int(def), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fieldProblem(name, fmt.Sprintf("must be an integer in %d..%d, not %q", lo, hi, v))
	}
	return int(n), nil
}

// onlyParams refuses query parameters the endpoint does not know, so that a
// misspelt filter is not silently ignored.
func onlyParams(q url.Values, known ...string) error {
	for k := range q {
		if !slices.Contains(known, k) {
			if len(known) == 0 {
				return fieldProblem(k, "unknown query parameter; this endpoint takes none")
			}
			return fieldProblem(k, "unknown query parameter; known: "+strings.Join(known, ", "))
		}
	}
	return nil
}

// eventTypeParam reads an optional event type filter, refusing unknown types
// so that a misspelt filter does not answer an empty page.
func eventTypeParam(q url.Values) (engine.EventType, error) {
	t := engine.EventType(q.Get("type"))
	if t == "" || slices.Contains(engine.EventTypes(), t) {
		return t, nil
	}
	return "", fieldProblem("type", fmt.Sprintf("unknown event type %q, e.g. task.completed, run.paused", t))
}
