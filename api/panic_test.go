package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestMiddleware_RecoversPanics serves handlers that panic through the
// server's middleware on 127.0.0.1.
func TestMiddleware_RecoversPanics(t *testing.T) {
	var logs syncBuffer
	s := &Server{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), MaxBodyBytes: DefaultMaxBodyBytes}
	mux := http.NewServeMux()
	mux.HandleFunc("/before", func(http.ResponseWriter, *http.Request) { panic("before the answer") })
	mux.HandleFunc("/during", func(w http.ResponseWriter, _ *http.Request) {
		// Through http.Flusher, as handlers of other packages may.
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"partial":`))
		w.(http.Flusher).Flush()
		panic("during the answer")
	})
	mux.HandleFunc("/fine", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, map[string]bool{"ok": true}) })
	srv := httptest.NewServer(s.middleware(mux))
	t.Cleanup(srv.Close)
	get := func(path, id string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set(HeaderRequestID, id)
		res, err := srv.Client().Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		return res, body, err
	}

	t.Run("a panic before the answer is a 500 problem, logged with its stack", func(t *testing.T) {
		is := is.New(t)
		res, body, err := get("/before", "panic-1")
		is.NoErr(err)
		is.Equal(res.StatusCode, http.StatusInternalServerError)             // 500
		is.Equal(res.Header.Get("Content-Type"), "application/problem+json") // as a problem
		is.Equal(res.Header.Get(HeaderRequestID), "panic-1")                 // with the request's id
		var p wire.Problem
		is.NoErr(json.Unmarshal(body, &p))
		is.Equal(p.Code, wire.CodeInternal)                           // code internal
		is.True(!strings.Contains(string(body), "before the answer")) // the panic's text stays in the log
		log := logs.String()
		is.True(strings.Contains(log, `"msg":"handler panicked"`)) // logged
		is.True(strings.Contains(log, `"request_id":"panic-1"`))   // with the request's id
		is.True(strings.Contains(log, `"panic":"before the answer"`))
		is.True(strings.Contains(log, "panic_test.go")) // and the stack
	})
	t.Run("a panic during the answer cuts it off", func(t *testing.T) {
		is := is.New(t)
		res, body, err := get("/during", "panic-2")
		is.True(res == nil || res.StatusCode == http.StatusOK)                  // the status had been sent
		is.True(err != nil || !json.Valid(body))                                // but the answer is cut short
		is.True(!strings.Contains(string(body), "internal"))                    // with no problem appended to it
		is.True(strings.Contains(logs.String(), `"request_id":"panic-2"`))      // logged
		is.True(strings.Contains(logs.String(), `"panic":"during the answer"`)) // the handler's own panic
	})
	t.Run("the server goes on serving", func(t *testing.T) {
		is := is.New(t)
		res, body, err := get("/fine", "after")
		is.NoErr(err)
		is.Equal(res.StatusCode, http.StatusOK)
		is.Equal(strings.TrimSpace(string(body)), `{"ok":true}`)
	})
}
