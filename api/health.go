package api

import (
	"context"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// health answers GET /health: 503 when the database does not answer a read
// within 2s; 200 "degraded" with the reason while writes fail for the
// storage's sake, and with "overloaded" while new runs are refused; 200 "ok"
// otherwise.
func (s *Server) health(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Engine.Ping(ctx); err != nil {
		s.Logger.Error("health check failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, wire.Health{Status: "unavailable", Database: "unreachable"})
		return nil
	}
	out := wire.Health{Status: "ok", Database: "ok", Storage: "ok"}
	if h := s.Engine.StorageHealth(); !h.Writable {
		// Degraded, not down: reads still answer, and the writes that find
		// the storage back must still reach this only node.
		out.Status, out.Storage, out.Reason, out.Since = "degraded", "unavailable", h.Reason, h.Since.UTC()
	}
	if ov := s.Engine.Overload(); ov.Overloaded {
		// Saturated, not down: everything but new runs is served, so a load
		// balancer keeps the node; a gateway reads overloaded.
		out.Status = "degraded"
		out.Overloaded = wireOverload(ov)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// wireOverload is an engine overload status on the wire.
func wireOverload(ov engine.OverloadStatus) *wire.Overload {
	o := &wire.Overload{Since: ov.Since.UTC(), Reasons: make([]wire.OverloadReason, len(ov.Reasons)),
		RetryAfterSeconds: int((max(ov.RetryAfter, time.Second) + time.Second - 1) / time.Second)}
	for i, r := range ov.Reasons {
		o.Reasons[i] = wire.OverloadReason{Signal: r.Signal, Value: r.Value, Limit: r.Limit}
	}
	return o
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) error {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if s.Metrics != nil {
		s.Metrics.WritePrometheus(w)
	}
	metrics.WriteProcessMetrics(w)
	return nil
}
