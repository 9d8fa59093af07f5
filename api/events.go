package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// Events: a run's history and the tenant-wide audit query, paginated or
// streamed as NDJSON.

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
	limit, err := intParam(q, "limit", 1000, 1, engine.MaxPage)
	if err != nil {
		return err
	}
	verify := q.Get("verify")
	if verify != "" && verify != "true" && verify != "false" {
		return fieldProblem("verify", "must be true or false")
	}
	if _, err := s.Engine.GetRunRow(r.Context(), tenant, id); err != nil {
		return s.runNotFound(r, err, tenant, id)
	}
	typ, err := eventTypeParam(q)
	if err != nil {
		return err
	}
	items, last, more, err := s.eventPage(r, engine.EventFilter{TenantID: tenant, RunID: id, TaskID: q.Get("task_id"),
		Type: typ, AfterSeq: int64(after), Limit: limit + 1}, limit)
	if err != nil {
		return err
	}
	page := wire.RunEventsPage[json.RawMessage]{RunID: id, Events: items}
	if more {
		page.NextAfter = last.Seq
	}
	if verify == "true" {
		all, err := s.Engine.RunEvents(r.Context(), tenant, id, 0, 0)
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

// tenantEvents answers audit questions across runs: filters type, run,
// task_id, actor, on_behalf, since, until; cursor pagination; with Accept:
// application/x-ndjson every matching event is streamed, one per line.
func (s *Server) tenantEvents(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "type", "run", "task_id", "actor", "on_behalf", "since", "until", "limit", "page_token"); err != nil {
		return err
	}
	typ, err := eventTypeParam(q)
	if err != nil {
		return err
	}
	f := engine.EventFilter{TenantID: tenant, RunID: q.Get("run"), TaskID: q.Get("task_id"), Type: typ, Actor: q.Get("actor"),
		OnBehalf: q.Get("on_behalf")}
	if f.Since, err = timeParam(q, "since"); err != nil {
		return err
	}
	if f.Until, err = timeParam(q, "until"); err != nil {
		return err
	}
	if tok := q.Get("page_token"); tok != "" {
		t, err := decodeToken(tok)
		at, terr := engine.ParseTime(t.At)
		if err != nil || terr != nil || t.AfterID <= 0 {
			return fieldProblem("page_token", "is not a token this list gave out")
		}
		f.After = &engine.EventCursor{ID: t.AfterID, At: at}
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
		return s.streamNDJSON(w, "event stream of tenant "+tenant, 500, func(emit func(any) error) error {
			return s.Engine.StreamEvents(r.Context(), f, func(e *engine.Event) error { return emit(wireEvent(e)) })
		})
	}
	limit, err := intParam(q, "limit", 100, 1, engine.MaxPage)
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
func (s *Server) eventPage(r *http.Request, f engine.EventFilter, limit int) ([]json.RawMessage, engine.Event, bool, error) {
	items := s.newPage()
	var last engine.Event
	more := false
	err := s.Engine.StreamEvents(r.Context(), f, func(e *engine.Event) error {
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
