package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
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
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/store"
)

// The tenant-scoped API of seed 000: /api/v1/tenants/{tenantId}/... Every
// handler reads the tenant from the path and every query filters on it, so
// another tenant's ids are simply not found.

// MaxIdempotencyKey is the longest Idempotency-Key header accepted.
const MaxIdempotencyKey = 255

func (s *Server) executeWorkflow(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	actor, err := actorOf(r)
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
	hash := requestHash(req.Workflow, req.Version, req.Definition, req.Input)
	if key != "" {
		// Answer a repeat before anything is written: a refused request
		// must not have registered its inline definition.
		if runID, h, err := s.Store.FindIdempotencyKey(r.Context(), tenant, key); err == nil {
			if h != hash {
				return newProblem(http.StatusUnprocessableEntity, wire.CodeIdempotencyMismatch,
					"this Idempotency-Key was used for a different request; use a new key")
			}
			run, err := s.Store.GetRunRow(r.Context(), tenant, runID)
			if err != nil {
				return err
			}
			return s.answerStarted(w, p, tenant, run, true)
		} else if !errors.Is(err, engine.ErrNotFound) {
			return err
		}
	}
	workflow, version := req.Workflow, req.Version
	if hasDef {
		sd, _, err := s.Engine.RegisterDefinition(r.Context(), tenant, req.Definition)
		if err != nil {
			return err
		}
		workflow, version = sd.Name, sd.Version
	}
	start := engine.StartRequest{TenantID: tenant, Workflow: workflow, Version: version, Input: req.Input,
		Actor: actor, IdempotencyKey: key}
	if key != "" {
		start.RequestHash = hash
	}
	run, replayed, err := s.Engine.StartRunIdempotent(r.Context(), start)
	switch {
	case errors.Is(err, engine.ErrIdempotencyMismatch):
		return newProblem(http.StatusUnprocessableEntity, wire.CodeIdempotencyMismatch,
			"this Idempotency-Key was used for a different request; use a new key")
	case errors.Is(err, engine.ErrNotFound):
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

// pageToken is the opaque cursor of a list: base64url of JSON.
type pageToken struct {
	CreatedAt string `json:"c,omitempty"`
	ID        string `json:"i,omitempty"`
	AfterID   int64  `json:"e,omitempty"`
	At        string `json:"a,omitempty"` // with a time filter, events are ordered by (at, id)
}

func encodeToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (pageToken, error) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil {
		return t, fieldProblem("page_token", "is not a token this API gave out")
	}
	return t, nil
}

func timeParam(q map[string][]string, name string) (time.Time, error) {
	v := ""
	if vs := q[name]; len(vs) > 0 {
		v = vs[0]
	}
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fieldProblem(name, fmt.Sprintf("must be an RFC 3339 time like 2026-01-02T15:04:05Z, not %q", v))
	}
	return t, nil
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "limit", "page_token", "status", "workflow", "created_after", "created_before"); err != nil {
		return err
	}
	f := store.RunFilter{TenantID: tenant, Workflow: q.Get("workflow")}
	if f.Limit, err = intParam(q, "limit", 50, 1, store.MaxPage); err != nil {
		return err
	}
	if st := q.Get("status"); st != "" {
		if !validRunState(st) {
			return fieldProblem("status", fmt.Sprintf("must be one of %s, not %q", runStateList(), st))
		}
		f.State = engine.RunState(st)
	}
	if f.CreatedAfter, err = timeParam(q, "created_after"); err != nil {
		return err
	}
	if f.CreatedBefore, err = timeParam(q, "created_before"); err != nil {
		return err
	}
	if tok := q.Get("page_token"); tok != "" {
		t, err := decodeToken(tok)
		if err != nil || t.ID == "" {
			return fieldProblem("page_token", "is not a token this list gave out")
		}
		f.Cursor = &store.RunCursor{CreatedAt: t.CreatedAt, ID: t.ID}
	}
	runs, next, err := s.Store.ListRuns(r.Context(), f)
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
			next = &store.RunCursor{CreatedAt: engine.FormatTime(last.CreatedAt), ID: last.ID}
			break
		}
	}
	page := wire.RunsPage[json.RawMessage]{Runs: items.items}
	if next != nil {
		page.NextPageToken = encodeToken(pageToken{CreatedAt: next.CreatedAt, ID: next.ID})
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

func (s *Server) runMetrics(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	id := runIDOf(p)
	run, err := s.Store.GetRunRow(r.Context(), tenant, id)
	if err != nil {
		return runNotFound(err, id)
	}
	plan, err := s.Engine.Plan(r.Context(), tenant, run.Workflow, run.Version)
	if err != nil {
		return err
	}
	events, err := s.Store.RunEvents(r.Context(), id, 0, int(run.LastSeq))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wireRunMetrics(engine.ComputeRunMetrics(plan, events, time.Now())))
	return nil
}

