package triggers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/orchestrator/orchestrator/engine"
)

// Sink is where a consumer hands its messages and reports its state. It is
// safe for concurrent use (a consumer may fire several messages at once).
type Sink struct {
	triggers *engine.Triggers
	trigger  *engine.Trigger
	log      *slog.Logger

	mu sync.Mutex // protects st
	st engine.TriggerStatus
}

// NewSink returns a sink that starts t's runs through ts: for consumers
// driven without a Manager (tests, tools).
func NewSink(ts *engine.Triggers, t *engine.Trigger, log *slog.Logger) *Sink {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sink{triggers: ts, trigger: t, log: log}
}

// Outcome is what a consumer does with a message once Fire returns.
type Outcome int

const (
	// Ack: the run is durable (started now, or by an earlier delivery of the
	// same message): acknowledge the message.
	Ack Outcome = iota
	// Reject: the message can never start a run (its payload is not JSON, a
	// template field is missing): the error is recorded; acknowledge it as
	// terminated so that it is not redelivered.
	Reject
	// Retry: the run could not be recorded now (the store cannot write, the
	// server is stopping): do not acknowledge; the message is redelivered.
	Retry
)

// Fire starts the run of msg and returns once it is durable, with what to
// do with the message.
func (s *Sink) Fire(ctx context.Context, msg *engine.TriggerMessage) (*engine.Run, Outcome, error) {
	run, replayed, err := s.triggers.Fire(ctx, s.trigger, msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Messages++
	var fe *engine.FieldError
	switch {
	case err == nil:
		if !replayed {
			s.st.RunsStarted++
		}
		return run, Ack, nil
	case errors.As(err, &fe):
		s.errorLocked(err)
		s.log.Warn("trigger message refused", logTenant, s.trigger.TenantID, logTrigger, s.trigger.Name, "ref", msg.Ref, logErr, err)
		return nil, Reject, err
	}
	s.errorLocked(err)
	return nil, Retry, err
}

// SetConnected records whether the consumer is connected.
func (s *Sink) SetConnected(c bool) {
	s.mu.Lock()
	s.st.Connected = c
	s.mu.Unlock()
}

// SetLag records how many messages wait to be consumed.
func (s *Sink) SetLag(n int64) {
	s.mu.Lock()
	s.st.Lag = n
	s.mu.Unlock()
}

// Error records a failure.
func (s *Sink) Error(err error) {
	s.mu.Lock()
	s.errorLocked(err)
	s.mu.Unlock()
}

func (s *Sink) errorLocked(err error) {
	s.st.Errors++
	s.st.LastError = err.Error()
	s.st.LastErrorAt = time.Now().UTC()
}

// Status returns what the sink recorded.
func (s *Sink) Status() engine.TriggerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}
