package web_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orchestrator/orchestrator/engine"
)

// diamond is a run that stops at "slow" (a blocking task) with "fast" done
// beside it (on its second attempt, after a backoff) and "join" waiting for
// both: a DAG with tasks in three states.
const diamond = `{"name":"diamond","tasks":[
 {"id":"start","type":"noop"},
 {"id":"slow","type":"block","depends_on":["start"]},
 {"id":"fast","type":"flaky","depends_on":["start"],"retry":{"max_attempts":3,"initial_interval":"300ms"}},
 {"id":"join","type":"noop","depends_on":["slow","fast"]}]}`

const quick = `{"name":"quick","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`

// TestUI_RunsListAndRunPage opens the runs list, sees a new run arrive
// through the tenant's stream, opens it, sees its DAG
// with one node per task in the state the API reports, pauses it from the
// page, sees a resume made elsewhere arrive through the run's stream, is refused a second
// resume with the server's text, reads why a task waits, opens a task's
// attempts, and sees the run complete, without a JavaScript error.
func TestUI_RunsListAndRunPage(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	for range 3 {
		id := s.start(t, quick)
		s.waitRun(t, id, func(d runDetails) bool { return d.State == "completed" })
	}
	failing := s.start(t, `{"name":"once","tasks":[{"id":"call","type":"flaky"}]}`) // one attempt: it fails
	s.waitRun(t, failing, func(d runDetails) bool { return d.State == "failed" })
	cancelled := s.start(t, `{"name":"held","tasks":[{"id":"hold","type":"block"}]}`)
	if st := s.call(t, "POST", "/api/v1/tenants/default/workflows/"+cancelled+"/cancel", "", nil); st != http.StatusOK {
		t.Fatalf("cancel: %d", st)
	}
	b := newBrowser(t)
	b.open(t, s, "#/runs")
	b.waitJS(t, "the runs list shows every run", `document.querySelectorAll('#runs-body tr[data-run]').length === 5`)
	b.waitJS(t, "the list follows the tenant's stream", `document.getElementById('live').textContent.includes('live')`)

	// A run started now appears on the open list, through the stream.
	id := s.start(t, diamond)
	want := s.waitRun(t, id, func(d runDetails) bool {
		return d.task("slow") == "running" && d.task("fast") == "completed"
	})
	b.waitJS(t, "the new run arrives", `document.querySelectorAll('#runs-body tr[data-run]').length === 6`)
	if got := evalJS[string](t, b, `document.querySelector('#runs-body tr[data-run]').dataset.run`); got != id {
		t.Errorf("first row is run %s, want the newest, %s", got, id)
	}
	b.waitJS(t, "in its state", `document.querySelector('#runs-body tr[data-run]').dataset.state === 'running'`)
	for state, n := range map[string]int{"completed": 3, "failed": 1, "cancelled": 1, "running": 1, "paused": 0} {
		b.waitJS(t, "the count of "+state, fmt.Sprintf(`document.querySelector('[data-count=%s]').textContent.trim().endsWith(' %d')`, state, n))
	}
	b.waitJS(t, "the counts are the server's totals", `document.getElementById('run-counts').textContent.includes('6 runs:')`)
	b.screenshot(t, "runs-list")

	b.do(t, "open the run", click(`#runs-body a[href="#/runs/`+id+`"]`))
	b.waitJS(t, "the DAG is drawn", `document.querySelectorAll('svg.dag g.node').length === 4`)
	for _, task := range want.Tasks {
		sel := fmt.Sprintf(`svg.dag g.node[data-task=%q]`, task.ID)
		b.waitJS(t, "node "+task.ID+" in its state", fmt.Sprintf(`document.querySelector(%s).dataset.state === %q && document.querySelector(%s).textContent.includes(%q)`,
			strconvQuote(sel), task.State, strconvQuote(sel), task.State))
	}
	b.waitJS(t, "the timeline: one row per attempt", `document.querySelectorAll('svg.gantt g.row').length === 4`)
	b.waitJS(t, "the retry's backoff", `document.querySelector('svg.gantt g.row[data-task=fast][data-attempt="1"] rect.backoff')`)
	b.waitJS(t, "the verified hash chain", `document.getElementById('chain').textContent.includes('verified')`)
	b.waitJS(t, "why join waits", `document.querySelector('#explain li[data-task=join][data-reason=dependencies]') && document.querySelector('#explain li[data-task=join]').textContent.includes('slow')`)
	b.waitJS(t, "the page follows the run's stream", `document.getElementById('live').textContent.includes('live')`)

	// Pause from the page, confirming.
	b.do(t, "pause", click(`button[data-action=pause]`))
	b.do(t, "confirm", chromedp.WaitVisible(chromedp.CSS(`#confirm-yes`)), click(`#confirm-yes`))
	b.waitJS(t, "the page shows the run paused", `document.querySelector('#run-state').dataset.state === 'paused'`)
	s.waitRun(t, id, func(d runDetails) bool { return d.State == "paused" })
	b.waitJS(t, "the pause is in the history", `document.querySelector('#events-body tr[data-type="run.paused"]')`)
	b.waitJS(t, "who paused it", `document.getElementById('control-actions').textContent.includes('paused by local')`)

	// A resume by someone else arrives live.
	if st := s.call(t, "POST", "/api/v1/tenants/default/workflows/"+id+"/resume", "", nil); st != http.StatusOK {
		t.Fatalf("resume: %d", st)
	}
	b.waitJS(t, "the resume arrives", `document.querySelector('#run-state').dataset.state === 'running'`)
	b.waitJS(t, "the resume is in the history", `document.querySelector('#events-body tr[data-type="run.resumed"]')`)

	// A second resume is refused, with the server's text.
	b.do(t, "resume again", click(`button[data-action=resume]`), chromedp.WaitVisible(chromedp.CSS(`#confirm-yes`)), click(`#confirm-yes`))
	b.waitJS(t, "the refusal", `!document.getElementById('flash').hidden && document.getElementById('flash').textContent.includes('409')`)
	flash := evalJS[string](t, b, `document.getElementById('flash').textContent`)
	if !strings.Contains(flash, "running") {
		t.Errorf("the refusal %q does not say the run is running", flash)
	}

	// A task's attempts.
	b.do(t, "select slow", click(`svg.dag g.node[data-task=slow]`))
	b.waitJS(t, "its panel", `document.querySelector('#task-panel [data-task=slow] table.attempts tr[data-attempt="1"]')`)

	b.screenshot(t, "run-page-running")
	s.Release()
	b.waitJS(t, "the run completes on the page", `document.querySelector('#run-state').dataset.state === 'completed'`)
	b.waitJS(t, "every node completed", `[...document.querySelectorAll('svg.dag g.node')].every(n => n.dataset.state === 'completed')`)
	b.waitJS(t, "the header refreshed", `document.querySelector('#run-header progress').value === 4`)
	b.waitJS(t, "the critical path runs through slow", `document.querySelector('svg.gantt g.row.critical[data-task=slow]') && document.querySelector('svg.dag g.node.critical[data-task=slow]')`)
	b.screenshot(t, "run-page")
	b.noErrors(t)
	b.documented(t, s)
}

