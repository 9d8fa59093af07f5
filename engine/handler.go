package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// Attempt is one try of one task, as a handler sees it.
type Attempt struct {
	TenantID string
	RunID    string
	TaskID   string
	Type     string
	Attempt  int // 1 for the first try
	Input    json.RawMessage
	Config   json.RawMessage
	// IdempotencyKey is "run/task/attempt". Execution is at-least-once: after a
	// crash the same attempt's work may be done again under a new attempt
	// number, so handlers with side effects should key them on run and task.
	IdempotencyKey string
}

// Handler runs attempts of one task type in-process. Run must return when ctx
// is done (task timeout, run cancelled, engine stopping). A returned
// *TaskError keeps its code; any other error is recorded with code "error".
// The output must be JSON (nil means null).
type Handler interface {
	Run(ctx context.Context, a *Attempt) (json.RawMessage, error)
}

// ConfigValidator is implemented by handlers whose task config has a schema.
// RegisterDefinition calls it for every task of the handler's type, so a bad
// config is refused when the definition is registered rather than when the
// task runs. Problems name the field ("config.url") and leave Task empty.
type ConfigValidator interface {
	ValidateConfig(config json.RawMessage) []definition.Problem
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, a *Attempt) (json.RawMessage, error)

// Run calls f.
func (f HandlerFunc) Run(ctx context.Context, a *Attempt) (json.RawMessage, error) { return f(ctx, a) }

// noop returns its input: the built-in "noop" type.
func noop(_ context.Context, a *Attempt) (json.RawMessage, error) { return a.Input, nil }

// NewRunID returns a UUIDv7: time-ordered, so ids sort roughly by creation,
// with 74 random bits.
func NewRunID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	b[6] = 0x70 | b[6]&0x0f // version 7
	b[8] = 0x80 | b[8]&0x3f // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
