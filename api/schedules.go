package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// Schedules: /api/v1/tenants/{tenantId}/schedules. The engine checks every
// field and records every change in the schedule's log with the caller.

const schedulesPath = "/api/v1/tenants/:tenantId/schedules"

func (s *Server) scheduleRoutes() []route {
	return []route{
		{"POST", schedulesPath, PermSchedulesWrite, "create", s.createSchedule, 0},
		{"GET", schedulesPath, PermSchedulesRead, "list", s.listSchedules, 0},
		{"GET", schedulesPath + "/:scheduleId", PermSchedulesRead, "get", s.getSchedule, 0},
		{"PUT", schedulesPath + "/:scheduleId", PermSchedulesWrite, "update", s.updateSchedule, 0},
		{"DELETE", schedulesPath + "/:scheduleId", PermSchedulesWrite, "delete", s.deleteSchedule, 0},
		{"POST", schedulesPath + "/:scheduleId/pause", PermSchedulesWrite, "pause", s.pauseSchedule(true), 0},
		{"POST", schedulesPath + "/:scheduleId/unpause", PermSchedulesWrite, "unpause", s.pauseSchedule(false), 0},
		{"POST", schedulesPath + "/:scheduleId/trigger", PermSchedulesWrite, "trigger", s.triggerSchedule, 0},
		{"POST", schedulesPath + "/:scheduleId/backfill", PermSchedulesWrite, "backfill", s.backfillSchedule, 0},
		{"GET", schedulesPath + "/:scheduleId/events", PermSchedulesRead, "history", s.scheduleEvents, 0},
	}
}

// scheduleOf returns the tenant and schedule id of a request.
func scheduleOf(p httprouter.Params) (string, string, error) {
	tenant, err := tenantOf(p)
	if err != nil {
		return "", "", err
	}
	id := p.ByName("scheduleId")
	if !definition.ValidName(id) {
		return "", "", fieldProblem("scheduleId", "must match [A-Za-z0-9_.-]{1,64}")
	}
	return tenant, id, nil
}

// scheduleProblem names the schedule in a 404 and answers a stale
// version with the stored one.
func scheduleProblem(err error, id string) error {
	var ve *engine.VersionError
	switch {
	case errors.As(err, &ve):
		return newProblem(http.StatusConflict, wire.CodeConflict, fmt.Sprintf("schedule %q is at version %d, not %d: read it again", id, ve.Have, ve.Want))
	case errors.Is(err, engine.ErrSchedulesUnavailable):
		return newProblem(http.StatusNotFound, wire.CodeNotFound, "this server keeps no schedules")
	case errors.Is(err, engine.ErrNotFound):
		return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("no schedule %q", id))
	}
	return err
}

// specOf turns a wire spec into the engine's, refusing durations that do
// not parse.
func specOf(w *wire.ScheduleSpec) (engine.ScheduleSpec, error) {
	spec := engine.ScheduleSpec{Cron: w.Cron, TimeZone: w.TimeZone, Workflow: w.Workflow, Input: w.Input,
		Overlap: engine.OverlapPolicy(w.Overlap)}
	if w.StartAt != nil {
		spec.StartAt = *w.StartAt
	}
	if w.EndAt != nil {
		spec.EndAt = *w.EndAt
	}
	for _, d := range []struct {
		field string
		src   string
		dst   *time.Duration
	}{{"jitter", w.Jitter, &spec.Jitter}, {"catchup_window", w.CatchupWindow, &spec.CatchupWindow}} {
		if d.src == "" {
			continue
		}
		v, err := time.ParseDuration(d.src)
		if err != nil {
			return spec, fieldProblem(d.field, fmt.Sprintf("must be a duration like \"30s\", not %q", d.src))
		}
		*d.dst = v
	}
	return spec, nil
}

