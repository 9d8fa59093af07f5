package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// newHTTP returns an http handler for tests.
func newHTTP(t *testing.T, cfg HTTPConfig) *HTTP {
	t.Helper()
	h, err := NewHTTP(cfg)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	return h
}

// server starts an httptest server on 127.0.0.1 that counts its requests.
func server(t *testing.T, handler http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// attempt builds an attempt from config and input values.
func attempt(config, input any) *engine.Attempt {
	a := &engine.Attempt{RunID: "r1", TaskID: "t1", Type: TypeHTTP, Attempt: 1, IdempotencyKey: "r1/t1/1"}
	if config != nil {
		a.Config, _ = json.Marshal(config)
	}
	if input != nil {
		a.Input, _ = json.Marshal(input)
	}
	return a
}

// output decodes an http task's output.
func output(t *testing.T, raw json.RawMessage) (status int, headers map[string]string, body any) {
	t.Helper()
	var o struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    any               `json:"body"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("output %s: %v", raw, err)
	}
	return o.Status, o.Headers, o.Body
}

func TestHTTP_Run(t *testing.T) {
	t.Parallel()

	t.Run("it fails retryably on 500s and then returns the parsed JSON body", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		const failures = 3
		var calls atomic.Int64
		srv2, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) <= failures {
				http.Error(w, "database unavailable", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Add("X-Answer", "42")
			w.Header().Add("X-Answer", "43")
			fmt.Fprint(w, `{"ok": true, "n": 7}`)
		})
		h := newHTTP(t, HTTPConfig{})
		a := attempt(map[string]any{"url": srv2.URL + "/items?token=secret"}, nil)
		for range failures {
			out, err := h.Run(context.Background(), a)
			is.True(err != nil)                                            // a 500 is an error
			is.Equal(out, nil)                                             // and has no output
			is.True(!engine.IsPermanent(err))                              // worth retrying
			is.Equal(codeOf(err), "http_5xx")                              // coded by status class
			is.True(strings.Contains(err.Error(), "database unavailable")) // the body is quoted
			is.True(!strings.Contains(err.Error(), "secret"))              // the query is not
		}
		out, err := h.Run(context.Background(), a)
		is.NoErr(err) // the 4th call succeeds
		status, headers, body := output(t, out)
		is.Equal(status, 200)                                       // status
		is.Equal(headers["x-answer"], "42")                         // lowercased name, first value
		is.Equal(body, map[string]any{"ok": true, "n": float64(7)}) // JSON parsed
		is.Equal(calls.Load(), int64(failures+1))                   // one request per Run
	})

	t.Run("a slow server times out retryably", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		release := make(chan struct{})
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		t.Cleanup(func() { close(release) })
		h := newHTTP(t, HTTPConfig{})

		_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL, "timeout": "50ms"}, nil))
		is.Equal(codeOf(err), "timeout")  // the task's timeout
		is.True(!engine.IsPermanent(err)) // worth retrying

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err = h.Run(ctx, attempt(map[string]any{"url": srv.URL, "timeout": "1m"}, nil))
		is.Equal(codeOf(err), "timeout")  // the attempt's deadline caps the task's timeout
		is.True(!engine.IsPermanent(err)) // worth retrying
	})

	t.Run("a 404 fails permanently", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, _ := server(t, http.NotFound)
		h := newHTTP(t, HTTPConfig{})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL + "/missing"}, nil))
		is.True(engine.IsPermanent(err))                   // retrying cannot help
		is.Equal(codeOf(err), "http_4xx")                  // coded by status class
		is.True(strings.Contains(err.Error(), "404"))      // the status is named
		is.True(strings.Contains(err.Error(), "/missing")) // and the target
	})

	t.Run("a 429 with Retry-After asks for that wait", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
		})
		h := newHTTP(t, HTTPConfig{})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
		d, ok := retryAfterOf(t, err)
		is.True(ok)                       // RetryAfter
		is.Equal(d, 2*time.Second)        // of the header's seconds
		is.True(!engine.IsPermanent(err)) // worth retrying
		is.Equal(codeOf(err), "http_4xx") // coded by status class
	})

	t.Run("a 503 with a Retry-After date asks for the wait until then", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		h := newHTTP(t, HTTPConfig{})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
		d, ok := retryAfterOf(t, err)
		is.True(ok)                                   // RetryAfter
		is.True(d > 59*time.Minute && d <= time.Hour) // until the date
		is.Equal(codeOf(err), "http_5xx")             // coded by status class
	})

	t.Run("a response over the limit fails permanently", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		big := strings.Repeat("x", 1000)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/chunked" {
				for range 10 {
					io.WriteString(w, big[:100])
					w.(http.Flusher).Flush() // no Content-Length: the limit applies while reading
				}
				return
			}
			io.WriteString(w, big)
		})
		h := newHTTP(t, HTTPConfig{MaxResponseBytes: 500})
		for _, path := range []string{"/", "/chunked"} {
			_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL + path}, nil))
			is.True(engine.IsPermanent(err))            // too large does not shrink on retry
			is.Equal(codeOf(err), "response_too_large") // coded
		}
		h = newHTTP(t, HTTPConfig{}) // 1 MiB
		out, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL, "max_response_bytes": 999}, nil))
		is.Equal(codeOf(err), "response_too_large") // a task may lower the limit
		is.Equal(out, nil)                          // and gets no output
		_, err = h.Run(context.Background(), attempt(map[string]any{"url": srv.URL, "max_response_bytes": 2 << 20}, nil))
		is.Equal(codeOf(err), "invalid_request") // but not raise it over the server's
		out, err = h.Run(context.Background(), attempt(map[string]any{"url": srv.URL, "max_response_bytes": 1000}, nil))
		is.NoErr(err) // a body of exactly the limit fits
		_, _, body := output(t, out)
		is.Equal(body, big) // whole
	})

	t.Run("a body within max_response_bytes whose output is over the output limit says which limit", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		bodies := map[string]string{
			"/quotes":  strings.Repeat(`"`, 600_000),    // 2 bytes each in JSON
			"/control": strings.Repeat("\x01", 200_000), // 6 bytes each
			"/html":    strings.Repeat("<", 900_000),    // 1 byte each: not escaped
		}
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, bodies[r.URL.Path])
		})
		h := newHTTP(t, HTTPConfig{}) // max_response_bytes 1 MiB, the same as the output limit
		for _, path := range []string{"/quotes", "/control"} {
			out, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL + path}, nil))
			is.True(out == nil)                       // no output
			is.Equal(codeOf(err), "output_too_large") // the limit hit is the output's
			is.True(engine.IsPermanent(err))          // the same response will not shrink
			msg := err.Error()
			is.True(strings.Contains(msg, fmt.Sprintf("response body of %d bytes is within max_response_bytes (%d)", len(bodies[path]), DefaultMaxResponseBytes))) // the body's size and its limit
			is.True(strings.Contains(msg, fmt.Sprintf("over the limit of %d bytes on a task's output", engine.MaxOutputBytes)))                                    // the output's limit
		}
		out, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL + "/html"}, nil))
		is.NoErr(err) // < > & are not escaped: the output stays as large as the body
		_, _, body := output(t, out)
		is.Equal(body, bodies["/html"]) // whole
	})

	t.Run("a host that does not resolve fails without naming the server's resolver", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		h := newHTTP(t, HTTPConfig{})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": "http://nothing.invalid/x", "timeout": "10s"}, nil))
		is.True(err != nil) // .invalid never resolves
		msg := err.Error()
		is.True(codeOf(err) == "connection_error" || codeOf(err) == "timeout") // coded
		is.True(strings.Contains(msg, "lookup nothing.invalid: "))             // the lookup is named
		is.True(!regexp.MustCompile(` on \S+:\d+`).MatchString(msg))           // but no resolver address
		conf, _ := os.ReadFile("/etc/resolv.conf")
		for line := range strings.Lines(string(conf)) {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "nameserver" {
				is.True(!strings.Contains(msg, f[1])) // nor any of this host's name servers
			}
		}
	})

	t.Run("expect_status decides which statuses succeed", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
			w.WriteHeader(code)
			io.WriteString(w, "status "+strconv.Itoa(code))
		})
		h := newHTTP(t, HTTPConfig{})
		run := func(code int, expect []int) (json.RawMessage, error) {
			return h.Run(context.Background(), attempt(map[string]any{"url": fmt.Sprintf("%s/%d", srv.URL, code), "expect_status": expect}, nil))
		}
		out, err := run(404, []int{200, 404})
		is.NoErr(err) // an expected 404 succeeds
		status, _, body := output(t, out)
		is.Equal(status, 404)        // with its status
		is.Equal(body, "status 404") // and a text body as a string

		_, err = run(201, []int{200})
		is.True(engine.IsPermanent(err))           // an unexpected 2xx will not change
		is.Equal(codeOf(err), "unexpected_status") // coded

		_, err = run(409, []int{200})
		is.True(engine.IsPermanent(err))  // an unexpected 4xx is permanent
		is.Equal(codeOf(err), "http_4xx") // coded by class

		_, err = run(502, []int{200})
		is.True(err != nil && !engine.IsPermanent(err)) // an unexpected 5xx is retryable
		is.Equal(codeOf(err), "http_5xx")               // coded by class

		_, err = run(204, nil)
		is.NoErr(err) // without expect_status any 2xx succeeds
	})

	t.Run("it sends the method, headers and body", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		type seen struct {
			method, contentType, token, ua, body string
		}
		got := make(chan seen, 2)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- seen{r.Method, r.Header.Get("Content-Type"), r.Header.Get("X-Token"), r.Header.Get("User-Agent"), string(b)}
		})
		h := newHTTP(t, HTTPConfig{})
		_, err := h.Run(context.Background(), attempt(map[string]any{
			"method": "post", "url": srv.URL, "headers": map[string]string{"X-Token": "abc"},
			"body": map[string]any{"name": "ada", "tags": []string{"x"}},
		}, nil))
		is.NoErr(err) // sent
		s := <-got
		is.Equal(s.method, "POST")                      // method, uppercased
		is.Equal(s.contentType, "application/json")     // a JSON body says so
		is.Equal(s.token, "abc")                        // headers
		is.Equal(s.ua, "orchestrator")                  // a default User-Agent
		is.Equal(s.body, `{"name":"ada","tags":["x"]}`) // the body as JSON

		_, err = h.Run(context.Background(), attempt(map[string]any{
			"method": "PUT", "url": srv.URL, "headers": map[string]string{"Content-Type": "text/csv"}, "body": "a,b\n1,2\n",
		}, nil))
		is.NoErr(err) // sent
		s = <-got
		is.Equal(s.contentType, "text/csv") // the task's Content-Type wins
		is.Equal(s.body, "a,b\n1,2\n")      // a string body is sent as is
	})

	t.Run("input fields override config fields", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		paths := make(chan string, 1)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			paths <- r.Method + " " + r.URL.Path
		})
		h := newHTTP(t, HTTPConfig{})
		a := attempt(
			map[string]any{"method": "DELETE", "url": srv.URL + "/from-config"},
			map[string]any{"url": srv.URL + "/from-input", "unrelated": []int{1}},
		)
		_, err := h.Run(context.Background(), a)
		is.NoErr(err)                           // sent
		is.Equal(<-paths, "DELETE /from-input") // the input's url, the config's method

		_, err = h.Run(context.Background(), attempt(nil, map[string]any{"url": 5}))
		is.True(engine.IsPermanent(err))                    // a bad input cannot be retried away
		is.Equal(codeOf(err), "invalid_request")            // coded
		is.True(strings.Contains(err.Error(), "input.url")) // naming the input's field

		_, err = h.Run(context.Background(), attempt(nil, nil))
		is.Equal(codeOf(err), "invalid_request") // a url is required by run time
		is.True(engine.IsPermanent(err))         // permanently
	})
}

