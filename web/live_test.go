package web_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orchestrator/orchestrator/engine"
)

// gate holds what a test chooses (a request, a stream's writes) once it is
// armed, until the test opens it.
type gate struct {
	armed    atomic.Bool
	held     chan struct{} // closed once something waits at the gate
	open     chan struct{} // closed by Open: what waits goes on
	heldOnce sync.Once
	openOnce sync.Once
}

func newGate() *gate { return &gate{held: make(chan struct{}), open: make(chan struct{})} }

// pass waits at the gate while it is armed and shut.
func (g *gate) pass() {
	if !g.armed.Load() {
		return
	}
	g.heldOnce.Do(func() { close(g.held) })
	<-g.open
}

// Open lets everything through, now and from then on. It is idempotent.
func (g *gate) Open() { g.openOnce.Do(func() { close(g.open) }) }

// waitHeld waits until something waits at the gate.
func (g *gate) waitHeld(t testing.TB, what string) {
	t.Helper()
	select {
	case <-g.held:
	case <-time.After(waitTimeout):
		t.Fatalf("%s is not held by the deadline", what)
	}
}

// gatedWriter passes every write of a response through a gate and keeps a
// copy of what it wrote.
type gatedWriter struct {
	http.ResponseWriter
	g    *gate
	mu   *sync.Mutex   // protects sent
	sent *bytes.Buffer // every byte written
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	w.g.pass()
	w.mu.Lock()
	w.sent.Write(p)
	w.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

func (w *gatedWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (w *gatedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestUI_EditorValidatesAfterThePause: keystrokes in quick succession
// cause no validation request; one follows, with the final text, once the
// typing has paused for 300 ms.
func TestUI_EditorValidatesAfterThePause(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	b := newBrowser(t)
	b.open(t, s, "#/editor")
	b.waitJS(t, "the sample validates", `document.getElementById('validity').textContent.includes('valid')`)
	// The page notes when each keystroke's input event is handled (on the
	// document, in the capture phase: before the editor's own listener)
	// and when each validation request is made.
	b.do(t, "watch the keystrokes and the requests", chromedp.Evaluate[chromedp.Void](`(() => {
		window.uiTest = { keys: [], validations: [] };
		document.addEventListener('input', () => uiTest.keys.push(performance.now()), true);
		const fetch0 = window.fetch;
		window.fetch = function (input, init) {
			if (String(input).endsWith('/api/v1/dag/validate')) uiTest.validations.push({ at: performance.now(), body: init && init.body });
			return fetch0.apply(this, arguments);
		};
	})()`))
	typed := `{"name":"typed","tasks":[{"id":"a","type":"noop"}]}`
	b.do(t, "type", clearEditor, chromedp.SendKeys(chromedp.CSS(`#definition`), typed))
	b.waitJS(t, "the typed text validated", `uiTest.validations.length && uiTest.validations.at(-1).body === document.getElementById('definition').value &&
		document.getElementById('validity').textContent === '✓ valid: 1 levels'`)

	got := evalJS[struct {
		Keys    int       `json:"keys"`
		MaxGap  float64   `json:"maxGap"`
		After   []float64 `json:"after"`   // each request after the last keystroke: ms since it
		Between []float64 `json:"between"` // each request made while typing: ms since the keystroke before it
	}](t, b, `(() => {
		const { keys, validations } = uiTest;
		const last = keys.at(-1);
		const before = (at) => Math.max(...keys.filter((k) => k <= at));
		return {
			keys: keys.length,
			maxGap: Math.max(0, ...keys.slice(1).map((k, i) => k - keys[i])),
			after: validations.filter((v) => v.at > last).map((v) => v.at - last),
			between: validations.filter((v) => v.at <= last).map((v) => v.at - before(v.at)),
		};
	})()`)
	t.Logf("%d keystrokes, at most %.0f ms apart; requests while typing %v, after it %v (ms)", got.Keys, got.MaxGap, got.Between, got.After)
	if got.Keys != len(typed) {
		t.Fatalf("%d input events for %d keystrokes", got.Keys, len(typed))
	}
	if len(got.After) != 1 || got.After[0] < 300 {
		t.Errorf("after the last keystroke: requests %v ms after it, want one, 300 ms or more after it", got.After)
	}
	for _, ms := range got.Between {
		// Only a pause of the typing itself (a slow machine) may cause one.
		if ms < 300 {
			t.Errorf("a validation request %.0f ms after a keystroke, while typing", ms)
		}
	}
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_RunsListReadsTheListAgainOnResync: the tenant's stream stops
// being read (its writes are held, as a slow link would), its subscriber
// falls behind and drops changes, among them every change of a new run;
// once the stream flows again it sends resync, and the list, read again,
// shows the run no event told it about.
func TestUI_RunsListReadsTheListAgainOnResync(t *testing.T) {
	stream := newGate()
	var mu sync.Mutex
	var sent bytes.Buffer
	s := newUIServer(t, uiOptions{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/api/v1/tenants/default/stream" {
				w = &gatedWriter{ResponseWriter: w, g: stream, mu: &mu, sent: &sent}
			}
			next.ServeHTTP(w, r)
		})
	}})
	t.Cleanup(stream.Open) // before the server closes, which waits for the stream's handler
	target := `{"name":"target","tasks":[{"id":"a","type":"noop"}]}`
	for _, def := range []string{quick, target} {
		if st := s.call(t, "POST", "/api/v1/tenants/default/definitions", def, nil); st != http.StatusCreated {
			t.Fatalf("register: %d", st)
		}
	}
	b := newBrowser(t)
	b.open(t, s, "#/runs?workflow=target")
	b.waitJS(t, "the empty list, live", `document.querySelector('#runs-body td.muted') && document.getElementById('live').dataset.live === 'live'`)

	// The stream's next write is held: the server stops reading its
	// subscription, which takes 256 changes before it drops any.
	ctx := context.Background()
	startQuick := func() {
		if _, err := s.Engine.StartRun(ctx, engine.StartRequest{TenantID: "default", Workflow: "quick"}); err != nil {
			t.Fatalf("start: %v", err)
		}
	}
	stream.armed.Store(true)
	startQuick()
	stream.waitHeld(t, "the stream's write")
	witness := s.Engine.Subscribe("default", "", 1<<14) // is offered every change the stream's subscription is
	defer witness.Close()
	deadline := time.Now().Add(waitTimeout)
	for len(witness.C()) <= 300 {
		if time.Now().After(deadline) {
			t.Fatalf("%d changes by the deadline", len(witness.C()))
		}
		startQuick()
	}
	id := s.start(t, target)
	// Every change of the run is published (and dropped by the stream's
	// full subscription) before the stream flows again.
	for done := false; !done; {
		select {
		case c := <-witness.C():
			done = c.RunID == id && c.State == engine.RunCompleted
		case <-time.After(waitTimeout):
			t.Fatal("the run's completion was not published by the deadline")
		}
	}
	stream.Open()

	b.waitJS(t, "the run the stream did not send", fmt.Sprintf(`document.querySelector('#runs-body tr[data-run=%q]')`, id))
	mu.Lock()
	out := sent.String()
	mu.Unlock()
	if !strings.Contains(out, "event: resync\ndata: {\"reason\":\"lagged\"}") {
		t.Errorf("the stream sent no resync (lagged): %.500q", out)
	}
	if strings.Contains(out, id) {
		t.Errorf("the stream sent run %s: the list may have learnt of it from an event", id)
	}
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_ARefusedStreamSaysSoWithoutTheLoginForm: the key is revoked while
// the runs list is open; the stream, cut off, reconnects and is refused
// with 401. The page stays and says its updates stopped, and why; the next
// call the reader makes is refused too, and that one asks for a key.
func TestUI_ARefusedStreamSaysSoWithoutTheLoginForm(t *testing.T) {
	s := newUIServer(t, uiOptions{AuthRequired: true})
	ctx := context.Background()
	k, key, err := s.Admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "ui"})
	if err != nil {
		t.Fatal(err)
	}
	_, owner, err := s.Admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleOwner, Name: "boss"})
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	b.open(t, s, "#/runs")
	b.do(t, "log in", chromedp.WaitVisible(chromedp.CSS(`#login-form input[name=key]`)),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name=key]`), key), click(`#login-form button`))
	b.waitJS(t, "the list, live", `document.getElementById('live') && document.getElementById('live').dataset.live === 'live'`)

	if _, err := s.Admin.RevokeKey(ctx, engine.LocalAdmin(), "default", k.ID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	s.srv.CloseClientConnections()
	b.waitJS(t, "the page says its updates stopped", `document.getElementById('live').dataset.live === 'stopped' && document.getElementById('live').textContent.includes('(401)')`)
	if hash := evalJS[string](t, b, `location.hash`); hash != "#/runs" || b.count(t, "#login-form") != 0 {
		t.Errorf("the refused stream took the page to %s (a login form: %d)", hash, b.count(t, "#login-form"))
	}

	b.do(t, "filter", chromedp.SendKeys(chromedp.CSS(`#run-filters input[name=workflow]`), "quick"), click(`#run-filters button`))
	b.waitJS(t, "the refused call asks for a key", `document.getElementById('login-form') && location.hash === '#/login'`)
	b.noErrors(t)
	s.Key = owner
	b.documented(t, s)
}

