package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones in a binary that runs where the system has none (a scratch container)

	"github.com/robfig/cron/v3"

	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// cronParser reads 5 fields, 6 with seconds first, and descriptors
// (@daily, @every 90s).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// The times a schedule may bound its slots with.
var (
	minSlotTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxSlotTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// slotSpec is a spec ready to compute slots: the parsed cron and zone.
type slotSpec struct {
	spec  ScheduleSpec
	cron  cron.Schedule
	loc   *time.Location
	every time.Duration // @every: slots are multiples of it since the Unix epoch, not wall-clock times
}

// compileSpec checks every field of a spec but the workflow (which needs
// the store: checkWorkflow) and returns it with its defaults filled.
// Errors: *FieldError naming the first bad field.
func compileSpec(spec ScheduleSpec) (*slotSpec, error) {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	c := strings.TrimSpace(spec.Cron)
	switch {
	case c == "":
		return nil, bad("cron", "is required")
	case len(c) > MaxCronLength:
		return nil, bad("cron", "%d bytes, at most %d", len(c), MaxCronLength)
	case strings.Contains(c, "TZ="):
		return nil, bad("cron", "set the zone in time_zone, not in the expression")
	}
	sched, err := cronParser.Parse(c)
	if err != nil {
		return nil, bad("cron", "%q is not a cron expression (5 fields, 6 with seconds, @daily or @every 90s): %v", c, err)
	}
	spec.Cron = c
	if spec.TimeZone == "" {
		spec.TimeZone = "UTC"
	}
	loc, err := time.LoadLocation(spec.TimeZone)
	if err != nil || spec.TimeZone == "Local" {
		return nil, bad("time_zone", "%q is not an IANA time zone (e.g. Europe/Paris, America/New_York, UTC)", spec.TimeZone)
	}
	for _, b := range []struct {
		field string
		t     time.Time
	}{{"start_at", spec.StartAt}, {"end_at", spec.EndAt}} {
		if !b.t.IsZero() && (b.t.Before(minSlotTime) || b.t.After(maxSlotTime)) {
			return nil, bad(b.field, "%s out of range %d..%d", FormatTime(b.t), minSlotTime.Year(), maxSlotTime.Year())
		}
	}
	if !spec.StartAt.IsZero() && !spec.EndAt.IsZero() && !spec.EndAt.After(spec.StartAt) {
		return nil, bad("end_at", "%s is not after start_at %s", FormatTime(spec.EndAt), FormatTime(spec.StartAt))
	}
	spec.StartAt, spec.EndAt = spec.StartAt.UTC().Truncate(time.Microsecond), spec.EndAt.UTC().Truncate(time.Microsecond)
	if spec.Jitter < 0 || spec.Jitter > MaxJitter {
		return nil, bad("jitter", "%s out of range 0..%s", spec.Jitter, MaxJitter)
	}
	if spec.Overlap == "" {
		spec.Overlap = OverlapSkip
	}
	if !slices.Contains(OverlapPolicies(), spec.Overlap) {
		return nil, bad("overlap", "%q is not an overlap policy: one of %v", spec.Overlap, OverlapPolicies())
	}
	if spec.CatchupWindow == 0 {
		spec.CatchupWindow = DefaultCatchupWindow
	}
	if spec.CatchupWindow < 0 || spec.CatchupWindow > MaxCatchupWindow {
		return nil, bad("catchup_window", "%s out of range 0..%s", spec.CatchupWindow, MaxCatchupWindow)
	}
	if _, err := ParseWorkflowRef("workflow", spec.Workflow); err != nil {
		return nil, err
	}
	if err := checkScheduleInput(spec.Input); err != nil {
		return nil, bad("input", "%v", err)
	}
	if isNullJSON(spec.Input) {
		spec.Input = nil
	}
	var every time.Duration
	if d, ok := sched.(cron.ConstantDelaySchedule); ok {
		every = d.Delay
	}
	return &slotSpec{spec: spec, cron: sched, loc: loc, every: every}, nil
}

// next returns the first slot after t, or the zero time when there is
// none (past EndAt). Wall-clock schedules fire each wall-clock time at most
// once: when a DST change repeats an hour, its slots are not taken again.
func (s *slotSpec) next(t time.Time) time.Time {
	if !s.spec.StartAt.IsZero() && t.Before(s.spec.StartAt) {
		t = s.spec.StartAt.Add(-time.Nanosecond)
	}
	if s.every > 0 {
		// Intervals count from the Unix epoch, so that every slot is the
		// same whatever the cursor: after an unpause, in a backfill. A
		// slot past maxSlotTime is none: its nanoseconds would soon
		// overflow, and the slots after it go back in time.
		n := t.UnixNano()/int64(s.every) + 1
		if n > maxSlotTime.UnixNano()/int64(s.every) {
			return time.Time{}
		}
		c := time.Unix(0, n*int64(s.every)).UTC()
		if !s.spec.EndAt.IsZero() && c.After(s.spec.EndAt) {
			return time.Time{}
		}
		return c
	}
	c := s.cron.Next(t.In(s.loc))
	after := wall(t.In(s.loc))
	for i := 0; !c.IsZero() && !wall(c).After(after) && i < maxRepeatedSlots; i++ {
		c = s.cron.Next(c)
	}
	if c.IsZero() || c.After(maxSlotTime) || (!s.spec.EndAt.IsZero() && c.After(s.spec.EndAt)) {
		return time.Time{}
	}
	return c.UTC()
}

// maxRepeatedSlots bounds the slots next passes over in an hour a DST
// change repeats (a cron of every second has 3600).
const maxRepeatedSlots = 4000

// wall is t's wall-clock reading as if it were UTC: comparable across a
// change of offset.
func wall(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// jitter is the delay of a slot: derived from the schedule id and the
// slot alone, so every process and every replay computes the same. It is
// under the time to the next slot too: slots are decided in order, so a
// slot delayed past the next would hold that one back until it was older
// than the catch-up window, and it would be recorded as missed.
func (s *slotSpec) jitter(id string, slot time.Time) time.Duration {
	bound := s.spec.Jitter
	if bound <= 0 {
		return 0
	}
	if n := s.next(slot); !n.IsZero() && n.Sub(slot) < bound {
		bound = n.Sub(slot)
	}
	sum := sha256.Sum256([]byte(id + "|" + FormatTime(slot)))
	return time.Duration(binary.BigEndian.Uint64(sum[:8]) % uint64(bound))
}

// fireAt is when a slot's run starts: the slot plus its jitter.
func (s *slotSpec) fireAt(id string, slot time.Time) time.Time {
	return slot.Add(s.jitter(id, slot)).Truncate(time.Microsecond)
}

// scheduleRef matches ${schedule.FIELD}.
var scheduleRef = regexp.MustCompile(`\$\{\s*schedule\.([^}]*)\}`)

// checkScheduleInput reports an input template that is not JSON, too large
// or too deep, or that names a schedule field that does not exist.
func checkScheduleInput(in json.RawMessage) error {
	if len(in) == 0 {
		return nil
	}
	if len(in) > MaxScheduleInput {
		return fmt.Errorf("%d bytes, at most %d", len(in), MaxScheduleInput)
	}
	if !json.Valid(in) {
		return errors.New("must be valid JSON")
	}
	if err := strictjson.CheckDepth(in); err != nil {
		return err
	}
	for _, m := range scheduleRef.FindAllSubmatch(in, -1) {
		if f := strings.TrimSpace(string(m[1])); f != "time" && f != "id" {
			return fmt.Errorf("${schedule.%s}: no such field; use ${schedule.time} or ${schedule.id}", f)
		}
	}
	return nil
}

// renderScheduleInput replaces ${schedule.time} and ${schedule.id} in
// every string of the input template.
func renderScheduleInput(in json.RawMessage, id string, slot time.Time) (json.RawMessage, error) {
	if len(in) == 0 || !bytes.Contains(in, []byte("${")) {
		return in, nil
	}
	doc, err := decodeNumbers(in)
	if err != nil {
		return nil, err
	}
	ts := slot.UTC().Format(time.RFC3339Nano)
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			return scheduleRef.ReplaceAllStringFunc(x, func(m string) string {
				if strings.TrimSpace(scheduleRef.FindStringSubmatch(m)[1]) == "id" {
					return id
				}
				return ts
			})
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = walk(x[k])
			}
		}
		return v
	}
	return json.Marshal(walk(doc))
}

