package wire

import (
	"encoding/json"
	"time"
)

// ScheduleSpec is what a schedule's owner sets: POST and PUT
// .../schedules. Durations are Go durations ("90s", "1m").
type ScheduleSpec struct {
	// Cron is 5 fields, 6 with seconds first, a descriptor (@daily) or
	// @every DURATION.
	Cron string `json:"cron"`
	// TimeZone is the IANA zone the cron is read in; default UTC.
	TimeZone string `json:"time_zone,omitempty"`
	// StartAt and EndAt bound the slots, inclusive.
	StartAt *time.Time `json:"start_at,omitempty"`
	EndAt   *time.Time `json:"end_at,omitempty"`
	// Jitter delays each slot by up to this much, derived from the
	// schedule id and the slot.
	Jitter string `json:"jitter,omitempty"`
	// Workflow is "name", "name@VERSION" or "name@ALIAS".
	Workflow string `json:"workflow"`
	// Input is the run's input; the strings ${schedule.time} and
	// ${schedule.id} in it are replaced.
	Input json.RawMessage `json:"input,omitempty"`
	// Overlap is skip (default), buffer_one, buffer_all, cancel_other or
	// allow_all.
	Overlap string `json:"overlap,omitempty"`
	// CatchupWindow is how late a slot may fire after downtime; default 1m.
	CatchupWindow string `json:"catchup_window,omitempty"`
}

// CreateScheduleRequest creates a schedule: POST .../schedules.
type CreateScheduleRequest struct {
	// ID names the schedule, [A-Za-z0-9_.-]{1,64}; generated when empty.
	ID string `json:"id,omitempty"`
	ScheduleSpec
}

// UpdateScheduleRequest replaces a schedule's spec: PUT
// .../schedules/{id}. Version is the one read: another is refused with 409.
type UpdateScheduleRequest struct {
	Version int64 `json:"version"`
	ScheduleSpec
}

// Schedule is a schedule as the API shows it.
type Schedule struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	ScheduleSpec
	// State is active, paused or deleted.
	State   string `json:"state"`
	Version int64  `json:"version"`
	// Cursor is the time up to which slots are decided.
	Cursor time.Time `json:"cursor"`
	// LastRunID is the run of the latest slot fired.
	LastRunID string `json:"last_run_id,omitempty"`
	// Buffered are slots waiting for the previous run to end.
	Buffered []time.Time `json:"buffered,omitempty"`
	// Slots by outcome.
	Fired     int64     `json:"fired"`
	Skipped   int64     `json:"skipped"`
	Missed    int64     `json:"missed"`
	Failed    int64     `json:"failed"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Next are the next fire times, with GET ...?next=N.
	Next []FireTime `json:"next,omitempty"`
}

// FireTime is a slot and when its run starts (the slot plus its jitter).
type FireTime struct {
	Slot time.Time `json:"slot"`
	At   time.Time `json:"at"`
}

// SchedulesPage is one page of GET .../schedules, by id.
type SchedulesPage struct {
	Schedules     []Schedule `json:"schedules"`
	NextPageToken string     `json:"next_page_token,omitempty"`
}

// ScheduleEvent is one entry of a schedule's hash-chained log.
type ScheduleEvent struct {
	Seq      int64           `json:"seq"`
	Type     string          `json:"type"`
	Actor    string          `json:"actor"`
	OnBehalf string          `json:"on_behalf,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	At       time.Time       `json:"at"`
	Hash     string          `json:"hash"`
}

// ScheduleEventsPage is one page of GET .../schedules/{id}/events.
type ScheduleEventsPage struct {
	Events []ScheduleEvent `json:"events"`
	// NextPageToken continues the list; empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// BackfillRequest fires every slot in [from, to]: POST
// .../schedules/{id}/backfill.
type BackfillRequest struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// BackfillSlot is one slot of a backfill and its run: Replayed when the
// slot had fired before.
type BackfillSlot struct {
	Slot     time.Time `json:"slot"`
	RunID    string    `json:"run_id,omitempty"`
	Replayed bool      `json:"replayed"`
}

// Backfill answers a backfill: every slot of the range, in order.
type Backfill struct {
	Slots []BackfillSlot `json:"slots"`
}
