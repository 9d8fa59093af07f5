package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
)

func TestNew(t *testing.T) {
	t.Parallel()

	t.Run("refuses a base URL that is not absolute http or https", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		for _, u := range []string{"localhost:8084", "ftp://host", "http://", "/v1", "http://host/?q=1", "http://h\x7f"} {
			_, err := client.New(u)
			is.True(err != nil) // refused
		}
	})

	t.Run("defaults to the tenant default and trims the base URL", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		c, err := client.New("http://127.0.0.1:8084/prefix/")
		is.NoErr(err)                                         // new
		is.Equal(c.Tenant(), "default")                       // default tenant
		is.Equal(c.BaseURL(), "http://127.0.0.1:8084/prefix") // no trailing slash
		c, err = client.New("http://h", client.WithTenant("acme"))
		is.NoErr(err)                // new
		is.Equal(c.Tenant(), "acme") // tenant option
	})

	t.Run("sends requests through the given http client", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		env := newEnv(t, envOptions{})
		var n atomic.Int32
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n.Add(1)
			return http.DefaultTransport.RoundTrip(r)
		})}
		c := env.client(t, client.WithHTTPClient(hc))
		h, err := c.Health(context.Background())
		is.NoErr(err)                // health
		is.Equal(h.Status, "ok")     // healthy
		is.Equal(n.Load(), int32(1)) // through the given transport
	})
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestOrchestratorClient_Transport covers what the client does on its own,
// against stub servers: timeouts, transport errors, answers that are not
// problem documents, the headers it sends.
func TestOrchestratorClient_Transport(t *testing.T) {
	t.Parallel()

	t.Run("a request past the timeout fails with a wrapped deadline error", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		stop := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(stop) })
		c, err := client.New(srv.URL, client.WithTimeout(50*time.Millisecond))
		is.NoErr(err) // new
		_, err = c.Health(context.Background())
		is.True(errors.Is(err, context.DeadlineExceeded)) // the timeout ended it
		is.Equal(client.StatusOf(err), 0)                 // not an answer
		is.True(strings.Contains(err.Error(), "GET /health"))
	})

	t.Run("a stream is bounded by the timeout only until it begins", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			is.Equal(r.Header.Get("Accept"), "application/x-ndjson") // asks for NDJSON
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			for i := 1; i <= 3; i++ {
				w.Write([]byte(`{"run_id":"r","seq":` + string(rune('0'+i)) + `,"type":"run.created"}` + "\n"))
				w.(http.Flusher).Flush()
				time.Sleep(60 * time.Millisecond) // slower, in all, than the client's timeout
			}
		}))
		t.Cleanup(srv.Close)
		c, err := client.New(srv.URL, client.WithTimeout(100*time.Millisecond))
		is.NoErr(err) // new
		var seqs []int64
		err = c.StreamTenantEvents(context.Background(), client.EventFilter{}, func(e wire.Event) error {
			seqs = append(seqs, e.Seq)
			return nil
		})
		is.NoErr(err)                    // the stream outlived the timeout
		is.Equal(seqs, []int64{1, 2, 3}) // every line
	})

	t.Run("a transport error is wrapped, not an answer", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv := httptest.NewServer(http.NotFoundHandler())
		base := srv.URL
		srv.Close()
		c, err := client.New(base)
		is.NoErr(err) // new
		_, err = c.GetWorkflow(context.Background(), "r1")
		var ue *url.Error
		is.True(errors.As(err, &ue))      // the transport's error is in the chain
		is.Equal(client.StatusOf(err), 0) // no status
		is.True(!client.IsNotFound(err))  // not a 404
		is.True(strings.HasPrefix(err.Error(), "orchestrator: GET /api/v1/tenants/default/workflows/r1"))
	})

	t.Run("an answer that is not a problem keeps its status and text", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "upstream went away", http.StatusBadGateway)
		}))
		t.Cleanup(srv.Close)
		c, err := client.New(srv.URL)
		is.NoErr(err) // new
		_, err = c.ListWorkflows(context.Background(), client.RunFilter{})
		e := apiError(t, err)
		is.Equal(e.Status, http.StatusBadGateway) // status kept
		is.Equal(e.Code, "")                      // no code
		is.Equal(e.Title, "Bad Gateway")          // status text
		is.Equal(e.Detail, "upstream went away")  // body text
		is.Equal(e.Error(), "orchestrator: 502: upstream went away")
	})

	t.Run("sends JSON, the actor, the idempotency key and escapes path segments", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		got := make(chan *http.Request, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- r
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Idempotent-Replayed", "true")
			w.Header().Set("Location", "/api/v1/tenants/t.1/workflows/r1")
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"id":"r1","state":"running"}`))
		}))
		t.Cleanup(srv.Close)
		c, err := client.New(srv.URL, client.WithTenant("t.1"), client.WithActor("alice"))
		is.NoErr(err) // new
		ex, err := c.ExecuteWorkflow(context.Background(), client.ExecuteRequest{Workflow: "wf", IdempotencyKey: "k1"})
		is.NoErr(err)                                             // execute
		is.Equal(ex.ID, "r1")                                     // run decoded
		is.True(ex.Replayed)                                      // header read
		is.Equal(ex.Location, "/api/v1/tenants/t.1/workflows/r1") // location read
		r := <-got
		is.Equal(r.Method, http.MethodPost)                        // method
		is.Equal(r.URL.Path, "/api/v1/tenants/t.1/workflows")      // path
		is.Equal(r.Header.Get("Content-Type"), "application/json") // JSON body
		is.Equal(r.Header.Get("X-Actor"), "alice")                 // actor
		is.Equal(r.Header.Get("Idempotency-Key"), "k1")            // key

		_, err = c.GetWorkflow(context.Background(), "a b/c")
		is.NoErr(err) // get
		r = <-got
		is.Equal(r.URL.EscapedPath(), "/api/v1/tenants/t.1/workflows/a%20b%2Fc") // one segment
		is.Equal(r.Header.Get("X-Actor"), "")                                    // a read names no actor
	})

	t.Run("sends the API key on every call, X-Actor on none of the admin's", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		got := make(chan *http.Request, 2)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- r
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{}`))
		}))
		t.Cleanup(srv.Close)
		c, err := client.New(srv.URL, client.WithAPIKey("orch_0123456789abcdef_secret"), client.WithActor("alice"))
		is.NoErr(err)
		_, err = c.PauseRun(context.Background(), "r1")
		is.NoErr(err)
		r := <-got
		is.Equal(r.Header.Get("Authorization"), "Bearer orch_0123456789abcdef_secret") // the key
		is.Equal(r.Header.Get("X-Actor"), "alice")                                     // and for whom
		_, err = c.CreateKey(context.Background(), "acme", wire.CreateKeyRequest{Name: "ci", Role: wire.RoleOperator})
		is.NoErr(err)
		r = <-got
		is.Equal(r.Header.Get("Authorization"), "Bearer orch_0123456789abcdef_secret") // the key
		is.Equal(r.Header.Get("X-Actor"), "")                                          // but no X-Actor: the admin log records the key alone
	})
}

