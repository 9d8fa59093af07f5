package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// waitTimeout bounds every wait of the browser tests.
const waitTimeout = 20 * time.Second

// uiServer is the whole API (a real engine on a SQLite file in a temp
// directory) on 127.0.0.1, as the browser sees it.
type uiServer struct {
	URL     string
	Engine  *engine.Engine
	Keys    *engine.Keys
	Admin   *engine.Admin
	Key     string // sent by call, when set
	srv     *httptest.Server
	release chan struct{} // closed: every "block" attempt completes
	once    sync.Once
}

type uiOptions struct {
	AuthRequired bool   // keys needed; an access store
	DBPath       string // the database file; default a new one in t.TempDir()
	// TriggerStatus, when set, is what the stream triggers' consumers
	// report (the trigger manager's Status, which needs a broker).
	TriggerStatus func(tenantID, name string) *engine.TriggerStatus
	// Wrap, when set, wraps the API's handler: a test's view of the
	// requests, or its hold on some of them.
	Wrap func(http.Handler) http.Handler
}

// newUIServer serves the API with a "block" task type whose attempts run
// until Release (or the server stops).
func newUIServer(t testing.TB, opts uiOptions) *uiServer {
	t.Helper()
	ctx := context.Background()
	path := opts.DBPath
	if path == "" {
		path = filepath.Join(t.TempDir(), "ui.db")
	}
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	s := &uiServer{release: make(chan struct{})}
	cfg := engine.Config{Store: db, ExternalTypes: true}
	mode := api.AuthLocal
	if opts.AuthRequired {
		mode = api.AuthRequired
		if s.Keys, err = engine.NewKeys(engine.KeysConfig{Store: db}); err != nil {
			t.Fatalf("new keys: %v", err)
		}
		t.Cleanup(func() { s.Keys.Stop() })
		s.Admin = &engine.Admin{Store: db, Keys: s.Keys}
		cfg.TenantFunc = s.Keys.Tenant
	}
	if s.Engine, err = engine.New(cfg); err != nil {
		t.Fatalf("new engine: %v", err)
	}
	block := engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
		select {
		case <-s.release:
			return json.RawMessage(`{"released":true}`), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	if err := s.Engine.Register("block", block); err != nil {
		t.Fatal(err)
	}
	// flaky fails its first attempt, so that a run shows a retry and its
	// backoff.
	flaky := engine.HandlerFunc(func(_ context.Context, a *engine.Attempt) (json.RawMessage, error) {
		if a.Attempt == 1 {
			return nil, &engine.TaskError{Code: "upstream_503", Message: "the upstream answered 503"}
		}
		return json.RawMessage(`{"ok":true}`), nil
	})
	if err := s.Engine.Register("flaky", flaky); err != nil {
		t.Fatal(err)
	}
	if err := s.Engine.Start(ctx); err != nil {
		t.Fatalf("start engine: %v", err)
	}
	sealer, err := engine.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	trig := &engine.Triggers{Store: db, Engine: s.Engine, Sealer: sealer, StatusFunc: opts.TriggerStatus}
	var h http.Handler = (&api.Server{Engine: s.Engine, Keys: s.Keys, Admin: s.Admin, Triggers: trig, AuthMode: mode}).Handler()
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	srv := httptest.NewServer(h)
	s.srv = srv
	t.Cleanup(func() {
		s.Release()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Engine.Stop(ctx)
	})
	s.URL = srv.URL
	return s
}

// Release lets every "block" attempt, running or to come, complete.
func (s *uiServer) Release() { s.once.Do(func() { close(s.release) }) }

// call sends a JSON request to the API and decodes the answer into out.
func (s *uiServer) call(t testing.TB, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.Key != "" {
		req.Header.Set("Authorization", "Bearer "+s.Key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return res.StatusCode
}

// start starts a run of an inline definition and returns its id.
func (s *uiServer) start(t testing.TB, def string) string {
	t.Helper()
	var run struct{ ID string }
	if st := s.call(t, "POST", "/api/v1/tenants/default/workflows", `{"definition":`+def+`,"input":{"n":1}}`, &run); st != http.StatusCreated {
		t.Fatalf("start: %d", st)
	}
	return run.ID
}

type runDetails struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Tasks []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"tasks"`
}

// task is the state of the run's task id.
func (d runDetails) task(id string) string {
	for _, t := range d.Tasks {
		if t.ID == id {
			return t.State
		}
	}
	return ""
}

func (s *uiServer) run(t testing.TB, id string) runDetails {
	t.Helper()
	var d runDetails
	if st := s.call(t, "GET", "/api/v1/tenants/default/workflows/"+id, "", &d); st != http.StatusOK {
		t.Fatalf("get run: %d", st)
	}
	return d
}

// waitRun waits until the run's details satisfy ok.
func (s *uiServer) waitRun(t testing.TB, id string, ok func(runDetails) bool) runDetails {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		d := s.run(t, id)
		if ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: condition not met by the deadline: %+v", id, d)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}

// browserPath finds Chromium: $CHROME_PATH, chromium, chromium-browser or
// google-chrome. Without one the test fails in CI (which installs it) and
// is skipped elsewhere.
func browserPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CHROME_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no browser: install chromium (apt-get install -y chromium) or set CHROME_PATH; .ci/run installs it")
	}
	t.Skip("no browser found (chromium, chromium-browser or $CHROME_PATH); the browser tests run in CI, where .ci/run installs chromium")
	return ""
}

// request is one request the page made.
type request struct {
	Method, URL string
	Auth        string // its Authorization header
}

// browser is a headless Chromium tab that records every request the page
// makes and every console error and uncaught exception.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex // protects the following fields
	errors   []string
	requests []request
}

// shared is the one Chromium of the test binary, started by the first test
// that needs it and stopped by TestMain; each test opens a tab of its own
// (its own session storage, listeners and requests).
var shared struct {
	once   sync.Once
	ctx    context.Context // the browser's: NewContext on it opens a tab
	cancel func()
	err    error
}

func sharedBrowser(path string) (context.Context, error) {
	shared.once.Do(func() {
		opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
			chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
			chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 1000))
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(actx)
		shared.ctx, shared.cancel = ctx, func() { cancel(); cancelAlloc() }
		shared.err = chromedp.Do(ctx) // starts the browser: no deadline on this first call
	})
	return shared.ctx, shared.err
}

// stopBrowser stops the shared browser, if a test started it.
func stopBrowser() {
	if shared.cancel != nil {
		shared.cancel()
	}
}

// newBrowser opens a tab of the shared browser, closed when the test ends.
func newBrowser(t testing.TB) *browser {
	t.Helper()
	bctx, err := sharedBrowser(browserPath(t))
	if err != nil {
		t.Fatalf("start the browser: %v", err)
	}
	b := &browser{}
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithListener(b.listen))
	t.Cleanup(cancel)
	b.ctx = ctx
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return b
}

// listen records the page's errors and requests.
func (b *browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.errors = append(b.errors, "console."+string(ev.Type)+": "+strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.errors = append(b.errors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
	case *log.EventEntryAdded:
		// A refused request (a 409 the page shows) is the network's
		// business; anything else logged as an error (a CSP violation, a
		// module that does not load) is a fault of the page.
		if ev.Entry.Level == log.EntryLevelError && ev.Entry.Source != log.EntrySourceNetwork {
			b.errors = append(b.errors, fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case *network.EventRequestWillBeSent:
		auth, _ := ev.Request.Headers["Authorization"].(string)
		b.requests = append(b.requests, request{ev.Request.Method, ev.Request.URL, auth})
	}
}

// do runs the steps within the wait deadline.
func (b *browser) do(t testing.TB, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v (page errors: %v)", what, err, b.pageErrors())
	}
}

// open navigates to the UI page at hash (#/runs...).
func (b *browser) open(t testing.TB, s *uiServer, hash string) {
	t.Helper()
	b.do(t, "open "+hash, chromedp.Navigate(s.URL+"/ui/"+hash))
}

// evalJS evaluates expr in the page and decodes its value.
func evalJS[T any](t testing.TB, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the expression is true in the page.
func (b *browser) waitJS(t testing.TB, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(document.getElementById('main') || document.body).innerText.slice(0, 3000)`))
			t.Fatalf("%s: %s is not true by the deadline (%v); page errors %v; page:\n%s", what, expr, err, b.pageErrors(), text)
		}
		time.Sleep(25 * time.Millisecond) // polling a condition, with a deadline
	}
}

