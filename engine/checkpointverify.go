package engine

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
)

// CheckpointMismatch is a way in which a log differs from a checkpoint that
// signed it, or a checkpoint is not what its signer wrote.
type CheckpointMismatch struct {
	TenantID string `json:"tenant_id"`
	Seq      int64  `json:"seq"`              // the checkpoint's
	RunID    string `json:"run_id,omitempty"` // the run whose history no longer matches; "" when no one run's
	Problem  string `json:"problem"`
}

func (m *CheckpointMismatch) String() string {
	where := fmt.Sprintf("tenant %s checkpoint %d", m.TenantID, m.Seq)
	if m.RunID != "" {
		return fmt.Sprintf("run %s (%s): %s", m.RunID, where, m.Problem)
	}
	return where + ": " + m.Problem
}

// CheckpointVerifier checks a log against checkpoints exported earlier, one
// at a time in the order they were appended (the order of an export). Each
// checkpoint must be signed by a trusted key, chain to the tenant's one
// before it, and match the log: the same last event (seq and hash) for
// every run that moved in its range of event ids, no run moved that it did
// not sign, and as many events and runs up to its head. A run rewritten
// with its hash chain and projections recomputed (which verify cannot see)
// has another hash at the first checkpoint after the rewritten event, and
// is named there. Changes after the last checkpoint are not seen. It is not
// safe for concurrent use.
type CheckpointVerifier struct {
	log     CheckpointLog
	trusted []ed25519.PublicKey
	tenants map[string]*Checkpoint // the last checkpoint checked, by tenant
	named   map[string]bool        // runs already reported
	checked int
	heads   int
}

// NewCheckpointVerifier returns a verifier of log. With no trusted keys,
// signatures are checked against the key each checkpoint names.
func NewCheckpointVerifier(log CheckpointLog, trusted []ed25519.PublicKey) *CheckpointVerifier {
	return &CheckpointVerifier{log: log, trusted: trusted, tenants: map[string]*Checkpoint{}, named: map[string]bool{}}
}

// Checked returns how many checkpoints, tenants and run heads Check has
// checked.
func (v *CheckpointVerifier) Checked() (checkpoints, tenants, heads int) {
	return v.checked, len(v.tenants), v.heads
}

// Check checks the next checkpoint and returns the differences it found,
// each run named once over all calls (at the first checkpoint it differs
// from). The error is a read that failed, not a difference.
func (v *CheckpointVerifier) Check(ctx context.Context, cp *Checkpoint) ([]CheckpointMismatch, error) {
	var out []CheckpointMismatch
	add := func(runID, format string, args ...any) {
		if runID != "" {
			if v.named[runID] {
				return
			}
			v.named[runID] = true
		}
		out = append(out, CheckpointMismatch{TenantID: cp.TenantID, Seq: cp.Seq, RunID: runID, Problem: fmt.Sprintf(format, args...)})
	}
	v.checked++
	if err := cp.CheckSignature(v.trusted); err != nil {
		add("", "%v", err) // its content cannot be trusted: compare nothing
		return out, nil
	}
	prev := v.tenants[cp.TenantID]
	var baseEvents, baseRuns int64
	switch {
	case prev != nil:
		if cp.Seq != prev.Seq+1 || cp.PrevDigest != prev.Digest || cp.FromEventID != prev.HeadEventID {
			add("", "does not follow checkpoint %d (a checkpoint between them is missing, or one was forged)", prev.Seq)
		}
		baseEvents, baseRuns = prev.Events, prev.Runs
	case cp.Seq == 1 && (cp.FromEventID != 0 || cp.PrevDigest != ""):
		add("", "is the tenant's first but does not start at the beginning of its log")
	case cp.FromEventID > 0:
		var err error
		if baseEvents, baseRuns, err = v.log.LogCount(ctx, cp.TenantID, cp.FromEventID); err != nil {
			return out, fmt.Errorf("verify checkpoints: %w", err)
		}
	}
	v.tenants[cp.TenantID] = cp

	slice, err := v.log.LogSlice(ctx, cp.TenantID, cp.FromEventID, cp.HeadEventID)
	if err != nil {
		return out, fmt.Errorf("verify checkpoints: %w", err)
	}
	v.heads += len(cp.Heads)
	signed, found := cp.Heads, slice.Heads
	for len(signed) > 0 || len(found) > 0 {
		switch {
		case len(found) == 0 || len(signed) > 0 && signed[0].RunID < found[0].RunID:
			add(signed[0].RunID, "signed with its last event seq %d (hash %s) up to event id %d, but the log holds no event of it in that range",
				signed[0].Seq, signed[0].Hash, cp.HeadEventID)
			signed = signed[1:]
		case len(signed) == 0 || found[0].RunID < signed[0].RunID:
			add(found[0].RunID, "has events in the log up to event id %d that the checkpoint did not sign (the last: seq %d)",
				cp.HeadEventID, found[0].Seq)
			found = found[1:]
		default:
			s, f := signed[0], found[0]
			if s.Seq != f.Seq || s.Hash != f.Hash {
				add(s.RunID, "history no longer matches: signed seq %d with hash %s up to event id %d, the log has seq %d with hash %s",
					s.Seq, s.Hash, cp.HeadEventID, f.Seq, f.Hash)
			}
			signed, found = signed[1:], found[1:]
		}
	}
	if events, runs := baseEvents+slice.Events, baseRuns+slice.NewRuns; events != cp.Events || runs != cp.Runs {
		add("", "signed %d events of %d runs up to event id %d, the log has %d events of %d runs", cp.Events, cp.Runs,
			cp.HeadEventID, events, runs)
	}

	stored, err := v.log.GetCheckpoint(ctx, cp.TenantID, cp.Seq)
	switch {
	case errors.Is(err, ErrNotFound):
		add("", "is missing from the database")
	case err != nil:
		return out, fmt.Errorf("verify checkpoints: %w", err)
	case stored.Digest != cp.Digest || stored.PublicKey != cp.PublicKey || stored.Signature != cp.Signature:
		add("", "differs in the database (digest %s signed by %s, exported: digest %s signed by %s)",
			stored.Digest, stored.PublicKey, cp.Digest, cp.PublicKey)
	}
	return out, nil
}
