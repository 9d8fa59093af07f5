package store_test

// Benchmarks of the read queries on a store the size of a busy installation:
// 100,000 runs and about 1,000,000 events over 30 days and 10 tenants.
//
// Building that store takes about 25 seconds on 2 cores, so it is cached: the first
// benchmark of a process writes it to
//
//	$TMPDIR/orchestrator-querybench-<queryFixtureVersion>-<runs>runs.db
//
// (built under a temporary name and renamed when complete) and later
// benchmarks and later runs open that file again. Bump queryFixtureVersion
// whenever the generator below changes; new migrations need no bump, since
// store.Open applies them to the cached file. Pass -querybench.rebuild to
// throw the cached file away and build it again, e.g.
//
//	go test ./store -run '^$' -bench Queries -benchtime 2000x -querybench.rebuild
//
// The fixture is never ANALYZEd, as no store in production is: the plans
// measured are the ones SQLite picks without statistics.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
	"github.com/orchestrator/orchestrator/store"
)

// queryFixtureVersion names the generator; the cached file carries it.
const queryFixtureVersion = "v2"

var queryBenchRebuild = flag.Bool("querybench.rebuild", false,
	"build the query benchmark fixture again instead of reusing the cached file in os.TempDir()")

// queryFixtureSpec sizes a generated history.
type queryFixtureSpec struct {
	Runs    int    // runs in all; tenant 0 holds half of them
	Tenants int    // at least 2
	Seed    uint64 // same seed, same store
}

// queryBenchSpec is the store the benchmarks read.
var queryBenchSpec = queryFixtureSpec{Runs: 100_000, Tenants: 10, Seed: 1}

// Fixed bounds of the generated history, so that a cached file and the
// benchmarks reading it agree on them.
var (
	queryFixtureEnd   = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	queryFixtureStart = queryFixtureEnd.Add(-30 * 24 * time.Hour)
)

// queryFixtureTenant is the id of tenant i; tenant 0 is the big one.
func queryFixtureTenant(i int) string { return fmt.Sprintf("tenant-%02d", i) }

// queryFixtureWorkflows are the workflows every tenant registers, most used
// first. Workflows of three tasks run validate -> process -> notify, those
// of two fetch -> store; a type "external" is done by a worker.
var queryFixtureWorkflows = []struct {
	name  string
	types []string
}{
	{"order-fulfilment", []string{"http", "external"}},
	{"invoice-render", []string{"noop", "http"}},
	{"payment-capture", []string{"http", "http", "noop"}},
	{"email-digest", []string{"noop", "external"}},
	{"inventory-sync", []string{"http", "external"}},
	{"user-onboarding", []string{"noop", "noop", "http"}},
	{"report-nightly", []string{"external", "noop"}},
	{"fraud-check", []string{"http", "external", "noop"}},
	{"refund-process", []string{"noop", "http", "http"}},
	{"search-reindex", []string{"external", "external"}},
	{"shipment-track", []string{"http", "noop", "noop"}},
	{"cart-abandon", []string{"noop", "http"}},
	{"tax-compute", []string{"http", "noop", "external"}},
	{"data-export", []string{"external", "noop"}},
	{"subscription-renew", []string{"http", "http", "noop"}},
	{"image-resize", []string{"external", "http"}},
	{"audit-archive", []string{"noop", "external", "noop"}},
	{"coupon-expire", []string{"noop", "noop"}},
	{"webhook-deliver", []string{"http", "noop", "http"}},
	{"gdpr-erase", []string{"noop", "external"}},
}

var (
	queryFixtureHumans  = []string{"api", "api", "api", "api", "alice", "alice", "bob"} // who starts and controls runs
	queryFixtureWorkers = []string{"worker-01", "worker-02", "worker-03", "worker-04", "worker-05", "worker-06"}
)

// queryFixtureDefinition is the definition JSON of workflow w.
func queryFixtureDefinition(w int) []byte {
	wf := queryFixtureWorkflows[w]
	ids := []string{"validate", "process", "notify"}
	if len(wf.types) == 2 {
		ids = []string{"fetch", "store"}
	}
	def := definition.Definition{Name: wf.name, Timeout: "1h"}
	for i, typ := range wf.types {
		td := definition.TaskDef{ID: ids[i], Type: typ, Retry: &definition.RetryPolicy{MaxAttempts: 3, InitialInterval: "2s"}}
		if i > 0 {
			td.DependsOn = []string{ids[i-1]}
		}
		def.Tasks = append(def.Tasks, td)
	}
	b, err := json.Marshal(def)
	if err != nil {
		panic(err) // a Definition always encodes
	}
	return b
}