// tenantEvents answers audit questions across runs: filters type, run,
// task_id, actor, since, until; cursor pagination; with Accept:
// application/x-ndjson every matching event is streamed, one per line.
func (s *Server) tenantEvents(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "type", "run", "task_id", "actor", "since", "until", "limit", "page_token"); err != nil {
		return err
	}
	typ, err := eventTypeParam(q)
	if err != nil {
		return err
	}
	f := store.EventFilter{TenantID: tenant, RunID: q.Get("run"), TaskID: q.Get("task_id"), Type: typ, Actor: q.Get("actor")}
	if f.Since, err = timeParam(q, "since"); err != nil {
		return err
	}
	if f.Until, err = timeParam(q, "until"); err != nil {
		return err
	}
	if tok := q.Get("page_token"); tok != "" {
		t, err := decodeToken(tok)
		if err != nil || t.AfterID <= 0 {
			return fieldProblem("page_token", "is not a token this list gave out")
		}
		f.AfterID, f.AfterAt = t.AfterID, t.At
		if f.Timed() && t.At == "" {
			return fieldProblem("page_token", "belongs to a query without since/until")
		}
	}
	if strings.Contains(r.Header.Get("Accept"), "application/x-ndjson") {
		if q.Get("limit") != "" {
			if f.Limit, err = intParam(q, "limit", 0, 1, 1<<40); err != nil {
				return err
			}
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		rc := http.NewResponseController(w)
		n := 0
		s.extendWrite(w, 0) // an export may take longer than one answer: each batch gets WriteTimeout
		err := s.Store.StreamEvents(r.Context(), f, func(e *engine.Event) error {
			if err := enc.Encode(wireEvent(e)); err != nil {
				return err
			}
			if n++; n%500 == 0 {
				rc.Flush()
				s.extendWrite(w, 0)
			}
			return nil
		})
		if err != nil && n > 0 {
			// The answer has begun: a problem document would corrupt the
			// stream. The client sees it cut short.
			s.Logger.Error("event stream broke off", "tenant_id", tenant, "sent", n, "err", err)
			return nil
		}
		return err
	}
	limit, err := intParam(q, "limit", 100, 1, store.MaxPage)
	if err != nil {
		return err
	}
	f.Limit = limit + 1
	items, last, more, err := s.eventPage(r, f, limit)
	if err != nil {
		return err
	}
	page := wire.TenantEventsPage[json.RawMessage]{Events: items}
	if more {
		page.NextPageToken = encodeToken(pageToken{AfterID: last.ID, At: engine.FormatTime(last.At)})
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// eventPage reads up to limit events of f (whose Limit is one more) within
// the page's byte bound: the encoded events, the last of them, and whether
// more follow. It reads no further than the page needs.
func (s *Server) eventPage(r *http.Request, f store.EventFilter, limit int) ([]json.RawMessage, engine.Event, bool, error) {
	items := s.newPage()
	var last engine.Event
	more := false
	err := s.Store.StreamEvents(r.Context(), f, func(e *engine.Event) error {
		if len(items.items) == limit {
			more = true
			return errPageFull
		}
		ok, err := items.add(wireEvent(e))
		if err != nil {
			return err
		}
		if !ok {
			more = true
			return errPageFull
		}
		last = *e
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return nil, last, false, err
	}
	return items.items, last, more, nil
}

// validateDAG validates a definition (the body, or its "definition" field)
// without storing it: 200 with the verdict for any well-formed JSON.
func (s *Server) validateDAG(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	if err := validJSON(body); err != nil {
		return err
	}
	var wrapper map[string]json.RawMessage
	if json.Unmarshal(body, &wrapper) == nil && len(wrapper) == 1 && wrapper["definition"] != nil {
		body = wrapper["definition"]
	}
	_, plan, problems := definition.CompileJSON(body, s.Engine.ValidateOptions())
	out := wire.Validation{Valid: len(problems) == 0, Errors: wireFieldErrors(problems), Levels: [][]string{}}
	if plan != nil {
		out.Levels = plan.Levels
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// registerDefinition serves POST /v1/workflows (tenant default) and
// POST .../definitions.
func (s *Server) registerDefinition(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	if err := validJSON(body); err != nil {
		return err
	}
	sd, created, err := s.Engine.RegisterDefinition(r.Context(), tenant, body)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created { // Location names a new resource only
		status = http.StatusCreated
		if p.ByName("tenantId") == "" {
			w.Header().Set("Location", fmt.Sprintf("/v1/workflows?name=%s&version=%d", url.QueryEscape(sd.Name), sd.Version))
		} else {
			w.Header().Set("Location", fmt.Sprintf("/api/v1/tenants/%s/definitions/%s/versions/%d", tenant, sd.Name, sd.Version))
		}
	}
	writeJSON(w, status, wire.Registration{DefinitionVersion: wireDefinition(sd), Created: created})
	return nil
}

func (s *Server) listDefinitions(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	defs, err := s.Store.ListDefinitions(r.Context(), tenant)
	if err != nil {
		return err
	}
	page := wire.DefinitionsPage{Definitions: []wire.DefinitionVersion{}}
	for _, d := range defs {
		page.Definitions = append(page.Definitions, wire.DefinitionVersion{Name: d.Name, Version: d.Version, Hash: d.Hash, CreatedAt: d.CreatedAt})
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) getDefinitionVersion(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	name := p.ByName("name")
	v := p.ByName("version")
	version, err := strconv.Atoi(v)
	if err != nil || version < 1 {
		if v != "latest" {
			return fieldProblem("version", fmt.Sprintf("must be a positive integer or \"latest\", not %q", v))
		}
		version = 0
	}
	sd, err := s.Store.GetDefinition(r.Context(), tenant, name, version)
	if errors.Is(err, engine.ErrNotFound) {
		return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("definition %q version %s does not exist", name, v))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wireDefinition(sd))
	return nil
}
