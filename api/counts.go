package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// countRoutes serve a tenant's runs counted by state, for the runs list's
// totals (a page holds at most 1,000 runs; a tenant may have millions).
func (s *Server) countRoutes() []route {
	return []route{
		{"GET", "/api/v1/tenants/:tenantId/run-counts", PermRunsRead, "count", s.countRuns, 0},
	}
}

// runFilterOf reads the filters the runs list and the counts share:
// workflow, origin_kind and origin_id, created_after and created_before.
func runFilterOf(q url.Values, tenant string) (engine.RunFilter, error) {
	f := engine.RunFilter{TenantID: tenant, Workflow: q.Get("workflow"), OriginID: q.Get("origin_id")}
	if k := q.Get("origin_kind"); k != "" {
		if !slices.Contains(engine.OriginKinds(), engine.OriginKind(k)) {
			return f, fieldProblem("origin_kind", fmt.Sprintf("must be one of %v, not %q", engine.OriginKinds(), k))
		}
		f.OriginKind = engine.OriginKind(k)
	} else if f.OriginID != "" {
		return f, fieldProblem("origin_id", "needs origin_kind")
	}
	var err error
	if f.CreatedAfter, err = timeParam(q, "created_after"); err != nil {
		return f, err
	}
	if f.CreatedBefore, err = timeParam(q, "created_before"); err != nil {
		return f, err
	}
	return f, nil
}

// countRuns serves GET .../run-counts: the runs the list's filters (status
// aside) select, counted by state, every state present.
func (s *Server) countRuns(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "workflow", "created_after", "created_before", "origin_kind", "origin_id"); err != nil {
		return err
	}
	f, err := runFilterOf(q, tenant)
	if err != nil {
		return err
	}
	counts, err := s.Engine.CountRuns(r.Context(), f)
	if err != nil {
		return err
	}
	out := wire.RunCounts{Counts: make(map[wire.RunState]int, len(counts))}
	for st, n := range counts {
		out.Counts[wire.RunState(st)] = n
		out.Total += n
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
