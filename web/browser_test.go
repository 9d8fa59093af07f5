package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// diamond is a run that stops at "slow" (a blocking task) with "fast" done
// beside it and "join" waiting for both: a DAG with tasks in three states.
const diamond = `{"name":"diamond","tasks":[
 {"id":"start","type":"noop"},
 {"id":"slow","type":"block","depends_on":["start"]},
 {"id":"fast","type":"noop","depends_on":["start"]},
 {"id":"join","type":"noop","depends_on":["slow","fast"]}]}`

const quick = `{"name":"quick","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`

// TestUI_RunsListAndRunPage opens the runs list, opens a run, sees its DAG
// with one node per task in the state the API reports, pauses it from the
// page, sees a resume made elsewhere arrive live, is refused a second
// resume with the server's text, opens a task's attempts, and sees the run
// complete, without a JavaScript error.
func TestUI_RunsListAndRunPage(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	for range 3 {
		id := s.start(t, quick)
		s.waitRun(t, id, func(d runDetails) bool { return d.State == "completed" })
	}
	id := s.start(t, diamond)
	want := s.waitRun(t, id, func(d runDetails) bool {
		return d.task("slow") == "running" && d.task("fast") == "completed"
	})
	b := newBrowser(t)

	b.open(t, s, "#/runs")
	b.waitJS(t, "the runs list shows every run", `document.querySelectorAll('#runs-body tr[data-run]').length === 4`)
	if got := evalJS[string](t, b, `document.querySelector('#runs-body tr[data-run]').dataset.run`); got != id {
		t.Errorf("first row is run %s, want the newest, %s", got, id)
	}
	b.waitJS(t, "counts per state", `document.querySelector('[data-count=completed]').textContent.includes('3')`)
	b.screenshot(t, "runs-list")

	b.do(t, "open the run", click(`#runs-body a[href="#/runs/`+id+`"]`))
	b.waitJS(t, "the DAG is drawn", `document.querySelectorAll('svg.dag g.node').length === 4`)
	for _, task := range want.Tasks {
		sel := fmt.Sprintf(`svg.dag g.node[data-task=%q]`, task.ID)
		b.waitJS(t, "node "+task.ID+" in its state", fmt.Sprintf(`document.querySelector(%s).dataset.state === %q && document.querySelector(%s).textContent.includes(%q)`,
			strconvQuote(sel), task.State, strconvQuote(sel), task.State))
	}
	b.waitJS(t, "the timeline", `document.querySelectorAll('svg.gantt g.row').length >= 3`)
	b.waitJS(t, "the verified hash chain", `document.getElementById('chain').textContent.includes('verified')`)

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
