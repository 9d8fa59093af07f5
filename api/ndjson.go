package api

import (
	"encoding/json"
	"net/http"
)

// streamNDJSON answers with application/x-ndjson: each calls emit for
// every item, in order, one JSON line apiece. The answer is flushed every
// flushEvery lines, and each batch gets WriteTimeout anew, so an export may
// run longer than one answer. An error before the first line is returned
// (a problem document answers it); after it, the answer has begun and a
// problem would corrupt it: the client sees it cut short, and the log says
// why, naming what.
func (s *Server) streamNDJSON(w http.ResponseWriter, what string, flushEvery int, each func(emit func(v any) error) error) error {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	n := 0
	s.extendWrite(rc, 0)
	err := each(func(v any) error {
		if err := enc.Encode(v); err != nil {
			return err
		}
		if n++; n%flushEvery == 0 {
			rc.Flush()
			s.extendWrite(rc, 0)
		}
		return nil
	})
	if err != nil && n > 0 {
		s.Logger.Error(what+" broke off", "sent", n, "err", err)
		return nil
	}
	return err
}
