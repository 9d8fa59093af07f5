package api

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"

	"github.com/julienschmidt/httprouter"
)

// openAPIBase is the OpenAPI 3.1 description of the core routes: the short
// /v1 API, the tenant-scoped /api/v1/tenants/{tenantId} API, the worker
// protocol under both, /api/v1/dag/validate, /health, /metrics and
// /openapi.json itself. Each file of openapi/ adds the paths, tags and
// components of one resource (schedules, triggers, aliases...); they are
// merged into openAPIDocument. TestOpenAPI* keep it in step with the routes.
//
//go:embed openapi.json
var openAPIBase []byte

//go:embed openapi
var openAPIParts embed.FS

// openAPIDocument is the merged document GET /openapi.json serves.
var openAPIDocument = mustMergeOpenAPI(openAPIBase, openAPIParts)

// openAPIPart is what a file of openapi/ may add to the base document.
type openAPIPart struct {
	Tags       []json.RawMessage                     `json:"tags"`
	Paths      map[string]json.RawMessage            `json:"paths"`
	Components map[string]map[string]json.RawMessage `json:"components"`
}

// mergeOpenAPI adds every part of parts (*.json, in name order) to base. A
// path or component a part names twice, or that base already has, is an
// error: two resources must not describe the same thing.
func mergeOpenAPI(base []byte, parts fs.FS) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(base, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	var whole openAPIPart
	if err := json.Unmarshal(base, &whole); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	names, err := fs.Glob(parts, "openapi/*.json")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		data, err := fs.ReadFile(parts, name)
		if err != nil {
			return nil, err
		}
		var part openAPIPart
		if err := json.Unmarshal(data, &part); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		whole.Tags = append(whole.Tags, part.Tags...)
		for p, item := range part.Paths {
			if _, dup := whole.Paths[p]; dup {
				return nil, fmt.Errorf("%s: path %s is described twice", path.Base(name), p)
			}
			whole.Paths[p] = item
		}
		for kind, items := range part.Components {
			if whole.Components[kind] == nil {
				whole.Components[kind] = map[string]json.RawMessage{}
			}
			for k, v := range items {
				if _, dup := whole.Components[kind][k]; dup {
					return nil, fmt.Errorf("%s: components.%s.%s is described twice", path.Base(name), kind, k)
				}
				whole.Components[kind][k] = v
			}
		}
	}
	for key, v := range map[string]any{"tags": whole.Tags, "paths": whole.Paths, "components": whole.Components} {
		if doc[key], err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}

func mustMergeOpenAPI(base []byte, parts fs.FS) []byte {
	doc, err := mergeOpenAPI(base, parts)
	if err != nil {
		panic("openapi document: " + err.Error())
	}
	return doc
}

// openapi serves the OpenAPI document as application/json. It touches
// neither the engine nor the store. A failed write means the client went
// away once the status was sent, so there is nothing left to answer.
func (s *Server) openapi(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(openAPIDocument)
	return nil
}
