package engine

import (
	"context"
	"fmt"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// VerifyRun checks one run of a tenant against its log: the events number
// 1..n and chain by hash, and folding them through the state machines gives
// exactly the stored run and task rows. It reads the store only; the engine
// need not be started. A difference is an error that names the row.
func VerifyRun(ctx context.Context, s Auditor, tenantID, runID string) error {
	return newVerifier(s).run(ctx, tenantID, runID)
}

// Verify checks every run of every tenant (VerifyRun) and calls bad for each
// that differs. It returns how many runs it checked; an error is a read that
// failed, not a run that differs.
func Verify(ctx context.Context, s Auditor, bad func(tenantID, runID string, err error)) (int, error) {
	v := newVerifier(s)
	n := 0
	err := s.EachRun(ctx, func(tenantID, runID string) error {
		n++
		if err := v.run(ctx, tenantID, runID); err != nil {
			bad(tenantID, runID, err)
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("verify: %w", err)
	}
	return n, nil
}

// verifier folds runs, compiling each definition version once.
type verifier struct {
	s     Auditor
	plans map[string]*definition.Plan // by planKey
}

func newVerifier(s Auditor) *verifier { return &verifier{s: s, plans: map[string]*definition.Plan{}} }

func (v *verifier) run(ctx context.Context, tenantID, runID string) error {
	run, tasks, err := v.s.LoadRun(ctx, tenantID, runID)
	if err != nil {
		return err
	}
	// Only the events the run row had seen: a commit landing between the two
	// reads must not look like a difference.
	events, err := v.s.RunEvents(ctx, tenantID, runID, 0, int(run.LastSeq))
	if err != nil {
		return err
	}
	if err := VerifyChain(events); err != nil {
		return fmt.Errorf("hash chain: %w", err)
	}
	plan, err := v.plan(ctx, run)
	if err != nil {
		return err
	}
	rv, err := Replay(plan, events)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if !EqualRun(&rv.Run, run) {
		return fmt.Errorf("run row differs from its events: stored %+v, replayed %+v", *run, rv.Run)
	}
	if len(tasks) != len(rv.Tasks) {
		return fmt.Errorf("%d task rows stored, %d replayed", len(tasks), len(rv.Tasks))
	}
	for i := range tasks {
		want := rv.Task(tasks[i].TaskID)
		if want == nil || !EqualTask(&tasks[i], want) {
			return fmt.Errorf("task %s row differs from its events: stored %+v, replayed %+v", tasks[i].TaskID, tasks[i], want)
		}
	}
	return nil
}

// plan compiles the definition version a run pinned.
func (v *verifier) plan(ctx context.Context, run *Run) (*definition.Plan, error) {
	k := planKey(run.TenantID, run.Workflow, run.Version)
	if p := v.plans[k]; p != nil {
		return p, nil
	}
	sd, err := v.s.GetDefinition(ctx, run.TenantID, run.Workflow, run.Version)
	if err != nil {
		return nil, err
	}
	p, err := CompileStored(sd.Definition)
	if err != nil {
		return nil, err
	}
	v.plans[k] = p
	return p, nil
}