// queryFixtureStats says what buildQueryFixture wrote.
type queryFixtureStats struct {
	Runs, Tasks, Events int
	Took                time.Duration
}

// buildQueryFixture fills db with spec.Runs runs of every kind, as the engine
// would have written them: each history is folded through engine.RunView, so
// the rows are its projection and VerifyRun accepts every run.
func buildQueryFixture(ctx context.Context, db *store.DB, spec queryFixtureSpec) (queryFixtureStats, error) {
	start := time.Now()
	var st queryFixtureStats
	plans := make([]*definition.Plan, len(queryFixtureWorkflows))
	for w := range queryFixtureWorkflows {
		def, problems := definition.ParseDefinition(queryFixtureDefinition(w))
		if len(problems) == 0 {
			plans[w], problems = definition.Compile(def, definition.ValidateOptions{})
		}
		if len(problems) > 0 {
			return st, fmt.Errorf("workflow %d: %v", w, problems)
		}
		canonical, err := json.Marshal(def)
		if err != nil {
			return st, err
		}
		sum := sha256.Sum256(canonical)
		for t := range spec.Tenants {
			_, _, err := db.PutDefinition(ctx, &engine.StoredDefinition{TenantID: queryFixtureTenant(t), Name: def.Name,
				Definition: canonical, Hash: hex.EncodeToString(sum[:]), CreatedAt: queryFixtureStart.Add(-time.Hour)})
			if err != nil {
				return st, err
			}
		}
	}

	rng := rand.New(rand.NewPCG(spec.Seed, 0x9e3779b97f4a7c15))
	// Creation times spread uniformly over the 30 days, written in time
	// order as a live engine would.
	span := queryFixtureEnd.Sub(queryFixtureStart) - time.Hour
	created := make([]time.Time, spec.Runs)
	for i := range created {
		created[i] = queryFixtureStart.Add(time.Duration(rng.Int64N(int64(span)))).Truncate(time.Microsecond)
	}
	slices.SortFunc(created, func(a, b time.Time) int { return a.Compare(b) })
	// Tenant 0 holds half the runs; workflows follow 1/(rank+1).
	var wfWeights []float64
	total := 0.0
	for w := range queryFixtureWorkflows {
		total += 1 / float64(w+1)
		wfWeights = append(wfWeights, total)
	}
	pickWorkflow := func() int {
		x := rng.Float64() * total
		w, _ := slices.BinarySearch(wfWeights, x)
		return min(w, len(wfWeights)-1)
	}

	// Commit in chunks of runs, a few chunks in flight, so that generating
	// and writing overlap.
	const chunk = 500
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var mu sync.Mutex // protects commitErr
	var commitErr error
	submit := func(changes []engine.Change) {
		sem <- struct{}{}
		wg.Add(1)
		db.Commit(changes, func(err error) {
			if err != nil {
				mu.Lock()
				commitErr = errors.Join(commitErr, err)
				mu.Unlock()
			}
			<-sem
			wg.Done()
		})
	}
	changes := make([]engine.Change, 0, chunk)
	for i := range spec.Runs {
		tenant := 0
		if rng.IntN(2) == 1 {
			tenant = 1 + rng.IntN(spec.Tenants-1)
		}
		w := pickWorkflow()
		h := &queryFixtureHistory{rng: rng, plan: plans[w], tenant: queryFixtureTenant(tenant),
			id: queryFixtureRunID(rng, created[i]), at: created[i]}
		ch, err := h.generate(w)
		if err != nil {
			return st, err
		}
		st.Runs++
		st.Tasks += len(ch.Tasks)
		st.Events += len(ch.Events)
		changes = append(changes, ch)
		if len(changes) == chunk {
			submit(changes)
			changes = make([]engine.Change, 0, chunk)
		}
	}
	if len(changes) > 0 {
		submit(changes)
	}
	wg.Wait()
	st.Took = time.Since(start)
	return st, commitErr
}

