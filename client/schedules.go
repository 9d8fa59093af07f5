package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
)

// Schedules: /api/v1/tenants/{tenantId}/schedules of the client's tenant.
// Errors: 400 naming a bad field (nothing is written), 404 an unknown
// schedule, 409 a stale version or a state that refuses the change.

// CreateSchedule creates a schedule and returns it.
func (c *OrchestratorClient) CreateSchedule(ctx context.Context, req wire.CreateScheduleRequest) (*wire.Schedule, error) {
	var s wire.Schedule
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: c.tenantPath("schedules")}, req, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListSchedules returns one page of the tenant's schedules, by id.
func (c *OrchestratorClient) ListSchedules(ctx context.Context, limit int, pageToken string) (*wire.SchedulesPage, error) {
	q := url.Values{}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	var page wire.SchedulesPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("schedules"), query: q}, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// GetSchedule returns a schedule, with its next n fire times when n > 0.
func (c *OrchestratorClient) GetSchedule(ctx context.Context, id string, next int) (*wire.Schedule, error) {
	q := url.Values{}
	if next > 0 {
		q.Set("next", strconv.Itoa(next))
	}
	var s wire.Schedule
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("schedules", seg(id)), query: q}, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// UpdateSchedule replaces a schedule's spec; req.Version is the version read.
func (c *OrchestratorClient) UpdateSchedule(ctx context.Context, id string, req wire.UpdateScheduleRequest) (*wire.Schedule, error) {
	var s wire.Schedule
	if _, err := c.doJSON(ctx, call{method: http.MethodPut, path: c.tenantPath("schedules", seg(id))}, req, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// DeleteSchedule deletes a schedule.
func (c *OrchestratorClient) DeleteSchedule(ctx context.Context, id string) error {
	_, err := c.doJSON(ctx, call{method: http.MethodDelete, path: c.tenantPath("schedules", seg(id))}, nil, nil)
	return err
}

// PauseSchedule pauses a schedule.
func (c *OrchestratorClient) PauseSchedule(ctx context.Context, id string) (*wire.Schedule, error) {
	return c.scheduleVerb(ctx, id, "pause")
}

// UnpauseSchedule unpauses a schedule.
func (c *OrchestratorClient) UnpauseSchedule(ctx context.Context, id string) (*wire.Schedule, error) {
	return c.scheduleVerb(ctx, id, "unpause")
}

func (c *OrchestratorClient) scheduleVerb(ctx context.Context, id, verb string) (*wire.Schedule, error) {
	var s wire.Schedule
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: c.tenantPath("schedules", seg(id), verb)}, struct{}{}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// TriggerSchedule starts a run of a schedule now; the same idempotencyKey
// answers the same run (Replayed).
func (c *OrchestratorClient) TriggerSchedule(ctx context.Context, id, idempotencyKey string) (*Execution, error) {
	cl := call{method: http.MethodPost, path: c.tenantPath("schedules", seg(id), "trigger")}
	if idempotencyKey != "" {
		cl.header = http.Header{"Idempotency-Key": {idempotencyKey}}
	}
	var ex Execution
	res, err := c.doJSON(ctx, cl, struct{}{}, &ex)
	if err != nil {
		return nil, err
	}
	ex.Replayed = res.Header.Get("Idempotent-Replayed") == "true"
	ex.Location = res.Header.Get("Location")
	return &ex, nil
}

// BackfillSchedule fires every slot of a schedule in [from, to] that has
// not fired.
func (c *OrchestratorClient) BackfillSchedule(ctx context.Context, id string, from, to time.Time) (*wire.Backfill, error) {
	var b wire.Backfill
	cl := call{method: http.MethodPost, path: c.tenantPath("schedules", seg(id), "backfill")}
	if _, err := c.doJSON(ctx, cl, wire.BackfillRequest{From: from, To: to}, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// ScheduleEvents returns one page of a schedule's log, only events of typ
// unless it is "".
func (c *OrchestratorClient) ScheduleEvents(ctx context.Context, id, typ string, limit int, pageToken string) (*wire.ScheduleEventsPage, error) {
	q := url.Values{}
	if typ != "" {
		q.Set("type", typ)
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	var page wire.ScheduleEventsPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("schedules", seg(id), "events"), query: q}, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}