func TestHTTP_ValidateConfig(t *testing.T) {
	t.Parallel()
	h := newHTTP(t, HTTPConfig{MaxResponseBytes: 1000})
	cases := []struct {
		name   string
		config string
		field  string // "" = valid
		msg    string // part of the message
	}{
		{"an absent config is valid", ``, "", ""},
		{"a null config is valid", `null`, "", ""},
		{"an empty config is valid", `{}`, "", ""},
		{"a full config is valid", `{"method":"PATCH","url":"https://api.example.com/x?y=1","headers":{"A":"b"},"body":{"k":[1]},"timeout":"5s","expect_status":[200,204],"max_response_bytes":1000}`, "", ""},
		{"an unknown field is refused", `{"url":"http://x","retries":3}`, "config.retries", "unknown field"},
		{"a duplicate field is refused", `{"url":"http://x","url":"http://y"}`, "config.url", "duplicate"},
		{"a config that is not an object is refused", `[1]`, "config", "object"},
		{"an unknown method is refused", `{"method":"FETCH"}`, "config.method", "unknown method"},
		{"a method that is not a string is refused", `{"method":1}`, "config.method", "string"},
		{"an ftp url is refused", `{"url":"ftp://example.com/f"}`, "config.url", "http or https"},
		{"a url without a host is refused", `{"url":"http:///path"}`, "config.url", "host"},
		{"a url that does not parse is refused", `{"url":"http://[::1"}`, "config.url", "valid URL"},
		{"a bad timeout is refused", `{"timeout":"soon"}`, "config.timeout", "duration"},
		{"a negative timeout is refused", `{"timeout":"-1s"}`, "config.timeout", "positive"},
		{"a status under 100 is refused", `{"expect_status":[200,99]}`, "config.expect_status[1]", "100 to 599"},
		{"a status over 599 is refused", `{"expect_status":[600]}`, "config.expect_status[0]", "100 to 599"},
		{"expect_status must be an array", `{"expect_status":200}`, "config.expect_status", "array"},
		{"header values must be strings", `{"headers":{"X-N":1}}`, "config.headers.X-N", "string"},
		{"header names must be tokens", `{"headers":{"Bad Name":"v"}}`, "config.headers.Bad Name", "header name"},
		{"header values must not break lines", `{"headers":{"X":"a\r\nInjected: 1"}}`, "config.headers.X", "line breaks"},
		{"max_response_bytes is capped by the server", `{"max_response_bytes":1001}`, "config.max_response_bytes", "1 to 1000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			ps := h.ValidateConfig(json.RawMessage(c.config))
			if c.field == "" {
				is.Equal(len(ps), 0) // valid
				return
			}
			is.Equal(len(ps), 1)                            // one problem
			is.Equal(ps[0].Field, c.field)                  // naming the field
			is.True(strings.Contains(ps[0].Message, c.msg)) // saying what is wrong
			is.Equal(ps[0].Task, "")                        // the engine fills the task
		})
	}

	t.Run("a definition with a bare http task compiles", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		opts := definition.ValidateOptions{ConfigFunc: func(typ string, config json.RawMessage) []definition.Problem {
			return h.ValidateConfig(config)
		}}
		_, _, ps := definition.CompileJSON([]byte(`{"name":"wf","tasks":[{"id":"t1","type":"http"}]}`), opts)
		is.Equal(len(ps), 0) // the url may come from the input at run time
		_, _, ps = definition.CompileJSON([]byte(`{"name":"wf","tasks":[{"id":"t1","type":"http","config":{"url":"gopher://x"}}]}`), opts)
		is.Equal(len(ps), 1)                // a bad config is refused at registration
		is.Equal(ps[0].Task, "t1")          // naming the task
		is.Equal(ps[0].Field, "config.url") // and the field
	})
}