// clearEditor empties the editor's text (typing then fills it).
var clearEditor = chromedp.Evaluate[chromedp.Void](`document.getElementById('definition').value = ''`)

// TestUI_EditorShowsACycle types a definition with a cycle into the editor
// and sees the validator's cycle error at its task and field, then fixes it
// and registers it.
func TestUI_EditorShowsACycle(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	b := newBrowser(t)
	b.open(t, s, "#/editor")
	b.waitJS(t, "the sample validates", `document.getElementById('validity').textContent.includes('valid')`)
	b.waitJS(t, "its preview", `document.querySelectorAll('#preview svg.dag g.node').length === 3`)

	cyclic := `{"name":"loop","tasks":[{"id":"a","type":"noop","depends_on":["c"]},{"id":"b","type":"noop","depends_on":["a"]},{"id":"c","type":"noop","depends_on":["b"]}]}`
	b.do(t, "type a cycle", clearEditor, chromedp.SendKeys(chromedp.CSS(`#definition`), cyclic))
	b.waitJS(t, "the cycle error", `[...document.querySelectorAll('#problems li')].some(li => li.textContent.includes('cycle') && li.dataset.field)`)
	problem := evalJS[map[string]string](t, b, `(() => { const li = [...document.querySelectorAll('#problems li')].find(li => li.textContent.includes('cycle')); return {task: li.dataset.task, field: li.dataset.field, text: li.textContent}; })()`)
	if problem["task"] == "" || !strings.Contains(problem["field"], "depends_on") || !strings.Contains(problem["text"], "->") {
		t.Errorf("the cycle is shown as %v, want it at a task's depends_on, spelled out", problem)
	}
	b.waitJS(t, "the task is marked in the preview", `document.querySelector('#preview g.node.state-invalid')`)
	b.screenshot(t, "editor-cycle")

	b.do(t, "break the cycle", clearEditor,
		chromedp.SendKeys(chromedp.CSS(`#definition`), strings.Replace(cyclic, `"depends_on":["c"]`, `"depends_on":[]`, 1)))
	b.waitJS(t, "valid again", `document.getElementById('validity').textContent.includes('✓ valid') && !document.querySelector('#problems li')`)
	b.do(t, "register", click(`#register`))
	b.waitJS(t, "registered", `document.getElementById('register-result').textContent.includes('loop v1')`)
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_DefinitionsAndAudit opens the definitions list, a definition's
// versions with the DAG preview of one and its difference from another,
// and the audit search with a filter and the NDJSON export, every request
// going to a documented route.
func TestUI_DefinitionsAndAudit(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	id := s.start(t, quick)
	s.waitRun(t, id, func(d runDetails) bool { return d.State == "completed" })
	v2 := strings.Replace(quick, `{"id":"b","type":"noop","depends_on":["a"]}`, `{"id":"b","type":"noop","depends_on":["a"]},{"id":"c","type":"noop","depends_on":["a"]}`, 1)
	if st := s.call(t, "POST", "/api/v1/tenants/default/definitions", v2, nil); st != http.StatusCreated {
		t.Fatalf("register v2: %d", st)
	}
	if st := s.call(t, "PUT", "/api/v1/tenants/default/definitions/quick/aliases/prod", `{"versions":[{"version":1,"weight":90},{"version":2,"weight":10}]}`, nil); st != http.StatusOK && st != http.StatusCreated {
		t.Fatalf("set the alias prod: %d", st)
	}
	b := newBrowser(t)

	b.open(t, s, "#/definitions")
	b.waitJS(t, "the list", `document.querySelector('#definitions tr[data-name=quick]')`)
	b.do(t, "open quick", click(`#definitions a[href="#/definitions/quick"]`))
	b.waitJS(t, "its versions", `document.querySelectorAll('#versions li').length === 2`)
	b.waitJS(t, "the alias and its weights", `(document.querySelector('#aliases li[data-alias=prod]') || {}).textContent.startsWith('prod → v1 90% + v2 10%')`)
	b.waitJS(t, "the alias next to both versions", `document.querySelectorAll('#versions .badge.alias[data-alias=prod]').length === 2`)
	b.waitJS(t, "the preview of v2", `document.querySelectorAll('#dag svg.dag g.node').length === 3`)
	b.open(t, s, "#/definitions/quick/2?compare=1")
	b.waitJS(t, "the difference", `document.querySelector('#diff tr.diff-added') && document.querySelector('#diff').textContent.includes('task c')`)

	b.open(t, s, "#/audit?type=run.created")
	b.waitJS(t, "the audit rows", `document.querySelectorAll('#audit-body tr[data-type]').length === 1`)
	if got := evalJS[string](t, b, `document.querySelector('#audit-body tr[data-type]').dataset.type`); got != "run.created" {
		t.Errorf("the filtered search shows %s", got)
	}
	b.open(t, s, "#/audit")
	b.waitJS(t, "every event", `document.querySelectorAll('#audit-body tr[data-type]').length >= 8`)
	b.do(t, "export", click(`#export`))
	b.waitJS(t, "the export", `document.querySelector('#export + span').textContent.includes('done')`)
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_LoginWithAKey: with AUTH=required the page asks for a key, keeps
// it in session storage only, sends it as a bearer token on every API
// call, refuses a wrong one with the server's reason, and forgets it on
// logout.
func TestUI_LoginWithAKey(t *testing.T) {
	s := newUIServer(t, uiOptions{AuthRequired: true})
	_, key, err := s.Admin.CreateKey(context.Background(), engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "ui"})
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	b.open(t, s, "#/runs")
	b.waitJS(t, "the login form", `document.getElementById('login-form')`)

	b.do(t, "a wrong key", chromedp.SendKeys(chromedp.CSS(`#login-form input[name=key]`), "orch_0123456789abcdef_"+strings.Repeat("ab", 32)), click(`#login-form button`))
	b.waitJS(t, "refused", `document.querySelector('#login-form .error').textContent.includes('invalid')`)
	if got := evalJS[string](t, b, `sessionStorage.getItem('orchestrator.key') || ''`); got != "" {
		t.Errorf("a refused key is kept: %q", got)
	}

	b.do(t, "the key", chromedp.Evaluate[chromedp.Void](`document.querySelector('#login-form input[name=key]').value = ''`),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name=key]`), key), click(`#login-form button`))
	b.waitJS(t, "the runs list", `document.getElementById('runs-body')`)
	if got := evalJS[string](t, b, `sessionStorage.getItem('orchestrator.key')`); got != key {
		t.Errorf("session storage holds %q, want the key", got)
	}
	if n := evalJS[int](t, b, `localStorage.length + document.cookie.length`); n != 0 {
		t.Errorf("the key reached local storage or a cookie (%d)", n)
	}
	b.do(t, "reload", chromedp.Reload())
	b.waitJS(t, "still logged in after a reload", `document.getElementById('runs-body') && document.getElementById('logout')`)

	b.mu.Lock()
	for _, r := range b.requests {
		if strings.Contains(r.URL, "/api/v1/tenants/default/") && r.Auth != "Bearer "+key && r.Auth != "" {
			t.Errorf("%s %s sent Authorization %q", r.Method, r.URL, r.Auth)
		}
	}
	sent := slices.ContainsFunc(b.requests, func(r request) bool {
		return strings.Contains(r.URL, "/api/v1/tenants/default/workflows") && r.Auth == "Bearer "+key
	})
	b.mu.Unlock()
	if !sent {
		t.Error("no call of the runs list sent the key")
	}

	b.do(t, "log out", click(`#logout`))
	b.waitJS(t, "the login form again", `document.getElementById('login-form') && !sessionStorage.getItem('orchestrator.key')`)
	b.noErrors(t)
	s.Key = key
	b.documented(t, s)
}

// TestUI_LargeDAGDrawsWhatIsInView: a run of 400 tasks (past the size where
// only the visible part is drawn) has fewer nodes and timeline rows in
// the DOM than tasks, and scrolling the DAG and the timeline to their ends draws the last ones.
func TestUI_LargeDAGDrawsWhatIsInView(t *testing.T) {
	var tasks []string
	for l := range 8 {
		for i := range 50 {
			deps := ""
			if l > 0 {
				deps = fmt.Sprintf(`,"depends_on":["t%d_%02d"]`, l-1, i)
			}
			tasks = append(tasks, fmt.Sprintf(`{"id":"t%d_%02d","type":"noop"%s}`, l, i, deps))
		}
	}
	s := newUIServer(t, uiOptions{})
	id := s.start(t, `{"name":"big","tasks":[`+strings.Join(tasks, ",")+`]}`)
	s.waitRun(t, id, func(d runDetails) bool { return d.State == "completed" })
	b := newBrowser(t)
	b.open(t, s, "#/runs/"+id)
	b.waitJS(t, "the DAG", `document.querySelector('svg.dag[data-tasks="400"] g.node')`)
	if n := b.count(t, "svg.dag g.node"); n >= 400 {
		t.Errorf("%d nodes in the DOM: the DAG is drawn whole", n)
	}
	b.waitJS(t, "every node in view is completed", `[...document.querySelectorAll('svg.dag g.node')].every(n => n.dataset.state === 'completed')`)
	b.do(t, "scroll the DAG", chromedp.Evaluate[chromedp.Void](`(() => { const d = document.getElementById('dag'); d.scrollTo(d.scrollWidth, d.scrollHeight); })()`))
	b.waitJS(t, "the last task drawn", `document.querySelector('svg.dag g.node[data-task="t7_49"]')`)
	b.waitJS(t, "the timeline", `document.querySelector('svg.gantt[data-rows="400"] g.row')`)
	if n := b.count(t, "svg.gantt g.row"); n >= 400 {
		t.Errorf("%d timeline rows in the DOM: the timeline is drawn whole", n)
	}
	b.do(t, "scroll the timeline", chromedp.Evaluate[chromedp.Void](`(() => { const g = document.querySelector('.gantt-box'); g.scrollIntoView(); g.scrollTo(0, g.scrollHeight); })()`))
	b.waitJS(t, "its last row drawn", `document.querySelector('svg.gantt g.row[data-task="t7_49"]')`)
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_ContentSecurityPolicyIsEnforced: an inline script or style put in
// the page is blocked by the served policy, and the harness, which every
// other test relies on to see such faults, reports it.
func TestUI_ContentSecurityPolicyIsEnforced(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	b := newBrowser(t)
	b.open(t, s, "#/runs")
	b.waitJS(t, "the page", `document.getElementById('runs-body')`)
	b.do(t, "inject", chromedp.Evaluate[chromedp.Void](`(() => {
		const s = document.createElement('script'); s.textContent = 'window.injected = 1'; document.body.append(s);
		const d = document.createElement('div'); d.setAttribute('style', 'color: red'); document.body.append(d);
	})()`))
	deadline := time.Now().Add(waitTimeout)
	for len(b.pageErrors()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
	errs := strings.Join(b.pageErrors(), "\n")
	if !strings.Contains(errs, "script-src") || !strings.Contains(errs, "style-src") {
		t.Errorf("the violations were not reported: %q", errs)
	}
	if evalJS[bool](t, b, `window.injected === 1`) {
		t.Error("an inline script ran")
	}
}

// TestUI_RunsListFiltersAndPages: the filter form narrows the list by
// workflow and status, the cursor pages go older and back, and a run that
// leaves the status filtered on leaves the open list, live.
func TestUI_RunsListFiltersAndPages(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	var last string
	for range 52 {
		last = s.start(t, quick)
	}
	s.waitRun(t, last, func(d runDetails) bool { return d.State == "completed" })
	held := s.start(t, `{"name":"held","tasks":[{"id":"hold","type":"block"}]}`)
	s.waitRun(t, held, func(d runDetails) bool { return d.State == "running" })
	b := newBrowser(t)

	b.open(t, s, "#/runs")
	b.waitJS(t, "a full first page", `document.querySelectorAll('#runs-body tr[data-run]').length === 50 && !document.getElementById('next-page').disabled`)
	b.waitJS(t, "the counts cover every page, not this one alone", `document.getElementById('run-counts').textContent.includes('53 runs:')`)
	b.do(t, "older", click(`#next-page`))
	b.waitJS(t, "the second page", `document.querySelectorAll('#runs-body tr[data-run]').length === 3 && document.getElementById('next-page').disabled`)
	b.do(t, "newer", click(`#prev-page`))
	b.waitJS(t, "the first page again", `document.querySelectorAll('#runs-body tr[data-run]').length === 50 && document.getElementById('prev-page').disabled`)

	b.do(t, "filter by workflow", chromedp.SendKeys(chromedp.CSS(`#run-filters input[name=workflow]`), "held"), click(`#run-filters button`))
	b.waitJS(t, "only held", `location.hash.includes('workflow=held') && document.querySelectorAll('#runs-body tr[data-run]').length === 1`)

	b.open(t, s, "#/runs?status=running")
	b.waitJS(t, "the running run", `document.querySelectorAll('#runs-body tr[data-run]').length === 1 && document.getElementById('live').textContent.includes('live')`)
	s.Release()
	s.waitRun(t, held, func(d runDetails) bool { return d.State == "completed" })
	b.waitJS(t, "it leaves the list", `document.querySelectorAll('#runs-body tr[data-run]').length === 0`)
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_RetryFromATask: on a failed run, "retry from this task" (confirmed)
// reruns the task, and the page follows the run to completed.
func TestUI_RetryFromATask(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	id := s.start(t, `{"name":"once","tasks":[{"id":"call","type":"flaky"},{"id":"after","type":"noop","depends_on":["call"]}]}`)
	s.waitRun(t, id, func(d runDetails) bool { return d.State == "failed" })
	b := newBrowser(t)
	b.open(t, s, "#/runs/"+id)
	b.waitJS(t, "the failed run", `document.querySelector('#run-state').dataset.state === 'failed' && document.getElementById('live').textContent.includes('live')`)
	b.do(t, "select call", click(`svg.dag g.node[data-task=call]`))
	b.waitJS(t, "its failed attempt", `document.querySelector('#task-panel table.attempts tr[data-attempt="1"]').textContent.includes('upstream_503')`)
	b.do(t, "retry from call", click(`#retry-task`), chromedp.WaitVisible(chromedp.CSS(`#confirm-yes`)))
	if text := evalJS[string](t, b, `document.getElementById('confirm-text').textContent`); !strings.Contains(text, "call") {
		t.Errorf("the confirmation %q does not name the task", text)
	}
	b.do(t, "confirm", click(`#confirm-yes`))
	b.waitJS(t, "the run completes", `document.querySelector('#run-state').dataset.state === 'completed'`)
	b.waitJS(t, "both tasks completed", `[...document.querySelectorAll('svg.dag g.node')].every(n => n.dataset.state === 'completed')`)
	b.waitJS(t, "who retried it", `document.getElementById('control-actions').textContent.includes('retried by local')`)
	d := s.run(t, id)
	if d.State != "completed" {
		t.Errorf("the run is %s", d.State)
	}
	b.noErrors(t)
	b.documented(t, s)
}

// TestUI_AdminPicksATenant: an admin's key lists the tenants in the picker,
// and picking one shows that tenant's runs.
func TestUI_AdminPicksATenant(t *testing.T) {
	s := newUIServer(t, uiOptions{AuthRequired: true})
	ctx := context.Background()
	if _, err := s.Admin.CreateTenant(ctx, engine.LocalAdmin(), "acme", "", engine.TenantSettings{}); err != nil {
		t.Fatal(err)
	}
	_, key, err := s.Admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{Role: engine.RoleAdmin, Name: "root"})
	if err != nil {
		t.Fatal(err)
	}
	s.Key = key
	id := s.start(t, quick) // in default
	var run struct{ ID string }
	if st := s.call(t, "POST", "/api/v1/tenants/acme/workflows", `{"definition":`+quick+`}`, &run); st != http.StatusCreated {
		t.Fatalf("start in acme: %d", st)
	}
	b := newBrowser(t)
	b.open(t, s, "#/runs")
	b.do(t, "log in", chromedp.WaitVisible(chromedp.CSS(`#login-form input[name=key]`)),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name=key]`), key), click(`#login-form button`))
	b.waitJS(t, "default's run", fmt.Sprintf(`document.querySelector('#runs-body tr[data-run=%q]')`, id))
	b.waitJS(t, "the tenants to pick", `document.querySelector('select#tenant') && [...document.querySelectorAll('select#tenant option')].map(o => o.value).join() === 'acme,default'`)
	b.do(t, "pick acme", chromedp.SetValue(chromedp.CSS(`select#tenant`), "acme"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('select#tenant').dispatchEvent(new Event('change'))`))
	b.waitJS(t, "acme's run", fmt.Sprintf(`document.querySelectorAll('#runs-body tr[data-run]').length === 1 && document.querySelector('#runs-body tr[data-run=%q]')`, run.ID))
	if got := evalJS[string](t, b, `sessionStorage.getItem('orchestrator.tenant')`); got != "acme" {
		t.Errorf("the tenant kept is %q", got)
	}
	b.noErrors(t)
	b.documented(t, s)
}