// TestUI_RunPageTakesEventsThatCommitWhileItLoads: the run page has read
// the run when its read of the history is held; meanwhile the run is
// paused and its running task completes. The page then shows the run as
// the server has it (paused, the task completed, one task done) and every
// event once, with no further event to wake it.
func TestUI_RunPageTakesEventsThatCommitWhileItLoads(t *testing.T) {
	history := newGate()
	history.armed.Store(true)
	s := newUIServer(t, uiOptions{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/events") && r.URL.Query().Get("verify") == "true" {
				history.pass()
			}
			next.ServeHTTP(w, r)
		})
	}})
	t.Cleanup(history.Open) // before the server closes, which waits for the held request
	id := s.start(t, `{"name":"two","tasks":[{"id":"hold","type":"block"},{"id":"then","type":"noop","depends_on":["hold"]}]}`)
	s.waitRun(t, id, func(d runDetails) bool { return d.task("hold") == "running" })
	b := newBrowser(t)
	b.open(t, s, "#/runs/"+id)
	history.waitHeld(t, "the page's read of the history") // it follows the read of the run

	if st := s.call(t, "POST", "/api/v1/tenants/default/workflows/"+id+"/pause", "", nil); st != http.StatusOK {
		t.Fatalf("pause: %d", st)
	}
	s.Release()
	s.waitRun(t, id, func(d runDetails) bool { return d.State == "paused" && d.task("hold") == "completed" })
	var want struct {
		LastSeq  int `json:"last_seq"`
		Progress struct {
			Done int `json:"done"`
		} `json:"progress"`
	}
	if st := s.call(t, "GET", "/api/v1/tenants/default/workflows/"+id, "", &want); st != http.StatusOK || want.Progress.Done != 1 {
		t.Fatalf("get the run: %d, %+v", st, want)
	}
	history.Open()

	b.waitJS(t, "the run as the server has it", fmt.Sprintf(`document.querySelector('#run-state').dataset.state === 'paused' &&
		document.querySelector('svg.dag g.node[data-task=hold]').dataset.state === 'completed' &&
		document.querySelector('#run-header progress').value === %d`, want.Progress.Done))
	b.waitJS(t, "every event", fmt.Sprintf(`document.querySelectorAll('#events-body tr[data-seq]').length >= %d`, want.LastSeq))
	seqs := evalJS[[]int](t, b, `[...document.querySelectorAll('#events-body tr[data-seq]')].map((r) => +r.dataset.seq)`)
	for i, seq := range seqs {
		if seq != i+1 || len(seqs) != want.LastSeq {
			t.Fatalf("the history shows seqs %v, want 1 to %d, each once", seqs, want.LastSeq)
		}
	}
	b.noErrors(t)
	b.documented(t, s)
}
