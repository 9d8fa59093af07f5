package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/store"
)

// The UI's speed, measured in the browser (go test -run '^$' -bench
// BenchmarkUI ./web): each figure is read from the page's own performance
// marks, so it is what a user waits for, fetches and drawing included.

// seedRuns writes n completed one-task runs of the workflow "seeded"
// straight into the store, as the engine would have (each history folded
// through engine.RunView), a second apart, in chunks.
func seedRuns(tb testing.TB, ctx context.Context, db *store.DB, n int) {
	tb.Helper()
	def, plan, problems := definition.CompileJSON([]byte(`{"name":"seeded","tasks":[{"id":"only","type":"noop"}]}`), definition.ValidateOptions{})
	if len(problems) > 0 {
		tb.Fatal(problems)
	}
	canonical, _ := json.Marshal(def)
	sum := sha256.Sum256(canonical)
	start := time.Now().Add(-time.Duration(n) * time.Second).UTC().Truncate(time.Microsecond)
	if _, _, err := db.PutDefinition(ctx, &engine.StoredDefinition{TenantID: "default", Name: "seeded",
		Definition: canonical, Hash: hex.EncodeToString(sum[:]), CreatedAt: start.Add(-time.Hour)}); err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // protects failed
	var failed error
	sem := make(chan struct{}, 4)
	const chunk = 500
	changes := make([]engine.Change, 0, chunk)
	flush := func() {
		sem <- struct{}{}
		wg.Add(1)
		db.Commit(changes, func(err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
			<-sem
			wg.Done()
		})
		changes = make([]engine.Change, 0, chunk)
	}
	for i := range n {
		at := start.Add(time.Duration(i) * time.Second)
		id := engine.NewRunID(at)
		v := engine.NewRunView(plan)
		var events []engine.Event
		add := func(typ engine.EventType, task string, attempt int, data string) {
			ev := engine.Event{TenantID: "default", RunID: id, Seq: v.Run.LastSeq + 1, Type: typ, TaskID: task,
				Attempt: attempt, Actor: engine.ActorEngine, At: at}
			if data != "" {
				ev.Data = json.RawMessage(data)
			}
			ev.Hash = ev.ComputeHash(v.Run.LastHash)
			if err := v.Apply(&ev); err != nil {
				tb.Fatalf("seed run %d: %v", i, err)
			}
			events = append(events, ev)
			at = at.Add(time.Millisecond)
		}
		add(engine.EventRunCreated, "", 0, `{"workflow":"seeded","version":1,"input":{"i":`+fmt.Sprint(i)+`}}`)
		add(engine.EventRunStarted, "", 0, "")
		add(engine.EventTaskReady, "only", 0, `{"input":{}}`)
		add(engine.EventTaskStarted, "only", 1, "")
		add(engine.EventTaskCompleted, "only", 1, `{"output":{"ok":true}}`)
		add(engine.EventRunCompleted, "", 0, "")
		changes = append(changes, engine.Change{Run: v.Run, Insert: true, Tasks: slices.Clone(v.Tasks), Events: events})
		if len(changes) == chunk {
			flush()
		}
	}
	if len(changes) > 0 {
		flush()
	}
	wg.Wait()
	if failed != nil {
		tb.Fatalf("seed: %v", failed)
	}
}

// markMS waits for the page's performance mark name after a load and
// returns its time since the navigation started.
func markMS(b *testing.B, br *browser, name string) float64 {
	b.Helper()
	br.waitJS(b, "mark "+name, `performance.getEntriesByName('`+name+`').length > 0`)
	return evalJS[float64](b, br, `performance.getEntriesByName('`+name+`')[0].startTime`)
}

// BenchmarkUI_RunsListFirstPaint: the runs list's first page drawn, from
// the start of the page's load, with 100,000 runs in the store.
func BenchmarkUI_RunsListFirstPaint(b *testing.B) {
	s := newUIServer(b, uiOptions{Seed: func(ctx context.Context, db *store.DB) {
		t0 := time.Now()
		seedRuns(b, ctx, db, 100_000)
		b.Logf("seeded 100,000 runs in %v", time.Since(t0).Round(time.Millisecond))
	}})
	br := newBrowser(b)
	br.open(b, s, "#/runs")
	markMS(b, br, "runs-painted")
	var total, worst float64
	b.ResetTimer()
	for range b.N {
		br.do(b, "reload", chromedp.Reload())
		ms := markMS(b, br, "runs-painted")
		total += ms
		worst = max(worst, ms)
	}
	b.ReportMetric(total/float64(b.N), "ms/first-paint")
	b.ReportMetric(worst, "ms/worst")
	if n := br.count(b, "#runs-body tr[data-run]"); n != 50 {
		b.Fatalf("the first page shows %d runs, want 50", n)
	}
	br.noErrors(b)
}