func TestHTTP_Targets(t *testing.T) {
	t.Parallel()

	t.Run("a deny rule refuses the server before connecting", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {})
		h := newHTTP(t, HTTPConfig{Deny: []string{"127.0.0.0/8"}})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
		is.True(engine.IsPermanent(err))                                     // refused for good
		is.Equal(codeOf(err), "target_refused")                              // coded
		is.True(strings.Contains(err.Error(), srv.Listener.Addr().String())) // naming the address
		is.True(strings.Contains(err.Error(), `"127.0.0.0/8"`))              // and the rule
		is.Equal(n.Load(), int64(0))                                         // the server saw nothing
		is.Equal(h.BreakerState("", srv.Listener.Addr().String()), "closed") // a refusal is not the host's failure
	})

	t.Run("a loopback deny rule refuses this host in every form", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {})
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		// The same service on IPv6 loopback, where [::1] and [::] lead.
		ln6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
		has6 := err == nil
		if has6 {
			srv6 := &http.Server{Handler: srv.Config.Handler}
			go srv6.Serve(ln6)
			t.Cleanup(func() { srv6.Close() })
		} else {
			t.Logf("no [::1]:%d on this host (%v): the IPv6 forms are checked without a listener", port, err)
		}
		everything := []string{"0.0.0.0/0", "::/0"} // address rules: they lift the default refusal of 0.0.0.0 and ::
		open := newHTTP(t, HTTPConfig{Allow: everything})
		h := newHTTP(t, HTTPConfig{Allow: everything, Deny: []string{"127.0.0.0/8"}})
		for _, form := range []struct {
			host string
			v6   bool // leads to [::1]
		}{{"0.0.0.0", false}, {"[::ffff:0.0.0.0]", false}, {"[::1]", true}, {"[::]", true}} {
			u := fmt.Sprintf("http://%s:%d/", form.host, port)
			if has6 || !form.v6 {
				before := n.Load()
				_, err := open.Run(context.Background(), attempt(map[string]any{"url": u, "timeout": "5s"}, nil))
				is.NoErr(err)                // without the deny rule, the form reaches the loopback service
				is.Equal(n.Load(), before+1) // which saw the request
			}
			before := n.Load()
			_, err := h.Run(context.Background(), attempt(map[string]any{"url": u, "timeout": "5s"}, nil))
			is.Equal(codeOf(err), "target_refused")                            // refused
			is.True(engine.IsPermanent(err))                                   // for good
			is.True(strings.Contains(err.Error(), `deny rule "127.0.0.0/8"`))  // naming the rule
			is.True(strings.Contains(err.Error(), "which the rule covers as")) // and how it covers the address
			is.Equal(n.Load(), before)                                         // the service saw nothing
		}
	})

	t.Run("the metadata address is refused by default, at once", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		h := newHTTP(t, HTTPConfig{})
		start := time.Now()
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": "http://169.254.169.254/latest/meta-data/", "timeout": "2s"}, nil))
		is.Equal(codeOf(err), "target_refused")                      // refused
		is.True(engine.IsPermanent(err))                             // for good
		is.True(strings.Contains(err.Error(), "169.254.169.254:80")) // naming the address
		is.True(strings.Contains(err.Error(), "169.254.0.0/16"))     // and the rule
		is.True(time.Since(start) < time.Second)                     // before any connection attempt

		for _, u := range []string{"http://[fe80::1]/", "http://[fd00:ec2::254]/", "http://[::ffff:169.254.169.254]/"} {
			_, err := h.Run(context.Background(), attempt(map[string]any{"url": u, "timeout": "2s"}, nil))
			is.Equal(codeOf(err), "target_refused") // IPv6 link-local and metadata too
		}
	})

	t.Run("an allow rule naming the metadata address lets it through", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		h := newHTTP(t, HTTPConfig{Allow: []string{"169.254.169.254"}})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": "http://169.254.169.254/", "timeout": "100ms"}, nil))
		is.True(err != nil)                      // nothing answers here
		is.True(codeOf(err) != "target_refused") // but the guard let the connection be tried
	})

	t.Run("allow rules limit requests to what they match", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {})
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		h := newHTTP(t, HTTPConfig{Allow: []string{"localhost", "10.0.0.0/8"}})

		_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
		is.Equal(codeOf(err), "target_refused")                         // 127.0.0.1 is not listed
		is.True(strings.Contains(err.Error(), "matches no allow rule")) // says why
		is.Equal(n.Load(), int64(0))                                    // and sent nothing

		_, err = h.Run(context.Background(), attempt(map[string]any{"url": fmt.Sprintf("http://localhost:%d/", port)}, nil))
		is.NoErr(err)                // the listed name is allowed
		is.Equal(n.Load(), int64(1)) // and reached the server
	})

	t.Run("a redirect to a refused address is not followed", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/iam/", http.StatusFound)
		})
		h := newHTTP(t, HTTPConfig{})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL, "timeout": "2s"}, nil))
		is.Equal(codeOf(err), "target_refused")                   // the dialer refused the redirect
		is.True(strings.Contains(err.Error(), "169.254.169.254")) // naming it
	})

	t.Run("a redirect to a denied server does not reach it", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ln, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("no 127.0.0.2 on this host: %v", err)
		}
		var denied atomic.Int64
		target := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { denied.Add(1) }))
		target.Listener.Close()
		target.Listener = ln
		target.Start()
		t.Cleanup(target.Close)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/stolen", http.StatusTemporaryRedirect)
		})
		h := newHTTP(t, HTTPConfig{Deny: []string{"127.0.0.2/32"}})
		_, err = h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
		is.Equal(codeOf(err), "target_refused")                // refused
		is.True(strings.Contains(err.Error(), "127.0.0.2/32")) // by the deny rule
		is.Equal(denied.Load(), int64(0))                      // the denied server saw nothing
	})

	t.Run("it follows at most five redirects", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {
			left, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
			if left > 0 {
				http.Redirect(w, r, "/"+strconv.Itoa(left-1), http.StatusFound)
				return
			}
			io.WriteString(w, "done")
		})
		h := newHTTP(t, HTTPConfig{})
		out, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL + "/5"}, nil))
		is.NoErr(err) // five redirects are followed
		_, _, body := output(t, out)
		is.Equal(body, "done")       // to the end
		is.Equal(n.Load(), int64(6)) // one request each

		_, err = h.Run(context.Background(), attempt(map[string]any{"url": srv.URL + "/6"}, nil))
		is.Equal(codeOf(err), "too_many_redirects") // a sixth is not
		is.True(engine.IsPermanent(err))            // and retrying will not help
	})
}

