package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// Versions and aliases of a definition name: the versions with their
// hashes, the diff of two, and the aliases a start names as "name@alias".

// aliasRoutes are the routes of versions, diffs and aliases.
func (s *Server) aliasRoutes() []route {
	const def = "/api/v1/tenants/:tenantId/definitions/:name"
	return []route{
		{"GET", def + "/versions", PermDefinitionsRead, "versions", s.listVersions, 0},
		{"GET", def + "/diff", PermDefinitionsRead, "diff", s.diffVersions, 0},
		{"GET", def + "/aliases", PermDefinitionsRead, "aliases", s.listAliases, 0},
		{"GET", def + "/aliases/:alias", PermDefinitionsRead, "alias", s.getAlias, 0},
		{"PUT", def + "/aliases/:alias", PermDefinitionsWrite, "set_alias", s.setAlias, 0},
		{"DELETE", def + "/aliases/:alias", PermDefinitionsWrite, "delete_alias", s.deleteAlias, 0},
	}
}

// aliasProblem names what a request about versions or aliases did not find.
func aliasProblem(err error, name, alias string) error {
	switch {
	case errors.Is(err, engine.ErrAliasesUnsupported):
		return newProblem(http.StatusNotFound, wire.CodeNotFound, "this server keeps no aliases")
	case errors.Is(err, engine.ErrAliasNotFound):
		return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("definition %q has no alias %q", name, alias))
	case errors.Is(err, engine.ErrNotFound) && !errors.Is(err, engine.ErrTenantNotFound):
		return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("definition %q does not exist", name))
	}
	return err
}

func (s *Server) listVersions(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query(), "after", "limit"); err != nil {
		return err
	}
	after, err := intParam(r.URL.Query(), "after", 0, 0, 1<<31-1)
	if err != nil {
		return err
	}
	limit, err := intParam(r.URL.Query(), "limit", 100, 1, engine.MaxVersionsPage)
	if err != nil {
		return err
	}
	name := p.ByName("name")
	vs, next, err := s.Engine.ListVersions(r.Context(), tenant, name, after, limit)
	if err != nil {
		return aliasProblem(err, name, "")
	}
	writeJSON(w, http.StatusOK, wire.VersionsPage{Versions: wireDefinitionSummaries(vs), NextAfter: next})
	return nil
}

func (s *Server) diffVersions(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query(), "from", "to"); err != nil {
		return err
	}
	var vs [2]int
	for i, f := range []string{"from", "to"} {
		if r.URL.Query().Get(f) == "" {
			return fieldProblem(f, "required: a version number, e.g. ?from=3&to=4")
		}
		if vs[i], err = intParam(r.URL.Query(), f, 0, 1, 1<<31-1); err != nil {
			return err
		}
	}
	name := p.ByName("name")
	d, err := s.Engine.DiffVersions(r.Context(), tenant, name, vs[0], vs[1])
	if err != nil {
		return aliasProblem(err, name, "")
	}
	out := wire.DefinitionDiff{Name: d.Name, From: d.From, To: d.To, FromHash: d.FromHash, ToHash: d.ToHash, Same: d.Same,
		Workflow: wireFieldChanges(d.Workflow), TasksAdded: d.TasksAdded, TasksRemoved: d.TasksRemoved, TasksChanged: []wire.TaskChange{}}
	for _, tc := range d.TasksChanged {
		out.TasksChanged = append(out.TasksChanged, wire.TaskChange{ID: tc.ID, Fields: wireFieldChanges(tc.Fields)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func wireFieldChanges(fs []engine.FieldChange) []wire.FieldChange {
	out := make([]wire.FieldChange, 0, len(fs))
	for _, f := range fs {
		out = append(out, wire.FieldChange{Field: f.Field, From: f.From, To: f.To})
	}
	return out
}

func (s *Server) listAliases(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	name := p.ByName("name")
	as, err := s.Engine.ListAliases(r.Context(), tenant, name)
	if err != nil {
		return aliasProblem(err, name, "")
	}
	page := wire.AliasesPage{Aliases: []wire.Alias{}}
	for i := range as {
		page.Aliases = append(page.Aliases, wireAlias(&as[i]))
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) getAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	name, alias := p.ByName("name"), p.ByName("alias")
	a, err := s.Engine.GetAlias(r.Context(), tenant, name, alias)
	if err != nil {
		return aliasProblem(err, name, alias)
	}
	writeJSON(w, http.StatusOK, wireAlias(a))
	return nil
}

func (s *Server) setAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req wire.SetAliasRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	spec := engine.AliasSpec{StickyKey: req.StickyKey, Revision: req.Revision}
	switch {
	case req.Version != 0 && len(req.Versions) > 0:
		return fieldProblem("versions", "give version or versions, not both")
	case req.Version < 0:
		return fieldProblem("version", "must be a version number (1 or more)")
	case req.Version > 0:
		spec.Versions = []engine.AliasTarget{{Version: req.Version, Weight: 100}}
	case len(req.Versions) == 0:
		return fieldProblem("versions", `required: {"version":N}, or {"versions":[{"version":N,"weight":W},...]}`)
	}
	for _, t := range req.Versions {
		spec.Versions = append(spec.Versions, engine.AliasTarget{Version: t.Version, Weight: t.Weight})
	}
	if req.Revision < 0 {
		return fieldProblem("revision", "must be the alias's current revision (1 or more)")
	}
	if rb := req.Rollback; rb != nil {
		spec.Rollback = &engine.RollbackPolicy{Window: rb.Window, Margin: rb.Margin, MinRuns: rb.MinRuns}
	}
	name, alias := p.ByName("name"), p.ByName("alias")
	a, err := s.Engine.SetAlias(r.Context(), CallerFrom(r.Context()), tenant, name, alias, spec)
	if err != nil {
		return aliasProblem(err, name, alias)
	}
	status := http.StatusOK
	if a.Revision == 1 {
		status = http.StatusCreated
		w.Header().Set("Location", fmt.Sprintf("/api/v1/tenants/%s/definitions/%s/aliases/%s", tenant, name, alias))
	}
	writeJSON(w, status, wireAlias(a))
	return nil
}

func (s *Server) deleteAlias(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query(), "revision"); err != nil {
		return err
	}
	rev, err := intParam(r.URL.Query(), "revision", 0, 1, 1<<62)
	if err != nil {
		return err
	}
	name, alias := p.ByName("name"), p.ByName("alias")
	if err := s.Engine.DeleteAlias(r.Context(), CallerFrom(r.Context()), tenant, name, alias, int64(rev)); err != nil {
		return aliasProblem(err, name, alias)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func wireAlias(a *engine.Alias) wire.Alias {
	out := wire.Alias{Name: a.Name, Alias: a.Alias, Versions: []wire.AliasTarget{}, StickyKey: a.StickyKey,
		Revision: a.Revision, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, UpdatedBy: a.UpdatedBy}
	for _, t := range a.Versions {
		out.Versions = append(out.Versions, wire.AliasTarget(t))
	}
	if rb := a.Rollback; rb != nil {
		out.Rollback = &wire.RollbackPolicy{Window: rb.Window, Margin: rb.Margin, MinRuns: rb.MinRuns}
	}
	if rb := a.RolledBack; rb != nil {
		rec := &wire.RollbackRecord{At: rb.At, Newer: wire.VersionOutcomes(rb.Newer), Older: wire.VersionOutcomes(rb.Older),
			Margin: rb.Margin, Window: rb.Window, From: []wire.AliasTarget{}}
		for _, t := range rb.From {
			rec.From = append(rec.From, wire.AliasTarget(t))
		}
		out.RolledBack = rec
	}
	return out
}
