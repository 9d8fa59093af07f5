package api

import (
	_ "embed"
	"net/http"

	"github.com/julienschmidt/httprouter"
)

// openAPIDocument is the OpenAPI 3.1 description of every route in routes():
// the short /v1 API, the tenant-scoped /api/v1/tenants/{tenantId} API, the
// worker protocol under both, /api/v1/dag/validate, /health, /metrics and
// /openapi.json itself. TestOpenAPI* keep it in step with the routes.
//
//go:embed openapi.json
var openAPIDocument []byte

// openapi serves the OpenAPI document as application/json. It touches
// neither the engine nor the store. A failed write means the client went
// away once the status was sent, so there is nothing left to answer.
func (s *Server) openapi(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(openAPIDocument)
	return nil
}