func wireSchedule(s *engine.Schedule) wire.Schedule {
	sp := &s.Spec
	w := wire.Schedule{ID: s.ID, TenantID: s.TenantID, State: string(s.State), Version: s.Version, Cursor: s.Cursor,
		LastRunID: s.LastRunID, Buffered: s.Buffered, Fired: s.Fired, Skipped: s.Skipped, Missed: s.Missed,
		Failed: s.Failed, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
		ScheduleSpec: wire.ScheduleSpec{Cron: sp.Cron, TimeZone: sp.TimeZone, Workflow: sp.Workflow, Input: sp.Input,
			Overlap: string(sp.Overlap), CatchupWindow: sp.CatchupWindow.String()}}
	if !sp.StartAt.IsZero() {
		w.StartAt = &sp.StartAt
	}
	if !sp.EndAt.IsZero() {
		w.EndAt = &sp.EndAt
	}
	if sp.Jitter > 0 {
		w.Jitter = sp.Jitter.String()
	}
	return w
}

// createSchedule serves POST .../schedules: 201 with the schedule.
func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req wire.CreateScheduleRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	spec, err := specOf(&req.ScheduleSpec)
	if err != nil {
		return err
	}
	sc, err := s.Engine.CreateSchedule(r.Context(), CallerFrom(r.Context()), tenant, req.ID, spec)
	if errors.Is(err, engine.ErrConflict) {
		return newProblem(http.StatusConflict, wire.CodeConflict, fmt.Sprintf("the tenant has or had a schedule %q: choose another id", req.ID))
	}
	if err != nil {
		return scheduleProblem(err, req.ID)
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/tenants/%s/schedules/%s", tenant, sc.ID))
	writeJSON(w, http.StatusCreated, wireSchedule(sc))
	return nil
}

