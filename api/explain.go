package api

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// explainRun answers why a run and each of its tasks that is not running
// waits, and whether it is stalled.
func (s *Server) explainRun(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	id := runIDOf(p)
	x, err := s.Engine.Explain(r.Context(), tenant, id)
	if err != nil {
		return runNotFound(err, id)
	}
	writeJSON(w, http.StatusOK, wireExplanation(x))
	return nil
}

func wireExplanation(x *engine.Explanation) wire.Explanation {
	out := wire.Explanation{Run: wire.ExplainedRun{ID: x.Run.ID, State: wire.RunState(x.Run.State), Reason: x.Run.Reason,
		Detail: x.Run.Detail}, Waiting: make([]wire.WaitingTask, len(x.Waiting)), Stalled: x.Stalled}
	for i, t := range x.Waiting {
		out.Waiting[i] = wire.WaitingTask{Task: t.Task, State: wire.TaskState(t.State), Reason: t.Reason, Detail: t.Detail,
			Since: t.Since, Until: t.Until}
		for _, d := range t.Dependencies {
			out.Waiting[i].Dependencies = append(out.Waiting[i].Dependencies, wire.Dependency{Task: d.Task, State: wire.TaskState(d.State)})
		}
	}
	return out
}