// dag1000 is a definition of 1,000 noop tasks in 20 levels of 50, each
// task past the first level depending on two of the level before.
func dag1000() string {
	var tasks []string
	for l := range 20 {
		for i := range 50 {
			deps := ""
			if l > 0 {
				deps = fmt.Sprintf(`,"depends_on":["t%02d_%02d","t%02d_%02d"]`, l-1, i, l-1, (i+7)%50)
			}
			tasks = append(tasks, fmt.Sprintf(`{"id":"t%02d_%02d","type":"noop"%s}`, l, i, deps))
		}
	}
	return `{"name":"wide","tasks":[` + strings.Join(tasks, ",") + `]}`
}

// BenchmarkUI_RunPage1000Tasks: a finished run of 1,000 tasks (about 4,000
// events) drawn whole (header, DAG, timeline and history) and painted,
// from the start of the page's load; ms/dom is the part until the DOM was
// built.
func BenchmarkUI_RunPage1000Tasks(b *testing.B) {
	s := newUIServer(b, uiOptions{})
	id := s.start(b, dag1000())
	s.waitRun(b, id, func(d runDetails) bool { return d.State == "completed" })
	br := newBrowser(b)
	br.open(b, s, "#/runs/"+id)
	markMS(b, br, "run-painted")
	var total, worst, dom float64
	b.ResetTimer()
	for range b.N {
		br.do(b, "reload", chromedp.Reload())
		ms := markMS(b, br, "run-painted")
		total += ms
		worst = max(worst, ms)
		dom += markMS(b, br, "run-rendered")
	}
	b.ReportMetric(dom/float64(b.N), "ms/dom")
	b.ReportMetric(total/float64(b.N), "ms/render")
	b.ReportMetric(worst, "ms/worst")
	if n := br.count(b, "svg.dag g.node"); n != 1000 {
		b.Fatalf("the DAG has %d nodes, want 1000", n)
	}
	if n := br.count(b, "svg.gantt g.row"); n != 1000 {
		b.Fatalf("the timeline has %d rows, want 1000", n)
	}
	br.noErrors(b)
}

// BenchmarkUI_EventToPage: from an event's time (taken before its commit)
// to the moment an open run page has taken it from the stream, for a
// pause or resume made through the API.
func BenchmarkUI_EventToPage(b *testing.B) {
	s := newUIServer(b, uiOptions{})
	id := s.start(b, diamond)
	s.waitRun(b, id, func(d runDetails) bool { return d.task("slow") == "running" })
	br := newBrowser(b)
	br.open(b, s, "#/runs/"+id)
	br.waitJS(b, "the stream", `document.getElementById('live').textContent.includes('live')`)
	var lat []float64
	b.ResetTimer()
	for i := range b.N {
		verb := "pause"
		if i%2 == 1 {
			verb = "resume"
		}
		var run struct {
			LastSeq int64 `json:"last_seq"`
		}
		if st := s.call(b, "POST", "/api/v1/tenants/default/workflows/"+id+"/"+verb, "", &run); st != http.StatusOK {
			b.Fatalf("%s: %d", verb, st)
		}
		seq := fmt.Sprint(run.LastSeq)
		br.waitJS(b, "event "+seq, `performance.getEntriesByName('event').some(m => m.detail.seq === `+seq+`)`)
		ms := evalJS[float64](b, br, `(() => { const m = performance.getEntriesByName('event').find(m => m.detail.seq === `+seq+`);
			return performance.timeOrigin + m.startTime - Date.parse(m.detail.at); })()`)
		lat = append(lat, ms)
	}
	b.StopTimer()
	slices.Sort(lat)
	sum := 0.0
	for _, v := range lat {
		sum += v
	}
	b.ReportMetric(sum/float64(len(lat)), "ms/event")
	b.ReportMetric(lat[len(lat)/2], "ms/p50")
	b.ReportMetric(lat[len(lat)-1], "ms/max")
	br.noErrors(b)
}