// listSchedules serves GET .../schedules: a page of schedules by id.
func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "limit", "page_token"); err != nil {
		return err
	}
	limit, err := intParam(q, "limit", 100, 1, engine.MaxPage)
	if err != nil {
		return err
	}
	f := engine.ScheduleFilter{TenantID: tenant, Limit: limit}
	if tok := q.Get("page_token"); tok != "" {
		t, err := decodeToken(tok)
		if err != nil {
			return err
		}
		f.After = t.ID
	}
	list, err := s.Engine.ListSchedules(r.Context(), f)
	if err != nil {
		return scheduleProblem(err, "")
	}
	page := wire.SchedulesPage{Schedules: make([]wire.Schedule, len(list))}
	for i := range list {
		page.Schedules[i] = wireSchedule(&list[i])
	}
	if len(list) == limit {
		page.NextPageToken = encodeToken(pageToken{ID: list[len(list)-1].ID})
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// getSchedule serves GET .../schedules/{id}, with ?next=N its next N fire
// times.
func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, id, err := scheduleOf(p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "next"); err != nil {
		return err
	}
	n, err := intParam(q, "next", 0, 0, engine.MaxNextFireTimes)
	if err != nil {
		return err
	}
	sc, err := s.Engine.GetSchedule(r.Context(), tenant, id)
	if err != nil {
		return scheduleProblem(err, id)
	}
	out := wireSchedule(sc)
	if n > 0 {
		next, err := s.Engine.NextFireTimes(r.Context(), tenant, id, n)
		if err != nil {
			return scheduleProblem(err, id)
		}
		out.Next = make([]wire.FireTime, len(next))
		for i, f := range next {
			out.Next[i] = wire.FireTime{Slot: f.Slot, At: f.At}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// updateSchedule serves PUT .../schedules/{id}: the whole spec, with the
// version read.
func (s *Server) updateSchedule(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, id, err := scheduleOf(p)
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req wire.UpdateScheduleRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if req.Version < 1 {
		return fieldProblem("version", "required: the version of the schedule you read")
	}
	spec, err := specOf(&req.ScheduleSpec)
	if err != nil {
		return err
	}
	sc, err := s.Engine.UpdateSchedule(r.Context(), CallerFrom(r.Context()), tenant, id, req.Version, spec)
	if err != nil {
		return scheduleProblem(err, id)
	}
	writeJSON(w, http.StatusOK, wireSchedule(sc))
	return nil
}

// deleteSchedule serves DELETE .../schedules/{id}: 204.
func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, id, err := scheduleOf(p)
	if err != nil {
		return err
	}
	if err := s.Engine.DeleteSchedule(r.Context(), CallerFrom(r.Context()), tenant, id); err != nil {
		return scheduleProblem(err, id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// pauseSchedule serves POST .../pause and .../unpause.
func (s *Server) pauseSchedule(pause bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
		tenant, id, err := scheduleOf(p)
		if err != nil {
			return err
		}
		op := s.Engine.UnpauseSchedule
		if pause {
			op = s.Engine.PauseSchedule
		}
		sc, err := op(r.Context(), CallerFrom(r.Context()), tenant, id)
		if err != nil {
			return scheduleProblem(err, id)
		}
		writeJSON(w, http.StatusOK, wireSchedule(sc))
		return nil
	}
}

// triggerSchedule serves POST .../trigger: a run now, 201; the same
// Idempotency-Key answers the same run.
func (s *Server) triggerSchedule(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, id, err := scheduleOf(p)
	if err != nil {
		return err
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > MaxIdempotencyKey || !utf8.ValidString(key) {
		return fieldProblem("Idempotency-Key", fmt.Sprintf("must be valid UTF-8 of at most %d characters", MaxIdempotencyKey))
	}
	run, replayed, err := s.Engine.TriggerSchedule(r.Context(), CallerFrom(r.Context()), tenant, id, key)
	if err != nil {
		return scheduleProblem(err, id)
	}
	return s.answerStarted(w, p, tenant, run, replayed)
}

// backfillSchedule serves POST .../backfill {from, to}.
func (s *Server) backfillSchedule(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, id, err := scheduleOf(p)
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req wire.BackfillRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	slots, err := s.Engine.BackfillSchedule(r.Context(), CallerFrom(r.Context()), tenant, id, req.From, req.To)
	if err != nil {
		return scheduleProblem(err, id)
	}
	out := wire.Backfill{Slots: make([]wire.BackfillSlot, len(slots))}
	for i, b := range slots {
		out.Slots[i] = wire.BackfillSlot{Slot: b.Slot, RunID: b.RunID, Replayed: b.Replayed}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// scheduleEvents serves GET .../schedules/{id}/events: the schedule's log
// (?type=schedule.slots_missed for its missed slots).
func (s *Server) scheduleEvents(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, id, err := scheduleOf(p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "limit", "page_token", "type"); err != nil {
		return err
	}
	limit, err := intParam(q, "limit", 100, 1, engine.MaxPage)
	if err != nil {
		return err
	}
	typ := engine.ScheduleEventType(q.Get("type"))
	if typ != "" && !slices.Contains(engine.ScheduleEventTypes(), typ) {
		return fieldProblem("type", fmt.Sprintf("unknown schedule event type %q, e.g. schedule.slots_missed", typ))
	}
	var after int64
	if tok := q.Get("page_token"); tok != "" {
		t, err := decodeToken(tok)
		if err != nil {
			return err
		}
		after = t.AfterID
	}
	evs, err := s.Engine.ScheduleEvents(r.Context(), tenant, id, after, typ, limit)
	if err != nil {
		return scheduleProblem(err, id)
	}
	page := wire.ScheduleEventsPage{Events: make([]wire.ScheduleEvent, len(evs))}
	for i, e := range evs {
		page.Events[i] = wire.ScheduleEvent{Seq: e.Seq, Type: string(e.Type), Actor: e.Actor, OnBehalf: e.OnBehalf,
			Data: e.Data, At: e.At, Hash: e.Hash}
	}
	if len(evs) == limit {
		page.NextPageToken = encodeToken(pageToken{AfterID: evs[len(evs)-1].Seq})
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}