func (b *browser) pageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.errors)
}

// noErrors fails the test for every console error or exception so far.
func (b *browser) noErrors(t testing.TB) {
	t.Helper()
	for _, e := range b.pageErrors() {
		t.Errorf("JavaScript error: %s", e)
	}
}

// screenshot saves the full page as NAME.png in $UI_SCREENSHOTS, or in
// testdata/screenshots.
func (b *browser) screenshot(t testing.TB, name string) {
	t.Helper()
	dir := os.Getenv("UI_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("testdata", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// documented fails the test for every request of the page to the server
// that is not an operation of the server's OpenAPI document.
func (b *browser) documented(t testing.TB, s *uiServer) {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if st := s.call(t, "GET", "/openapi.json", "", &doc); st != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d", st)
	}
	b.mu.Lock()
	reqs := slices.Clone(b.requests)
	b.mu.Unlock()
	base, _ := url.Parse(s.URL)
	n := 0
	for _, r := range reqs {
		u, err := url.Parse(r.URL)
		if err != nil || u.Host != base.Host {
			if err == nil && (u.Scheme == "data" || u.Scheme == "blob") {
				continue
			}
			t.Errorf("the page requested %s %s, outside the server", r.Method, r.URL)
			continue
		}
		n++
		if !documentedOp(doc.Paths, r.Method, u.Path) {
			t.Errorf("the page requested %s %s, which the OpenAPI document does not list", r.Method, u.Path)
		}
	}
	if n == 0 {
		t.Error("the page made no request to the server")
	}
}

// documentedOp reports whether method and path are an operation of paths:
// a {param} matches one segment, and a last {filepath} (the route's
// catch-all) the rest of the path.
func documentedOp(paths map[string]map[string]json.RawMessage, method, path string) bool {
	segs := strings.Split(path, "/")
	for tmpl, item := range paths {
		if _, ok := item[strings.ToLower(method)]; !ok {
			continue
		}
		ts := strings.Split(tmpl, "/")
		if strings.HasSuffix(tmpl, "/{filepath}") && len(segs) >= len(ts) && matchSegs(ts[:len(ts)-1], segs[:len(ts)-1]) {
			return true
		}
		if len(ts) == len(segs) && matchSegs(ts, segs) {
			return true
		}
	}
	return false
}

func matchSegs(tmpl, segs []string) bool {
	for i := range tmpl {
		if strings.HasPrefix(tmpl[i], "{") && segs[i] != "" {
			continue
		}
		if tmpl[i] != segs[i] {
			return false
		}
	}
	return true
}

// click clicks the first element matching the CSS selector.
func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }

// count is the number of elements the CSS selector matches.
func (b *browser) count(t testing.TB, sel string) int {
	t.Helper()
	return evalJS[int](t, b, `document.querySelectorAll(`+strconvQuote(sel)+`).length`)
}

func strconvQuote(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