// resolveWorkflowRef turns a schedule's workflow reference into what a
// slot's run starts: the definition's name and version (0 = the latest),
// or name@alias as given, which the start resolves itself (StartRun), by
// the run's id or the alias's sticky key over the rendered input. It is
// the one place schedules resolve references. Errors: ErrNotFound for a
// name or version not stored.
func (e *Engine) resolveWorkflowRef(ctx context.Context, tenantID, ref string) (name string, version int, err error) {
	r, err := ParseWorkflowRef("workflow", ref)
	if err != nil {
		return "", 0, err
	}
	if r.Alias != "" {
		return ref, 0, nil
	}
	if _, err := e.store.GetDefinition(ctx, tenantID, r.Name, r.Version); err != nil {
		return "", 0, fmt.Errorf("workflow %q: %w", ref, err)
	}
	return r.Name, r.Version, nil
}

// checkWorkflow reports a reference a schedule cannot start: a definition
// name or version not stored. An alias is kept as given once its name is
// stored: it is resolved when each slot fires.
func (e *Engine) checkWorkflow(ctx context.Context, tenantID, ref string) error {
	r, err := ParseWorkflowRef("workflow", ref)
	if err != nil {
		return err
	}
	name, version := r.Name, r.Version
	if _, err := e.store.GetDefinition(ctx, tenantID, name, version); errors.Is(err, ErrNotFound) {
		if version > 0 {
			return &FieldError{Field: "workflow", Reason: fmt.Sprintf("%q: the tenant has no version %d of %s", ref, version, name)}
		}
		return &FieldError{Field: "workflow", Reason: fmt.Sprintf("%q: the tenant has no definition %s", ref, name)}
	} else if err != nil {
		return err
	}
	return nil
}