func TestError(t *testing.T) {
	t.Parallel()

	t.Run("Error names status, code, detail, state and problems", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		e := &client.Error{Status: 409, Code: "invalid_transition", Detail: "run: run.paused is not allowed while the run is completed", State: "completed"}
		is.Equal(e.Error(), "orchestrator: 409 invalid_transition: run: run.paused is not allowed while the run is completed (state completed)")
		e = &client.Error{Status: 400, Code: "invalid_definition", Detail: "2 problems in the definition",
			Errors: []wire.FieldError{{Task: "a", Field: "depends_on", Message: `unknown task "z"`}, {Field: "name", Message: "required"}}}
		is.Equal(e.Error(), `orchestrator: 400 invalid_definition: 2 problems in the definition: task a: depends_on: unknown task "z"; name: required`)
		e = &client.Error{Status: 400, Code: "invalid_request", Detail: "limit: must be an integer", Errors: []wire.FieldError{{Field: "limit", Message: "must be an integer"}}}
		is.Equal(e.Error(), "orchestrator: 400 invalid_request: limit: must be an integer") // the one field is not repeated
	})

	t.Run("helpers see through wrapping", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		err := errors.Join(errors.New("context"), &client.Error{Status: 404, Code: "not_found"})
		is.True(client.IsNotFound(err))           // 404
		is.True(!client.IsConflict(err))          // not 409
		is.Equal(client.CodeOf(err), "not_found") // code
		is.True(client.IsConflict(&client.Error{Status: 409, Code: "lease_lost"}))
		is.True(client.IsLeaseLost(&client.Error{Status: 409, Code: "lease_lost"}))
		is.Equal(client.StatusOf(errors.New("x")), 0) // not an answer
	})

	t.Run("codes are stable", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		// Client and server share package wire's codes; their values are
		// the contract and must never change.
		for _, c := range [][2]string{
			{wire.CodeInvalidJSON, "invalid_json"},
			{wire.CodeInvalidRequest, "invalid_request"},
			{wire.CodeInvalidDefinition, "invalid_definition"},
			{wire.CodeNotFound, "not_found"},
			{wire.CodeMethodNotAllowed, "method_not_allowed"},
			{wire.CodeInvalidTransition, "invalid_transition"},
			{wire.CodeConflict, "conflict"},
			{wire.CodeUnauthenticated, "unauthenticated"},
			{wire.CodeForbidden, "forbidden"},
			{wire.CodeTenantSuspended, "tenant_suspended"},
			{wire.CodeTenantNotFound, "tenant_not_found"},
			{wire.CodeInvalidPolicy, "invalid_policy"},
			{wire.CodeLeaseLost, "lease_lost"},
			{wire.CodeBodyTooLarge, "body_too_large"},
			{wire.CodeOutputTooLarge, "output_too_large"},
			{wire.CodeUnsupportedMedia, "unsupported_media_type"},
			{wire.CodeIdempotencyMismatch, "idempotency_key_reused"},
			{wire.CodeInternal, "internal"},
			{wire.CodeUnavailable, "unavailable"},
			{wire.CodeStorageUnavailable, "storage_unavailable"},
			{wire.CodeTooManyStreams, "too_many_streams"},
		} {
			is.Equal(c[0], c[1])                         // same code
			is.True(slices.Contains(wire.Codes(), c[0])) // and listed
		}
		is.Equal(len(wire.Codes()), 21) // no code is left out above
	})
}