func TestHTTP_Breaker(t *testing.T) {
	t.Parallel()

	t.Run("it opens after consecutive failures, defers without a request, and probes after OpenFor", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		var healthy atomic.Bool
		srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {
			if !healthy.Load() {
				w.WriteHeader(http.StatusBadGateway)
			}
		})
		set := metrics.NewSet()
		const openFor = 50 * time.Millisecond
		h := newHTTP(t, HTTPConfig{Breaker: BreakerConfig{Failures: 3, OpenFor: openFor, TargetMetrics: true}, Metrics: set})
		host := srv.Listener.Addr().String()
		a := attempt(map[string]any{"url": srv.URL}, nil)
		gauge := func() string {
			var b bytes.Buffer
			set.WritePrometheus(&b)
			for line := range strings.Lines(b.String()) {
				if strings.HasPrefix(line, fmt.Sprintf(`orchestrator_circuit_breaker_state{kind="http_host",tenant="",name=%q}`, host)) {
					return strings.TrimSpace(line[strings.LastIndexByte(line, ' '):])
				}
			}
			return "missing"
		}

		for range 3 {
			_, err := h.Run(context.Background(), a)
			is.Equal(codeOf(err), "http_5xx") // each failure is the server's
		}
		is.Equal(h.BreakerState("", host), "open") // three in a row open it
		is.Equal(gauge(), "2")                     // and the gauge says so

		_, err := h.Run(context.Background(), a)
		reason, d, ok := deferredOf(t, err)
		is.True(ok)                                // the attempt is deferred
		is.Equal(reason, engine.ReasonCircuitOpen) // because the circuit is open
		is.True(d > 0 && d <= openFor)             // until it may close
		is.Equal(n.Load(), int64(3))               // without a request

		is.True(waitFor(t, 5*time.Second, func() bool { return h.BreakerState("", host) == "half-open" })) // after OpenFor it lets a probe through
		is.Equal(gauge(), "1")                                                                             // the gauge follows
		healthy.Store(true)
		_, err = h.Run(context.Background(), a)
		is.NoErr(err)                                // the probe succeeds
		is.Equal(h.BreakerState("", host), "closed") // and closes the breaker
		is.Equal(gauge(), "0")                       // the gauge follows
		is.Equal(n.Load(), int64(4))                 // the probe was the only new request
	})

	t.Run("permanent failures and refusals do not open it", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, _ := server(t, http.NotFound)
		h := newHTTP(t, HTTPConfig{Breaker: BreakerConfig{Failures: 2}})
		for range 5 {
			_, err := h.Run(context.Background(), attempt(map[string]any{"url": srv.URL}, nil))
			is.Equal(codeOf(err), "http_4xx") // permanent
		}
		is.Equal(h.BreakerState("", srv.Listener.Addr().String()), "closed") // the host answered: no reason to hold back
		is.Equal(h.BreakerState("", "nowhere.example:80"), "closed")         // a host never called is closed
	})

	t.Run("breakers are per tenant: one tenant's failures do not hold back another's call", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/failing" {
				w.WriteHeader(http.StatusBadGateway)
			}
		})
		set := metrics.NewSet()
		h := newHTTP(t, HTTPConfig{Breaker: BreakerConfig{Failures: 3, OpenFor: time.Hour}, Metrics: set})
		host := srv.Listener.Addr().String()
		acme := attempt(map[string]any{"url": srv.URL + "/failing"}, nil)
		acme.TenantID = "acme"
		for range 3 {
			_, err := h.Run(context.Background(), acme)
			is.Equal(codeOf(err), "http_5xx") // acme's target fails
		}
		is.Equal(h.BreakerState("acme", host), "open") // until acme's breaker opens
		_, err := h.Run(context.Background(), acme)
		_, _, deferred := deferredOf(t, err)
		is.True(deferred) // and holds acme back

		globex := attempt(map[string]any{"url": srv.URL + "/healthy"}, nil)
		globex.TenantID = "globex"
		out, err := h.Run(context.Background(), globex)
		is.NoErr(err) // globex's call to the same host goes through
		status, _, _ := output(t, out)
		is.Equal(status, 200)                              // answered
		is.Equal(n.Load(), int64(4))                       // three failures and globex's request
		is.Equal(h.BreakerState("globex", host), "closed") // globex's breaker is its own

		var b bytes.Buffer
		set.WritePrometheus(&b)
		text := b.String()
		is.True(strings.Contains(text, `orchestrator_circuit_breakers_open{kind="http_host"} 1`)) // the open breaker is counted
		is.True(!strings.Contains(text, host))                                                    // without naming the host
		is.True(!strings.Contains(text, "acme"))                                                  // or the tenant
	})

	t.Run("breakers are per host", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		bad, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
		good, _ := server(t, func(w http.ResponseWriter, r *http.Request) {})
		h := newHTTP(t, HTTPConfig{Breaker: BreakerConfig{Failures: 1, OpenFor: time.Hour}})
		_, err := h.Run(context.Background(), attempt(map[string]any{"url": bad.URL}, nil))
		is.Equal(codeOf(err), "http_5xx") // opens bad's breaker
		_, err = h.Run(context.Background(), attempt(map[string]any{"url": good.URL}, nil))
		is.NoErr(err) // good is not held back
	})
}

