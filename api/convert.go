package api

import (
	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// The engine's values in their wire form. The engine's types are the
// domain's and may grow fields the API does not show; these functions say
// what it shows. TestWireConversions holds each to every field the engine's
// type encodes.

func wireRun(r *engine.Run) wire.Run {
	return wire.Run{ID: r.ID, TenantID: r.TenantID, Workflow: r.Workflow, Version: r.Version, State: wire.RunState(r.State),
		Input: r.Input, Output: r.Output, Error: wireTaskError(r.Error), CreatedAt: r.CreatedAt, StartedAt: r.StartedAt,
		EndedAt: r.EndedAt, Deadline: r.Deadline, UpdatedAt: r.UpdatedAt, LastSeq: r.LastSeq, DataBytes: r.DataBytes,
		Origin: wireOrigin(r.Origin), Alias: r.Alias, ConcurrencyKey: r.ConcurrencyKey}
}

func wireOrigin(o *engine.Origin) *wire.Origin {
	if o == nil {
		return nil
	}
	return &wire.Origin{Kind: string(o.Kind), ID: o.ID, Slot: o.Slot, Ref: o.Ref}
}

func wireTaskError(e *engine.TaskError) *wire.TaskError {
	if e == nil {
		return nil
	}
	return &wire.TaskError{Code: e.Code, Message: e.Message}
}

func wireTask(t *engine.Task) wire.Task {
	return wire.Task{TaskID: t.TaskID, Type: t.Type, State: wire.TaskState(t.State), Attempt: t.Attempt, ReadyAt: t.ReadyAt,
		NotBefore: t.NotBefore, StartedAt: t.StartedAt, EndedAt: t.EndedAt, WakeAt: t.WakeAt, Error: wireTaskError(t.Error),
		Output: t.Output, Input: t.Input, WorkerID: t.WorkerID, LeaseExpiresAt: t.LeaseExpiresAt}
}

func wireEvent(e *engine.Event) wire.Event {
	return wire.Event{ID: e.ID, TenantID: e.TenantID, RunID: e.RunID, Seq: e.Seq, Type: wire.EventType(e.Type), TaskID: e.TaskID,
		Attempt: e.Attempt, Actor: e.Actor, OnBehalf: e.OnBehalf, Data: e.Data, At: e.At, Hash: e.Hash}
}

func wireLease(l *engine.Lease) wire.Lease {
	return wire.Lease{ID: l.ID, TenantID: l.TenantID, RunID: l.RunID, TaskID: l.TaskID, Type: l.Type, Attempt: l.Attempt,
		Input: l.Input, Config: l.Config, Token: l.Token, ExpiresAt: l.ExpiresAt}
}

func wireRunMetrics(m *engine.RunMetrics) wire.RunMetrics {
	out := wire.RunMetrics{RunID: m.RunID, State: wire.RunState(m.State), DurationMS: m.DurationMS, Attempts: m.Attempts,
		QueueWaitMS: m.QueueWaitMS, CriticalPath: m.CriticalPath, CriticalPathMS: m.CriticalPathMS}
	if m.Tasks != nil {
		out.Tasks = make([]wire.TaskMetrics, len(m.Tasks))
	}
	for i, t := range m.Tasks {
		out.Tasks[i] = wire.TaskMetrics{TaskID: t.TaskID, State: wire.TaskState(t.State), Attempts: t.Attempts,
			DurationMS: t.DurationMS, QueueWaitMS: t.QueueWaitMS, ReadyAt: t.ReadyAt, StartedAt: t.StartedAt, EndedAt: t.EndedAt}
	}
	return out
}

func wireDefinition(sd *engine.StoredDefinition) wire.DefinitionVersion {
	out := wire.DefinitionVersion{Name: sd.Name, Version: sd.Version, Hash: sd.Hash, CreatedAt: sd.CreatedAt, Definition: sd.Definition,
		CreatedBy: sd.CreatedBy, OnBehalf: sd.OnBehalf}
	if p := sd.Policy; p != nil {
		out.Policy = &wire.PolicyDecision{ID: p.ID, Allow: p.Allow, Reason: p.Reason, PolicyHash: p.PolicyHash}
	}
	return out
}

// wireDefinitionSummaries is a list of definition versions without their
// JSON, as the lists show them; never nil.
func wireDefinitionSummaries(ds []engine.StoredDefinition) []wire.DefinitionVersion {
	out := make([]wire.DefinitionVersion, len(ds))
	for i, d := range ds {
		out[i] = wire.DefinitionVersion{Name: d.Name, Version: d.Version, Hash: d.Hash, CreatedAt: d.CreatedAt}
	}
	return out
}

// wireFieldErrors is the wire form of a definition's problems; never nil.
func wireFieldErrors(ps []definition.Problem) []wire.FieldError {
	out := make([]wire.FieldError, len(ps))
	for i, p := range ps {
		out[i] = wire.FieldError{Task: p.Task, Field: p.Field, Message: p.Message}
	}
	return out
}
