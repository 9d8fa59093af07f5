package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/policy"
)

// Runs: start (with an Idempotency-Key), list, read, control and metrics,
// on the short API (tenant "default") and per tenant.

// MaxIdempotencyKey is the longest Idempotency-Key header accepted.
const MaxIdempotencyKey = 255

func (s *Server) executeWorkflow(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > MaxIdempotencyKey {
		return fieldProblem("Idempotency-Key", fmt.Sprintf("must be at most %d characters", MaxIdempotencyKey))
	}
	if !utf8.ValidString(key) {
		return fieldProblem("Idempotency-Key", "must be valid UTF-8")
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req wire.ExecuteRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	hasDef := len(req.Definition) > 0 && string(req.Definition) != "null"
	switch {
	case hasDef && (req.Workflow != "" || req.Version != 0):
		return fieldProblem("definition", "give either workflow (and version) or definition, not both")
	case !hasDef && req.Workflow == "":
		return fieldProblem("workflow", "required: the name of a registered definition, or send definition inline")
	case req.Version < 0:
		return fieldProblem("version", "must be a version number; 0 or omitted means the latest")
	}
	// A policy sees the definition's name and, for "wf@3", the version;
	// an alias's version is known once it picks, after the policy.
	res := policy.Resource{Workflow: req.Workflow, Version: req.Version, InputSize: int64(len(req.Input))}
	ref, refErr := engine.ParseWorkflowRef("workflow", req.Workflow)
	if refErr == nil {
		res.Workflow = ref.Name
		if ref.Version > 0 {
			res.Version = ref.Version
		}
	}
	if hasDef {
		res.Workflow = definitionName(req.Definition)
	}
	if err := s.decide(r, res); err != nil {
		return err
	}
	hash := requestHash(req.Workflow, req.Version, req.Definition, req.Input)
	workflow, version := req.Workflow, req.Version
	// The engine writes an inline definition's version, the run and the
	// key in one commit: a refused or repeated request registers nothing.
	start := engine.StartRequest{TenantID: tenant, Workflow: workflow, Version: version, Input: req.Input,
		By: CallerFrom(r.Context()), IdempotencyKey: key}
	if hasDef {
		start.Workflow, start.Version, start.Definition = "", 0, req.Definition
	}
	if key != "" {
		start.RequestHash = hash
	}
	run, replayed, err := s.Engine.StartRunIdempotent(r.Context(), start)
	s.rateLimitHeaders(w, tenant, err)
	switch {
	case errors.Is(err, engine.ErrIdempotencyMismatch):
		return newProblem(http.StatusUnprocessableEntity, wire.CodeIdempotencyMismatch,
			"this Idempotency-Key was used for a different request; use a new key")
	case errors.Is(err, engine.ErrAliasNotFound):
		q := newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("workflow %q has no alias %q", ref.Name, ref.Alias))
		q.Errors = []wire.FieldError{{Field: "workflow", Message: fmt.Sprintf("no alias %q of %s", ref.Alias, ref.Name)}}
		return q
	case errors.Is(err, engine.ErrNotFound):
		if refErr == nil && ref.Version > 0 {
			return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("workflow %q has no version %d", ref.Name, ref.Version))
		}
		if version > 0 {
			return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("workflow %q has no version %d", workflow, version))
		}
		return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("workflow %q is not registered", workflow))
	case err != nil:
		return err
	}
	return s.answerStarted(w, p, tenant, run, replayed)
}

// answerStarted answers a started run (or, replayed, the run an earlier
// request with the same Idempotency-Key started).
func (s *Server) answerStarted(w http.ResponseWriter, p httprouter.Params, tenant string, run *engine.Run, replayed bool) error {
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if p.ByName("tenantId") == "" {
		w.Header().Set("Location", "/v1/runs/"+run.ID)
	} else {
		w.Header().Set("Location", fmt.Sprintf("/api/v1/tenants/%s/workflows/%s", tenant, run.ID))
	}
	writeJSON(w, http.StatusCreated, wireRun(run))
	return nil
}

