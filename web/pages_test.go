package web_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orchestrator/orchestrator/engine"
)

// TestUI_RunsShowTheirOriginAndFilterByIt: a run a schedule's slot started
// shows "schedule nightly HH:MM" in the list and on its page, and the
// origin filter lists only the runs of that schedule.
func TestUI_RunsShowTheirOriginAndFilterByIt(t *testing.T) {
	s := newUIServer(t, uiOptions{})
	direct := s.start(t, quick)
	slot := time.Date(2026, 3, 4, 12, 0, 0, 0, time.Local)
	run, err := s.Engine.StartRun(context.Background(), engine.StartRequest{TenantID: "default", Workflow: "quick",
		Origin: &engine.Origin{Kind: engine.OriginSchedule, ID: "nightly", Slot: slot}})
	if err != nil {
		t.Fatalf("start the scheduled run: %v", err)
	}
	s.waitRun(t, run.ID, func(d runDetails) bool { return d.State == "completed" })
	b := newBrowser(t)

	b.open(t, s, "#/runs")
	b.waitJS(t, "both runs", `document.querySelectorAll('#runs-body tr[data-run]').length === 2`)
	b.waitJS(t, "the origin badge", `(document.querySelector('#runs-body tr[data-run="`+run.ID+`"] [data-origin="schedule/nightly"]') || {}).textContent === 'schedule nightly 12:00'`)
	if n := b.count(t, `#runs-body tr[data-run="`+direct+`"] [data-origin]`); n != 0 {
		t.Errorf("the direct run shows %d origin badges, want none", n)
	}

	b.do(t, "filter by origin", chromedp.SetValue(chromedp.CSS(`#run-filters select[name=origin_kind]`), "schedule"),
		chromedp.SendKeys(chromedp.CSS(`#run-filters input[name=origin_id]`), "nightly"), click(`#run-filters button`))
	b.waitJS(t, "only the scheduled run", `location.hash.includes('origin_kind=schedule') && location.hash.includes('origin_id=nightly') &&
		document.querySelectorAll('#runs-body tr[data-run]').length === 1 && !!document.querySelector('#runs-body tr[data-run="`+run.ID+`"]')`)

	b.open(t, s, "#/runs/"+run.ID)
	b.waitJS(t, "the origin on the run page", `(document.querySelector('#run-origin') || {}).textContent === ' · started by schedule nightly 12:00'`)
	b.noErrors(t)
	b.documented(t, s)
	_ = http.StatusOK
}
