package engine

import (
	"fmt"
	"slices"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// OriginKind says what started a run other than a direct API call.
type OriginKind string

// Origin kinds.
const (
	OriginSchedule OriginKind = "schedule" // a slot of a schedule fired; Slot is its time
	OriginWebhook  OriginKind = "webhook"  // a verified webhook delivery; Ref is its delivery id
	OriginNATS     OriginKind = "nats"     // a NATS JetStream message; Ref is stream/sequence or Nats-Msg-Id
	OriginKafka    OriginKind = "kafka"    // a Kafka record; Ref is topic/partition/offset
)

// OriginKinds lists every origin kind.
func OriginKinds() []OriginKind {
	return []OriginKind{OriginSchedule, OriginWebhook, OriginNATS, OriginKafka}
}

// MaxOriginRef bounds Origin.Ref.
const MaxOriginRef = 512

// Origin is what started a run: a schedule's slot, a webhook delivery, a
// stream message. run.created records it, the run keeps it, and the runs
// list filters on its kind and id. A run started by a direct API call has
// none.
type Origin struct {
	Kind OriginKind `json:"kind"`
	ID   string     `json:"id"`            // the schedule, webhook or trigger name
	Slot time.Time  `json:"slot,omitzero"` // schedules: the slot's time
	Ref  string     `json:"ref,omitempty"` // the delivery, message or record it came from
}

// Validate reports an origin a run cannot record.
func (o *Origin) Validate() error {
	if !slices.Contains(OriginKinds(), o.Kind) {
		return fmt.Errorf("origin kind %q: must be one of %v", o.Kind, OriginKinds())
	}
	if !definition.ValidName(o.ID) {
		return fmt.Errorf("origin id %q: must match [A-Za-z0-9_.-]{1,64}", o.ID)
	}
	if len(o.Ref) > MaxOriginRef {
		return fmt.Errorf("origin ref: %d bytes, at most %d", len(o.Ref), MaxOriginRef)
	}
	return nil
}
