package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// seeded is a database file of 100,000 runs, written once per test binary
// (a benchmark runs more than once) and removed by TestMain.
var seeded struct {
	once sync.Once
	dir  string
	path string
}

func seededDB(b *testing.B) string {
	seeded.once.Do(func() {
		dir, err := os.MkdirTemp("", "orchestrator-ui-bench-")
		if err != nil {
			b.Fatal(err)
		}
		seeded.dir, seeded.path = dir, filepath.Join(dir, "runs.db")
		ctx := context.Background()
		db, err := store.Open(ctx, seeded.path, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		seedRuns(b, ctx, db, 100_000)
		b.Logf("seeded 100,000 runs in %v", time.Since(t0).Round(time.Millisecond))
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	})
	return seeded.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	stopBrowser()
	if seeded.dir != "" {
		os.RemoveAll(seeded.dir)
	}
	os.Exit(code)
}

// cpuMS runs load and returns the CPU time the browser's processes (the
// browser, its renderer and GPU processes: every descendant) spent meanwhile,
// read from /proc. On a shared machine the page may wait for a CPU, so this
// is what the page costs, beside the wall time it took; 0 where /proc is
// missing.
func cpuMS(b *testing.B, br *browser, load func()) float64 {
	b.Helper()
	root := chromedp.FromContext(br.ctx).Browser.Process()
	before := treeCPU(root.Pid)
	load()
	return float64(treeCPU(root.Pid)-before) * 1000 / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times on Linux.
const clockTicks = 100

// treeCPU sums utime+stime (ticks) of pid and its descendants.
func treeCPU(pid int) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := map[int]int{}
	ticks := map[int]int64{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15): after the ")".
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		parent[p], _ = strconv.Atoi(f[1])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks[p] = u + st
	}
	var sum int64
	for p := range ticks {
		for q := p; q > 1; q = parent[q] {
			if q == pid {
				sum += ticks[p]
				break
			}
		}
	}
	return sum
}

// reportSpread reports the mean, the median and the worst of ms.
func reportSpread(b *testing.B, ms []float64, what string) {
	slices.Sort(ms)
	sum := 0.0
	for _, v := range ms {
		sum += v
	}
	b.ReportMetric(sum/float64(len(ms)), "ms/"+what)
	b.ReportMetric(ms[len(ms)/2], "ms/p50")
	b.ReportMetric(ms[len(ms)-1], "ms/worst")
}

// markMS waits for the page's performance mark name after a load and
// returns its time since the navigation started.
func markMS(b *testing.B, br *browser, name string) float64 {
	b.Helper()
	br.waitJS(b, "mark "+name, `performance.getEntriesByName('`+name+`').length > 0`)
	return evalJS[float64](b, br, `performance.getEntriesByName('`+name+`')[0].startTime`)
}

// BenchmarkUI_RunsListFirstPaint: the runs list's first page drawn and
// painted, from the start of the page's load, with 100,000 runs in the
// store; ms/list-call is the API call's part of it.
func BenchmarkUI_RunsListFirstPaint(b *testing.B) {
	s := newUIServer(b, uiOptions{DBPath: seededDB(b)})
	br := newBrowser(b)
	br.open(b, s, "#/runs")
	markMS(b, br, "runs-painted")
	var paints []float64
	var list, busy float64
	b.ResetTimer()
	for range b.N {
		var ms float64
		busy += cpuMS(b, br, func() {
			br.do(b, "reload", chromedp.Reload())
			ms = markMS(b, br, "runs-painted")
		})
		paints = append(paints, ms)
		list += evalJS[float64](b, br, `performance.getEntriesByType('resource').find(r => r.name.includes('/workflows?')).duration`)
	}
	b.ReportMetric(list/float64(b.N), "ms/list-call")
	b.ReportMetric(busy/float64(b.N), "ms/browser-cpu")
	reportSpread(b, paints, "first-paint")
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
	var paints []float64
	var dom, busy float64
	b.ResetTimer()
	for range b.N {
		var ms float64
		busy += cpuMS(b, br, func() {
			br.do(b, "reload", chromedp.Reload())
			ms = markMS(b, br, "run-painted")
		})
		paints = append(paints, ms)
		dom += markMS(b, br, "run-rendered")
	}
	b.ReportMetric(dom/float64(b.N), "ms/dom")
	b.ReportMetric(busy/float64(b.N), "ms/browser-cpu")
	reportSpread(b, paints, "render")
	if n := evalJS[string](b, br, `document.querySelector('svg.dag').dataset.tasks`); n != "1000" {
		b.Fatalf("the DAG has %s tasks, want 1000", n)
	}
	if n := evalJS[string](b, br, `document.querySelector('svg.gantt').dataset.rows`); n != "1000" {
		b.Fatalf("the timeline has %s rows, want 1000", n)
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
	reportSpread(b, lat, "event")
	br.noErrors(b)
}

// BenchmarkUI_BaselineReload: what a reload of a page without script (the
// style sheet, shown as text) costs the browser, the fixed part of the
// figures above.
func BenchmarkUI_BaselineReload(b *testing.B) {
	s := newUIServer(b, uiOptions{})
	br := newBrowser(b)
	br.do(b, "open", chromedp.Navigate(s.URL+"/ui/style.css"))
	var cpu float64
	b.ResetTimer()
	for range b.N {
		cpu += cpuMS(b, br, func() {
			br.do(b, "reload", chromedp.Reload())
			br.waitJS(b, "loaded", `document.readyState === 'complete'`)
		})
	}
	b.ReportMetric(cpu/float64(b.N), "ms/browser-cpu")
}
