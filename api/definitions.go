package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/policy"
)

// Definitions: register, read and list versions, and validate a DAG without
// storing it.

// registerDefinition serves POST /v1/workflows (tenant default) and
// POST .../definitions.
func (s *Server) registerDefinition(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	if err := validJSON(body); err != nil {
		return err
	}
	if err := s.decide(r, policy.Resource{Workflow: definitionName(body)}); err != nil {
		return err
	}
	sd, created, err := s.Engine.RegisterDefinitionBy(r.Context(), tenant, body, CallerFrom(r.Context()))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created { // Location names a new resource only
		status = http.StatusCreated
		if p.ByName("tenantId") == "" {
			w.Header().Set("Location", fmt.Sprintf("/v1/workflows?name=%s&version=%d", url.QueryEscape(sd.Name), sd.Version))
		} else {
			w.Header().Set("Location", fmt.Sprintf("/api/v1/tenants/%s/definitions/%s/versions/%d", tenant, sd.Name, sd.Version))
		}
	}
	writeJSON(w, status, wire.Registration{DefinitionVersion: wireDefinition(sd), Created: created})
	return nil
}

func (s *Server) getWorkflow(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	q := r.URL.Query()
	if err := onlyParams(q, "name", "version"); err != nil {
		return err
	}
	name := q.Get("name")
	if name == "" {
		return fieldProblem("name", "required query parameter, e.g. ?name=wf1")
	}
	version := 0
	if v := q.Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fieldProblem("version", fmt.Sprintf("must be a positive integer, not %q", v))
		}
		version = n
	}
	sd, err := s.Engine.GetDefinition(r.Context(), DefaultTenant, name, version)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wireDefinition(sd))
	return nil
}

func (s *Server) listDefinitions(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	defs, err := s.Engine.ListDefinitions(r.Context(), tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.DefinitionsPage{Definitions: wireDefinitionSummaries(defs)})
	return nil
}

func (s *Server) getDefinitionVersion(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	tenant, err := tenantOf(p)
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	name := p.ByName("name")
	v := p.ByName("version")
	version, err := strconv.Atoi(v)
	if err != nil || version < 1 {
		if v != "latest" {
			return fieldProblem("version", fmt.Sprintf("must be a positive integer or \"latest\", not %q", v))
		}
		version = 0
	}
	sd, err := s.Engine.GetDefinition(r.Context(), tenant, name, version)
	if errors.Is(err, engine.ErrNotFound) {
		return newProblem(http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("definition %q version %s does not exist", name, v))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wireDefinition(sd))
	return nil
}

// definitionName is the name a definition's JSON gives itself, as far as it
// is readable ("" otherwise): what a policy sees of a definition that is
// registered or started inline, before it is validated.
func definitionName(def json.RawMessage) string {
	var d struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(def, &d) != nil {
		return ""
	}
	return d.Name
}

// validateDAG validates a definition (the body, or its "definition" field)
// without storing it: 200 with the verdict for any well-formed JSON.
func (s *Server) validateDAG(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	if err := validJSON(body); err != nil {
		return err
	}
	var wrapper map[string]json.RawMessage
	if json.Unmarshal(body, &wrapper) == nil && len(wrapper) == 1 && wrapper["definition"] != nil {
		body = wrapper["definition"]
	}
	_, plan, problems := definition.CompileJSON(body, s.Engine.ValidateOptions())
	out := wire.Validation{Valid: len(problems) == 0, Errors: wireFieldErrors(problems), Levels: [][]string{}}
	if plan != nil {
		out.Levels = plan.Levels
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
