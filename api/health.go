package api

import (
	"context"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
)

// health answers GET /health: 503 when the database does not answer a read
// within 2s; 200 "degraded" with the reason while writes fail for the
// storage's sake; 200 "ok" otherwise.
func (s *Server) health(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Engine.Ping(ctx); err != nil {
		s.Logger.Error("health check failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, wire.Health{Status: "unavailable", Database: "unreachable"})
		return nil
	}
	if h := s.Engine.StorageHealth(); !h.Writable {
		// Degraded, not down: reads still answer, and the writes that find
		// the storage back must still reach this only node.
		writeJSON(w, http.StatusOK, wire.Health{Status: "degraded", Database: "ok", Storage: "unavailable",
			Reason: h.Reason, Since: h.Since.UTC()})
		return nil
	}
	writeJSON(w, http.StatusOK, wire.Health{Status: "ok", Database: "ok", Storage: "ok"})
	return nil
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) error {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if s.Metrics != nil {
		s.Metrics.WritePrometheus(w)
	}
	metrics.WriteProcessMetrics(w)
	return nil
}
