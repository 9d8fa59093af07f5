package api

import (
	"net/http"
	"sync"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/web"
)

// The web UI: the embedded files of package web under /ui/. They are
// public: the pages hold no data, and every call they make goes to the
// documented API with the caller's key.

// uiAssets is read and hashed once, on the first request for a file.
var uiAssets = sync.OnceValues(web.NewAssets)

func (s *Server) uiRoutes() []route {
	return []route{
		{"GET", "/ui/*filepath", PermPublic, "", s.uiFile, 0},
	}
}

// uiFile serves GET /ui/{filepath}: a file of the UI, /ui/ its page.
func (s *Server) uiFile(w http.ResponseWriter, r *http.Request, p httprouter.Params) error {
	assets, err := uiAssets()
	if err != nil {
		return err
	}
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	if !assets.Serve(w, r, p.ByName("filepath")) {
		return newProblem(http.StatusNotFound, wire.CodeNotFound, "the UI has no file "+r.URL.Path)
	}
	return nil
}