// rateLimitHeaders sends the tenant's start bucket, when it has one, as
// the RateLimit-Limit, -Remaining and -Reset headers (IETF draft
// "RateLimit header fields for HTTP": the burst, the starts allowed now,
// and the seconds until the bucket is full again).
func (s *Server) rateLimitHeaders(w http.ResponseWriter, tenant string, err error) {
	var qe *engine.QuotaError
	var rl engine.RateLimit
	var ok bool
	if errors.As(err, &qe) && qe.RateLimit != nil {
		rl, ok = *qe.RateLimit, true
	} else {
		rl, ok = s.Engine.StartRateLimit(tenant)
	}
	if !ok {
		return
	}
	h := w.Header()
	h.Set("RateLimit-Limit", strconv.Itoa(rl.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(rl.Remaining))
	h.Set("RateLimit-Reset", strconv.FormatInt(ceilSeconds(rl.Reset), 10))
}

// requestHash identifies what an execute request asked for, so that an
// Idempotency-Key reused for a different request is refused.
func requestHash(workflow string, version int, def, input json.RawMessage) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00", workflow, version)
	var buf bytes.Buffer
	for _, m := range []json.RawMessage{def, input} {
		buf.Reset()
		if json.Compact(&buf, m) == nil {
			h.Write(buf.Bytes())
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "limit", "page_token", "status", "workflow", "created_after", "created_before",
		"origin_kind", "origin_id"); err != nil {
		return err
	}
	f, err := runFilterOf(q, tenant)
	if err != nil {
		return err
	}
	if f.Limit, err = intParam(q, "limit", 50, 1, engine.MaxPage); err != nil {
		return err
	}
	if st := q.Get("status"); st != "" {
		if !validRunState(st) {
			return fieldProblem("status", fmt.Sprintf("must be one of %s, not %q", runStateList(), st))
		}
		f.State = engine.RunState(st)
	}
	if tok := q.Get("page_token"); tok != "" {
		t, err := decodeToken(tok)
		at, terr := engine.ParseTime(t.CreatedAt)
		if err != nil || terr != nil || t.ID == "" {
			return fieldProblem("page_token", "is not a token this list gave out")
		}
		f.Cursor = &engine.RunCursor{CreatedAt: at, ID: t.ID}
	}
	runs, next, err := s.Engine.ListRuns(r.Context(), f)
	if err != nil {
		return err
	}
	items := s.newPage()
	for i := range runs {
		ok, err := items.add(wireRun(&runs[i]))
		if err != nil {
			return err
		}
		if !ok { // the page is full: the next one starts at this run
			last := runs[i-1]
			next = engine.CursorOf(&last)
			break
		}
	}
	page := wire.RunsPage[json.RawMessage]{Runs: items.items}
	if next != nil {
		page.NextPageToken = encodeToken(pageToken{CreatedAt: engine.FormatTime(next.CreatedAt), ID: next.ID})
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func validRunState(s string) bool {
	for _, st := range engine.RunStates() {
		if string(st) == s {
			return true
		}
	}
	return false
}

func runStateList() string {
	var out []string
	for _, st := range engine.RunStates() {
		out = append(out, string(st))
	}
	return strings.Join(out, ", ")
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "as_of_seq", "as_of"); err != nil {
		return err
	}
	id := runIDOf(p)
	var run *engine.Run
	var tasks []engine.Task
	if q.Has("as_of_seq") || q.Has("as_of") {
		run, tasks, err = s.runAsOf(r, q, tenant, id)
	} else {
		run, tasks, err = s.Engine.GetRun(r.Context(), tenant, id)
	}
	if err != nil {
		return s.runNotFound(r, err, tenant, id)
	}
	writeJSON(w, http.StatusOK, newRunView(run, tasks))
	return nil
}

// runAsOf reads a run as it was after its event ?as_of_seq=N, or at the
// time ?as_of=T: its events up to there folded as the engine folds them.
func (s *Server) runAsOf(r *http.Request, q url.Values, tenant, id string) (*engine.Run, []engine.Task, error) {
	if q.Has("as_of_seq") && q.Has("as_of") {
		return nil, nil, fieldProblem("as_of", "name as_of_seq or as_of, not both")
	}
	var at engine.AsOf
	var err error
	if q.Has("as_of_seq") {
		n, err := intParam(q, "as_of_seq", 0, 1, 1<<62)
		if err != nil {
			return nil, nil, err
		}
		if n == 0 {
			return nil, nil, fieldProblem("as_of_seq", "must be an integer in 1..4611686018427387904")
		}
		at.Seq = int64(n)
	} else if at.Time, err = timeParam(q, "as_of"); err != nil {
		return nil, nil, err
	} else if at.Time.IsZero() {
		return nil, nil, fieldProblem("as_of", "must be an RFC 3339 time like 2026-01-02T15:04:05Z")
	}
	run, tasks, err := s.Engine.GetRunAsOf(r.Context(), tenant, id, at)
	if errors.Is(err, engine.ErrBeforeRun) {
		return nil, nil, fieldProblem("as_of", "is before the run's first event")
	}
	return run, tasks, err
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

// runNotFound is the answer for a run that is not there: 410 run_archived
// with where it went when retention removed it, else 404.
func (s *Server) runNotFound(r *http.Request, err error, tenant, id string) error {
	if !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	var gone *engine.ArchivedError
	if errors.As(s.Engine.Archived(r.Context(), tenant, id), &gone) {
		ts := gone.Tombstone
		return newProblem(http.StatusGone, wire.CodeRunArchived, fmt.Sprintf(
			"run %q (%s v%d, %s, %d events, final hash %s) ended %s and was removed by retention at %s into the archive %s",
			id, ts.Workflow, ts.Version, ts.State, ts.Events, ts.FinalHash, engine.FormatTime(ts.EndedAt),
			engine.FormatTime(ts.RemovedAt), ts.Archive))
	}
	return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("run %q does not exist", id))
}

// control serves one of pause, resume, cancel, retry. The body, if any, is
// a JSON object; retry takes {"task_id"}.
func (s *Server) control(verb engine.EventType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
		tenant, err := tenantOf(p)
		if err != nil {
			return err
		}
		by := CallerFrom(r.Context())
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
			run, err = s.Engine.Pause(r.Context(), tenant, id, by)
		case engine.EventRunResumed:
			run, err = s.Engine.Resume(r.Context(), tenant, id, by)
		case engine.EventRunCancelled:
			run, err = s.Engine.Cancel(r.Context(), tenant, id, by)
		default:
			run, err = s.Engine.RetryTask(r.Context(), tenant, id, req.TaskID, by)
		}
		if err != nil {
			if errors.Is(err, engine.ErrNotFound) && req.TaskID != "" {
				if _, gerr := s.Engine.GetRunRow(r.Context(), tenant, id); gerr == nil {
					return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("run %q has no task %q", id, req.TaskID))
				}
			}
			return s.runNotFound(r, err, tenant, id)
		}
		writeJSON(w, http.StatusOK, wireRun(run))
		return nil
	}
}

func (s *Server) runMetrics(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	id := runIDOf(p)
	run, err := s.Engine.GetRunRow(r.Context(), tenant, id)
	if err != nil {
		return s.runNotFound(r, err, tenant, id)
	}
	plan, err := s.Engine.Plan(r.Context(), tenant, run.Workflow, run.Version)
	if err != nil {
		return err
	}
	events, err := s.Engine.RunEvents(r.Context(), tenant, id, 0, int(run.LastSeq))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wireRunMetrics(engine.ComputeRunMetrics(plan, events, time.Now())))
	return nil
}