// queryFixtureRunID is a UUIDv7 of t with random bits from rng, like
// engine.NewRunID but reproducible.
func queryFixtureRunID(rng *rand.Rand, t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	binary.BigEndian.PutUint64(b[8:], rng.Uint64())
	b[6], b[7] = 0x70|byte(rng.IntN(16)), byte(rng.IntN(256))
	b[8] = 0x80 | b[8]&0x3f
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// queryFixtureHistory writes the events of one run, applying each to the
// run's projection as the engine's batch does.
type queryFixtureHistory struct {
	rng    *rand.Rand
	plan   *definition.Plan
	tenant string
	id     string
	v      *engine.RunView
	events []engine.Event
	at     time.Time
	actor  string
	err    error
}

// add appends one event of the run (pos < 0) or of task pos.
func (h *queryFixtureHistory) add(typ engine.EventType, pos, attempt int, d *engine.EventData) {
	if h.err != nil {
		return
	}
	ev := engine.Event{TenantID: h.tenant, RunID: h.id, Seq: h.v.Run.LastSeq + 1, Type: typ, Attempt: attempt,
		Actor: h.actor, At: h.at}
	if pos >= 0 {
		ev.TaskID = h.plan.Tasks[pos].ID
	}
	if d != nil {
		data, err := json.Marshal(d)
		if err != nil {
			h.err = err
			return
		}
		if string(data) != "{}" {
			ev.Data = data
		}
	}
	ev.Hash = ev.ComputeHash(h.v.Run.LastHash)
	if err := h.v.Apply(&ev); err != nil {
		h.err = fmt.Errorf("run %s: %w", h.id, err)
		return
	}
	h.events = append(h.events, ev)
}

// wait moves the clock on by between lo and hi.
func (h *queryFixtureHistory) wait(lo, hi time.Duration) {
	h.at = h.at.Add(lo + time.Duration(h.rng.Int64N(int64(hi-lo)+1))).Truncate(time.Microsecond)
}

func (h *queryFixtureHistory) human() string {
	return queryFixtureHumans[h.rng.IntN(len(queryFixtureHumans))]
}

// doer is who reports the outcome of an attempt of task pos.
func (h *queryFixtureHistory) doer(pos int) string {
	if h.plan.Tasks[pos].Type == "external" {
		return queryFixtureWorkers[h.rng.IntN(len(queryFixtureWorkers))]
	}
	return engine.ActorEngine
}

func (h *queryFixtureHistory) output() json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"ok":true,"items":%d}`, h.rng.IntN(1000)))
}

var queryFixtureErrors = []engine.TaskError{
	{Code: "http_503", Message: "upstream answered 503 Service Unavailable"},
	{Code: "timeout", Message: "attempt exceeded its timeout of 30s"},
	{Code: "validation", Message: "field amount must be positive"},
}

func (h *queryFixtureHistory) taskError() *engine.TaskError {
	e := queryFixtureErrors[h.rng.IntN(len(queryFixtureErrors))]
	return &e
}

// start records an attempt of task pos starting.
func (h *queryFixtureHistory) start(pos int) {
	h.wait(time.Millisecond, 500*time.Millisecond)
	h.actor = engine.ActorEngine
	d := &engine.EventData{}
	if h.plan.Tasks[pos].Type == "external" {
		d.WorkerID = queryFixtureWorkers[h.rng.IntN(len(queryFixtureWorkers))]
		d.LeaseExpiresAt = h.at.Add(30 * time.Second)
		sum := sha256.Sum256([]byte(h.id + d.WorkerID))
		d.LeaseHash = hex.EncodeToString(sum[:])
	}
	h.add(engine.EventTaskStarted, pos, h.v.Tasks[pos].Attempt+1, d)
}

// runTask takes task pos from ready to completed, with a failed attempt
// now and then; it reports false when the task failed for good.
func (h *queryFixtureHistory) runTask(pos int, fail bool) bool {
	for {
		h.start(pos)
		h.wait(20*time.Millisecond, 20*time.Second)
		h.actor = h.doer(pos)
		attempt := h.v.Tasks[pos].Attempt
		switch {
		case fail && attempt == 3, fail && h.rng.IntN(3) == 0:
			h.add(engine.EventTaskFailed, pos, attempt, &engine.EventData{Error: h.taskError(), Reason: engine.ReasonError})
			return false
		case fail || h.rng.IntN(20) == 0 && attempt < 3:
			h.add(engine.EventTaskAttemptFailed, pos, attempt, &engine.EventData{Error: h.taskError(),
				Reason: engine.ReasonError, NotBefore: h.at.Add(2 * time.Second)})
			h.wait(2*time.Second, 3*time.Second)
			continue
		}
		h.add(engine.EventTaskCompleted, pos, attempt, &engine.EventData{Output: h.output()})
		return true
	}
}

// endTasks ends the tasks still under way, as the engine's endRun does.
func (h *queryFixtureHistory) endTasks(reason string) {
	for i := range h.v.Tasks {
		t := &h.v.Tasks[i]
		if t.State.Terminal() {
			continue
		}
		attempt := 0
		if t.State == engine.TaskRunning {
			attempt = t.Attempt
		}
		h.add(engine.EventTaskCancelled, i, attempt, &engine.EventData{Reason: reason})
	}
}

// generate writes the history of one run of workflow w, choosing how it
// ends: mostly completed, some failed, cancelled, timed out, still running,
// paused or pending.
func (h *queryFixtureHistory) generate(w int) (engine.Change, error) {
	h.v = engine.NewRunView(h.plan)
	n := len(h.plan.Tasks)
	h.actor = h.human()
	h.add(engine.EventRunCreated, -1, 0, &engine.EventData{Workflow: h.plan.Def.Name, Version: 1,
		Input: json.RawMessage(fmt.Sprintf(`{"customer":"c-%05d","amount":%d}`, h.rng.IntN(50000), h.rng.IntN(100000)))})
	x := h.rng.IntN(1000)
	if x < 5 { // pending: the engine has not taken it yet
		return h.change()
	}
	h.add(engine.EventRunStarted, -1, 0, &engine.EventData{Deadline: h.at.Add(time.Hour)})
	h.add(engine.EventTaskReady, 0, 0, nil)
	// stop is where a run that does not complete stops: before task stop.
	stop := h.rng.IntN(n)
	for pos := range n {
		switch {
		case pos == stop && x < 30: // running
			h.start(pos)
			return h.change()
		case pos == stop && x < 45: // paused
			h.wait(time.Second, time.Hour)
			h.actor = h.human()
			h.add(engine.EventRunPaused, -1, 0, nil)
			return h.change()
		case pos == stop && x < 85: // cancelled
			h.start(pos)
			h.wait(time.Second, 10*time.Minute)
			h.actor = h.human()
			h.endTasks(engine.ReasonRunCancelled)
			h.add(engine.EventRunCancelled, -1, 0, &engine.EventData{Reason: engine.ReasonRunCancelled})
			return h.change()
		case pos == stop && x < 95: // timed out
			h.start(pos)
			h.wait(time.Hour, time.Hour)
			h.actor = engine.ActorEngine
			h.endTasks(engine.ReasonRunTimedOut)
			h.add(engine.EventRunTimedOut, -1, 0, &engine.EventData{Reason: engine.ReasonRunTimedOut,
				Error: &engine.TaskError{Code: "run_timed_out", Message: "run exceeded its timeout of 1h0m0s"}})
			return h.change()
		case pos == stop && x < 165: // failed, and a fifth of those retried
			if !h.runTask(pos, true) {
				for i := pos + 1; i < n; i++ {
					h.add(engine.EventTaskSkipped, i, 0, &engine.EventData{Reason: engine.ReasonUpstreamFailed,
						Error: &engine.TaskError{Code: "upstream_failed", Message: "task " + h.plan.Tasks[pos].ID + " failed"}})
				}
				h.add(engine.EventRunFailed, -1, 0, &engine.EventData{Error: h.v.Tasks[pos].Error})
				if x >= 109 {
					return h.change()
				}
				h.wait(time.Minute, 6*time.Hour)
				h.actor = h.human()
				var ids []string
				for i := pos; i < n; i++ {
					ids = append(ids, h.plan.Tasks[i].ID)
				}
				h.add(engine.EventRunRetried, -1, 0, &engine.EventData{Tasks: ids, Deadline: h.at.Add(time.Hour)})
				for i := pos; i < n; i++ {
					h.add(engine.EventTaskReset, i, 0, nil)
				}
				h.add(engine.EventTaskReady, pos, 0, nil)
				h.runTask(pos, false)
			}
		default:
			h.runTask(pos, false)
		}
		if pos+1 < n {
			h.add(engine.EventTaskReady, pos+1, 0, nil)
		}
	}
	h.add(engine.EventRunCompleted, -1, 0, &engine.EventData{Output: h.output()})
	return h.change()
}

// change is the insert of the run as generated so far.
func (h *queryFixtureHistory) change() (engine.Change, error) {
	if h.err != nil {
		return engine.Change{}, h.err
	}
	return engine.Change{Run: h.v.Run, Insert: true, Tasks: slices.Clone(h.v.Tasks), Events: h.events}, nil
}

// queryFixture is an open store holding the benchmark history, with samples
// of its runs to aim queries at.
type queryFixture struct {
	db     *store.DB
	tenant string       // the big tenant
	runs   []engine.Run // every run of the big tenant, newest first
	byWF   map[string][]engine.Run
	byTS   map[engine.RunState][]engine.Run
	maxID  int64 // largest event id
}

var queryFixtureFile struct {
	once sync.Once
	path string
	err  error
}

// openQueryFixture opens the benchmark store, building it on first use, and
// closes it when b ends.
func openQueryFixture(b *testing.B) *queryFixture {
	b.Helper()
	ctx := context.Background()
	f := &queryFixtureFile
	f.once.Do(func() {
		f.path = filepath.Join(os.TempDir(), fmt.Sprintf("orchestrator-querybench-%s-%druns.db", queryFixtureVersion, queryBenchSpec.Runs))
		if *queryBenchRebuild {
			removeQueryFixture(f.path)
		}
		if _, err := os.Stat(f.path); err == nil {
			b.Logf("reusing fixture %s", f.path)
			return
		}
		tmp := fmt.Sprintf("%s.building-%d", f.path, os.Getpid())
		if f.err = buildQueryFixtureFile(ctx, b, tmp); f.err != nil {
			removeQueryFixture(tmp)
			return
		}
		f.err = os.Rename(tmp, f.path)
		removeQueryFixture(tmp)
	})
	if f.err != nil {
		b.Fatalf("query fixture: %v", f.err)
	}
	db, err := store.Open(ctx, f.path, store.Options{})
	if err != nil {
		b.Fatalf("open fixture: %v", err)
	}
	b.Cleanup(func() {
		if err := db.Close(); err != nil {
			b.Errorf("close fixture: %v", err)
		}
	})
	fx := &queryFixture{db: db, tenant: queryFixtureTenant(0), byWF: map[string][]engine.Run{}, byTS: map[engine.RunState][]engine.Run{}}
	// Walk the big tenant's runs through the API under test, for cursors.
	filter := engine.RunFilter{TenantID: fx.tenant, Limit: engine.MaxPage}
	for {
		page, next, err := db.ListRuns(ctx, filter)
		if err != nil {
			b.Fatalf("walk runs: %v", err)
		}
		fx.runs = append(fx.runs, page...)
		if next == nil {
			break
		}
		filter.Cursor = next
	}
	for _, r := range fx.runs {
		fx.byWF[r.Workflow] = append(fx.byWF[r.Workflow], r)
		fx.byTS[r.State] = append(fx.byTS[r.State], r)
	}
	last, err := db.RunEvents(ctx, fx.tenant, fx.runs[0].ID, 0, 0)
	if err != nil || len(last) == 0 {
		b.Fatalf("events of the newest run: %v", err)
	}
	fx.maxID = last[len(last)-1].ID
	if len(fx.runs) < queryBenchSpec.Runs/3 {
		b.Fatalf("fixture: %d runs in the big tenant", len(fx.runs))
	}
	return fx
}

func removeQueryFixture(path string) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

// buildQueryFixtureFile writes the benchmark history to a new store at path.
func buildQueryFixtureFile(ctx context.Context, b *testing.B, path string) error {
	db, err := store.Open(ctx, path, store.Options{Synchronous: store.SyncNormal, MaxBatch: 1 << 16})
	if err != nil {
		return err
	}
	st, err := buildQueryFixture(ctx, db, queryBenchSpec)
	if err := errors.Join(err, db.Close()); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	b.Logf("built fixture %s in %v: %d runs, %d tasks, %d events, %d MB",
		path, st.Took.Round(time.Millisecond), st.Runs, st.Tasks, st.Events, fi.Size()>>20)
	return nil
}

// queryPick returns a random element of s.
func queryPick[T any](rng *rand.Rand, s []T) T { return s[rng.IntN(len(s))] }

// queryCursorAt is the cursor that continues after r.
func queryCursorAt(r engine.Run) *engine.RunCursor {
	return engine.CursorOf(&r)
}

// benchQueryLatency runs op b.N times and reports the median and 99th percentile
// latency in ms, and how many items an op returned on average (a page of
// 50 when the query found enough).
func benchQueryLatency(b *testing.B, op func(i int, rng *rand.Rand) (int, error)) {
	b.Helper()
	rng := rand.New(rand.NewPCG(42, 7))
	lat := make([]time.Duration, 0, b.N)
	items := 0
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		n, err := op(i, rng)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatalf("op %d: %v", i, err)
		}
		items += n
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(items)/float64(b.N), "items/op")
}

// queryPage is the page size the benchmarks ask for, the API's default for runs.
const queryPage = 50

func BenchmarkQueries_ListRunsFirstPage(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		runs, _, err := fx.db.ListRuns(context.Background(), engine.RunFilter{TenantID: fx.tenant, Limit: queryPage})
		return len(runs), err
	})
}

func BenchmarkQueries_ListRunsDeepPage(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		runs, _, err := fx.db.ListRuns(context.Background(), engine.RunFilter{TenantID: fx.tenant, Limit: queryPage,
			Cursor: queryCursorAt(queryPick(rng, fx.runs))})
		return len(runs), err
	})
}

// queryRunStates are the states asked for, rare ones included.
var queryRunStates = []engine.RunState{engine.RunCompleted, engine.RunFailed, engine.RunCancelled,
	engine.RunRunning, engine.RunPaused, engine.RunTimedOut, engine.RunPending}

func BenchmarkQueries_ListRunsByStatus(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		f := engine.RunFilter{TenantID: fx.tenant, State: queryRunStates[i%len(queryRunStates)], Limit: queryPage}
		if i%2 == 1 { // a later page: continue after a random run of that state
			f.Cursor = queryCursorAt(queryPick(rng, fx.byTS[f.State]))
		}
		runs, _, err := fx.db.ListRuns(context.Background(), f)
		return len(runs), err
	})
}

func BenchmarkQueries_ListRunsByWorkflow(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		wf := queryFixtureWorkflows[i%len(queryFixtureWorkflows)].name
		f := engine.RunFilter{TenantID: fx.tenant, Workflow: wf, Limit: queryPage}
		if i%2 == 1 {
			f.Cursor = queryCursorAt(queryPick(rng, fx.byWF[wf]))
		}
		runs, _, err := fx.db.ListRuns(context.Background(), f)
		return len(runs), err
	})
}

func BenchmarkQueries_ListRunsByStatusAndWorkflow(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		wf := queryFixtureWorkflows[i%len(queryFixtureWorkflows)].name
		st := queryRunStates[(i/len(queryFixtureWorkflows))%len(queryRunStates)]
		runs, _, err := fx.db.ListRuns(context.Background(), engine.RunFilter{TenantID: fx.tenant, Workflow: wf, State: st, Limit: queryPage})
		return len(runs), err
	})
}

func BenchmarkQueries_ListRunsCreatedRange(b *testing.B) {
	fx := openQueryFixture(b)
	span := queryFixtureEnd.Sub(queryFixtureStart)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		from := queryFixtureStart.Add(time.Duration(rng.Int64N(int64(span))))
		f := engine.RunFilter{TenantID: fx.tenant, Limit: queryPage}
		switch i % 3 {
		case 0: // created_after only
			f.CreatedAfter = from
		case 1: // created_before only
			f.CreatedBefore = from
		case 2: // a day
			f.CreatedAfter, f.CreatedBefore = from, from.Add(24*time.Hour)
		}
		runs, _, err := fx.db.ListRuns(context.Background(), f)
		return len(runs), err
	})
}

// queryEventsPage is what the API asks for a page: one more than it shows.
const queryEventsPage = queryPage + 1

func BenchmarkQueries_ListEventsFirstPage(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		evs, err := fx.db.ListEvents(context.Background(), engine.EventFilter{TenantID: fx.tenant, Limit: queryEventsPage})
		return len(evs), err
	})
}

func BenchmarkQueries_ListEventsAfterID(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		evs, err := fx.db.ListEvents(context.Background(), engine.EventFilter{TenantID: fx.tenant,
			After: &engine.EventCursor{ID: 1 + rng.Int64N(fx.maxID)}, Limit: queryEventsPage})
		return len(evs), err
	})
}

// queryEventTypes are the types asked for, common and rare.
var queryEventTypes = []engine.EventType{engine.EventTaskCompleted, engine.EventRunCreated, engine.EventRunFailed,
	engine.EventTaskAttemptFailed, engine.EventRunPaused, engine.EventRunRetried, engine.EventTaskReset}

func BenchmarkQueries_ListEventsByType(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		f := engine.EventFilter{TenantID: fx.tenant, Type: queryEventTypes[i%len(queryEventTypes)], Limit: queryEventsPage}
		if i%2 == 1 {
			f.After = &engine.EventCursor{ID: 1 + rng.Int64N(fx.maxID)}
		}
		evs, err := fx.db.ListEvents(context.Background(), f)
		return len(evs), err
	})
}

// queryActors are the actors asked for.
var queryActors = []string{engine.ActorEngine, "api", "alice", "bob", "worker-03"}

func BenchmarkQueries_ListEventsByActor(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		f := engine.EventFilter{TenantID: fx.tenant, Actor: queryActors[i%len(queryActors)], Limit: queryEventsPage}
		if i%2 == 1 {
			f.After = &engine.EventCursor{ID: 1 + rng.Int64N(fx.maxID)}
		}
		evs, err := fx.db.ListEvents(context.Background(), f)
		return len(evs), err
	})
}

func BenchmarkQueries_ListEventsByTypeAndActor(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		f := engine.EventFilter{TenantID: fx.tenant, Actor: queryActors[i%len(queryActors)],
			Type: queryEventTypes[(i/len(queryActors))%len(queryEventTypes)], Limit: queryEventsPage}
		evs, err := fx.db.ListEvents(context.Background(), f)
		return len(evs), err
	})
}

func BenchmarkQueries_ListEventsByRun(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		evs, err := fx.db.ListEvents(context.Background(), engine.EventFilter{TenantID: fx.tenant,
			RunID: queryPick(rng, fx.runs).ID, Limit: queryEventsPage})
		return len(evs), err
	})
}

func BenchmarkQueries_ListEventsTimeRange(b *testing.B) {
	fx := openQueryFixture(b)
	span := queryFixtureEnd.Sub(queryFixtureStart)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		at := queryFixtureStart.Add(time.Duration(rng.Int64N(int64(span))))
		f := engine.EventFilter{TenantID: fx.tenant, Limit: queryEventsPage}
		switch i % 3 {
		case 0: // since only
			f.Since = at
		case 1: // until only
			f.Until = at
		case 2: // an hour
			f.Since, f.Until = at, at.Add(time.Hour)
		}
		evs, err := fx.db.ListEvents(context.Background(), f)
		return len(evs), err
	})
}

func BenchmarkQueries_RunEvents(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		evs, err := fx.db.RunEvents(context.Background(), fx.tenant, queryPick(rng, fx.runs).ID, 0, 0)
		return len(evs), err
	})
}

func BenchmarkQueries_GetRunRow(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		_, err := fx.db.GetRunRow(context.Background(), fx.tenant, queryPick(rng, fx.runs).ID)
		return 1, err
	})
}

func BenchmarkQueries_LoadRun(b *testing.B) {
	fx := openQueryFixture(b)
	benchQueryLatency(b, func(i int, rng *rand.Rand) (int, error) {
		_, tasks, err := fx.db.LoadRun(context.Background(), fx.tenant, queryPick(rng, fx.runs).ID)
		return len(tasks), err
	})
}

// queryStreamChunk is how many events one op of BenchmarkQueries_StreamTenant
// streams: ten of StreamEvents' internal pages.
const queryStreamChunk = 5000

func BenchmarkQueries_StreamTenant(b *testing.B) {
	fx := openQueryFixture(b)
	rng := rand.New(rand.NewPCG(42, 7))
	n := 0
	b.ResetTimer()
	for range b.N {
		// From a random point far enough from the end to fill the chunk.
		f := engine.EventFilter{TenantID: fx.tenant, After: &engine.EventCursor{ID: rng.Int64N(fx.maxID * 9 / 10)}, Limit: queryStreamChunk}
		err := fx.db.StreamEvents(context.Background(), f, func(*engine.Event) error {
			n++
			return nil
		})
		if err != nil {
			b.Fatalf("stream: %v", err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(n)/float64(b.N), "events/op")
}
