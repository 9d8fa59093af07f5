package store

import (
	"context"
	"fmt"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// VerifyRun checks one run against its log: the events chain and number
// 1..n, and folding them through the engine's state machines gives exactly the
// stored run and task rows.
func (db *DB) VerifyRun(ctx context.Context, runID string, plans map[string]*definition.Plan) error {
	run, tasks, err := db.LoadRun(ctx, runID)
	if err != nil {
		return err
	}
	// Only the events the run row had seen: a commit landing between the two
	// reads must not look like a difference.
	events, err := db.RunEvents(ctx, runID, 0, int(run.LastSeq))
	if err != nil {
		return err
	}
	if err := engine.VerifyChain(events); err != nil {
		return fmt.Errorf("hash chain: %w", err)
	}
	key := fmt.Sprintf("%s\x00%s\x00%d", run.TenantID, run.Workflow, run.Version)
	plan := plans[key]
	if plan == nil {
		sd, err := db.GetDefinition(ctx, run.TenantID, run.Workflow, run.Version)
		if err != nil {
			return err
		}
		def, problems := definition.ParseDefinition(sd.Definition)
		if len(problems) == 0 {
			plan, problems = definition.Compile(def, definition.ValidateOptions{})
		}
		if len(problems) > 0 {
			return &definition.ValidationError{Problems: problems}
		}
		if plans != nil {
			plans[key] = plan
		}
	}
	v, err := engine.Replay(plan, events)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if !engine.EqualRun(&v.Run, run) {
		return fmt.Errorf("run row differs from its events: stored %+v, replayed %+v", *run, v.Run)
	}
	if len(tasks) != len(v.Tasks) {
		return fmt.Errorf("%d task rows stored, %d replayed", len(tasks), len(v.Tasks))
	}
	for i := range tasks {
		want := v.Task(tasks[i].TaskID)
		if want == nil || !engine.EqualTask(&tasks[i], want) {
			return fmt.Errorf("task %s row differs from its events: stored %+v, replayed %+v", tasks[i].TaskID, tasks[i], want)
		}
	}
	return nil
}

// Verify checks every run (VerifyRun) and calls bad for each that fails.
// It returns how many runs it checked.
func (db *DB) Verify(ctx context.Context, bad func(runID string, err error)) (int, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id FROM runs ORDER BY id`)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("verify: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	plans := map[string]*definition.Plan{}
	for _, id := range ids {
		if err := db.VerifyRun(ctx, id, plans); err != nil {
			bad(id, err)
		}
	}
	return len(ids), nil
}