func TestNewHTTP(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	_, err := NewHTTP(HTTPConfig{Deny: []string{"10.0.0.0/33"}})
	is.True(err != nil) // a bad rule is refused
	_, err = NewHTTP(HTTPConfig{DefaultTimeout: -time.Second})
	is.True(err != nil) // so is a negative timeout
}

func TestDNSMessage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  *net.DNSError
		want string
	}{
		{"no such host", &net.DNSError{Err: "no such host", Name: "x.invalid", Server: "10.0.0.2:53", IsNotFound: true}, "lookup x.invalid: no such host"},
		{"a timeout", &net.DNSError{Err: "read udp 10.0.0.5:41234->10.0.0.2:53: i/o timeout", Name: "x.example", Server: "10.0.0.2:53", IsTimeout: true}, "lookup x.example: the DNS lookup timed out"},
		{"an unreachable resolver", &net.DNSError{Err: "dial udp [fd00::2]:53: connect: network is unreachable", Name: "x.example", Server: "[fd00::2]:53"}, "lookup x.example: the DNS lookup failed"},
		{"a failure that names no resolver", &net.DNSError{Err: "server misbehaving", Name: "x.example", Server: "10.0.0.2:53"}, "lookup x.example: server misbehaving"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			is.Equal(dnsMessage(c.err), c.want) // the lookup and why, no resolver
		})
	}
}
