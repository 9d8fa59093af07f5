package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// tortureDefs are the workflows of the torture load: chains, a fan-out with a
// join, durable sleeps, retries after failures (by attempt number, see the
// "flaky" handler), external tasks that the example worker processes run, and
// a run that fails twice and completes once it has been retried twice.
var tortureDefs = []struct {
	name   string
	weight int // how often a start picks it
	tasks  int
	def    string
}{
	{"t-chain", 30, 6, `{"name":"t-chain","tasks":[
 {"id":"a","type":"work","input":{"ms":5}},
 {"id":"b","type":"work","depends_on":["a"],"input":{"ms":10}},
 {"id":"c","type":"noop","depends_on":["b"],"input":{"x":1}},
 {"id":"d","type":"flaky","depends_on":["c"],"input":{"fail_until":1},"retry":{"max_attempts":3,"initial_interval":"5ms"}},
 {"id":"e","type":"work","depends_on":["d"],"input":{"ms":5}},
 {"id":"f","type":"noop","depends_on":["e"]}]}`},
	{"t-fanout", 25, 8, `{"name":"t-fanout","max_parallel":3,"tasks":[
 {"id":"root","type":"work","input":{"ms":10}},
 {"id":"w1","type":"work","depends_on":["root"],"input":{"ms":30}},
 {"id":"w2","type":"work","depends_on":["root"],"input":{"ms":5},"priority":5},
 {"id":"nap","type":"sleep","depends_on":["root"],"config":{"duration":"100ms"}},
 {"id":"flap","type":"flaky","depends_on":["root"],"input":{"fail_until":2},"retry":{"max_attempts":4,"initial_interval":"10ms","backoff":2}},
 {"id":"ext","type":"python","depends_on":["root"],"input":{"sleep_ms":20},"retry":{"max_attempts":20,"initial_interval":"10ms"}},
 {"id":"echo","type":"noop","depends_on":["root"],"input":{"x":2}},
 {"id":"join","type":"work","depends_on":["w1","w2","nap","flap","ext","echo"],"input":{"ms":5}}]}`},
	{"t-sleep", 15, 3, `{"name":"t-sleep","tasks":[
 {"id":"s1","type":"sleep","config":{"duration":"300ms"}},
 {"id":"mid","type":"noop","depends_on":["s1"]},
 {"id":"s2","type":"sleep","depends_on":["mid"],"config":{"duration":"200ms"}}]}`},
	{"t-external", 10, 4, `{"name":"t-external","tasks":[
 {"id":"x1","type":"python","input":{"sleep_ms":30},"retry":{"max_attempts":20,"initial_interval":"10ms"}},
 {"id":"x2","type":"python","depends_on":["x1"],"input":{"sleep_ms":10},"retry":{"max_attempts":20,"initial_interval":"10ms"}},
 {"id":"x3","type":"python","depends_on":["x1"],"input":{"sleep_ms":50},"retry":{"max_attempts":20,"initial_interval":"10ms"}},
 {"id":"end","type":"noop","depends_on":["x2","x3"]}]}`},
	{"t-retried", 20, 2, `{"name":"t-retried","tasks":[
 {"id":"shaky","type":"flaky","input":{"fail_until":2}},
 {"id":"after","type":"work","depends_on":["shaky"],"input":{"ms":5}}]}`},
}

// tortureRun is a run the server acknowledged.
type tortureRun struct {
	id, workflow string
	cancelled    bool // a cancel was answered 200: the run must end cancelled
	cancelLost   bool // a cancel went out and the server died before answering: it may have been recorded
}

// mayRetry says whether a run may be retried: not once a cancel may have
// been recorded, whose run must stay cancelled.
func (r *tortureRun) mayRetry() bool {
	return r.workflow == "t-retried" && !r.cancelled && !r.cancelLost
}

// tortureFigures are what a torture run reports.
type tortureFigures struct {
	kills, workerKills                 int
	keyed, inDoubt, replayed, newAfter int // idempotent starts: keyed, unanswered, then answered as replayed or new
	pauses, resumes, cancels, retries  int
}

// torture is the load of one TestTorture and what it was told.
type torture struct {
	t      *testing.T
	client *http.Client

	mu      sync.Mutex // protects the fields below
	rng     *rand.Rand
	life    int
	runs    []*tortureRun
	keys    map[string]string // Idempotency-Key -> the run it acknowledged
	bodies  map[string]string // Idempotency-Key -> its request body
	doubt   []string          // keys sent without an answer, to send again
	paused  []*tortureRun
	figures tortureFigures
}

// intn draws from the load's random source, which every goroutine shares.
func (tt *torture) intn(n int) int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.rng.IntN(n)
}

// pickWorkflow draws a workflow by weight.
func (tt *torture) pickWorkflow() string {
	n := tt.intn(100)
	for _, d := range tortureDefs {
		if n < d.weight {
			return d.name
		}
		n -= d.weight
	}
	return tortureDefs[0].name
}

// startRun posts a start, with an Idempotency-Key when key is not empty.
func (tt *torture) startRun(c *child, key, body string) (code int, id string, replayed bool, err error) {
	req, _ := http.NewRequest(http.MethodPost, c.url("/v1/run"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := tt.client.Do(req)
	if err != nil {
		return 0, "", false, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", false, err
	}
	var run struct{ ID string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(data, &run) != nil || run.ID == "" {
		tt.t.Errorf("start %s: %d %s", body, resp.StatusCode, data)
	}
	id = run.ID
	return resp.StatusCode, id, resp.Header.Get("Idempotent-Replayed") == "true", nil
}

// acknowledge records a run the server answered 201 for.
func (tt *torture) acknowledge(id, body, key string) {
	var req struct{ Workflow string }
	json.Unmarshal([]byte(body), &req)
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.runs = append(tt.runs, &tortureRun{id: id, workflow: req.Workflow})
	if key != "" {
		tt.keys[key] = id
	}
}

// starter starts runs until stop or until the server dies under it; every
// acknowledged run goes to acks.
func (tt *torture) starter(c *child, g int, stop <-chan struct{}, acks chan<- struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		tt.mu.Lock()
		life := tt.life
		tt.mu.Unlock()
		body := fmt.Sprintf(`{"workflow":%q,"input":{"life":%d,"g":%d,"i":%d}}`, tt.pickWorkflow(), life, g, i)
		key := ""
		if tt.intn(3) == 0 {
			key = fmt.Sprintf("start-%d-%d-%d", life, g, i)
			tt.mu.Lock()
			tt.figures.keyed++
			tt.bodies[key] = body
			tt.mu.Unlock()
		}
		code, id, replayed, err := tt.startRun(c, key, body)
		if err != nil { // the server died under us: a keyed start is sent again
			if key != "" {
				tt.mu.Lock()
				tt.doubt = append(tt.doubt, key)
				tt.figures.inDoubt++
				tt.mu.Unlock()
			}
			return
		}
		if code != http.StatusCreated {
			return
		}
		if replayed {
			tt.t.Errorf("start with the new key %s answered as a replay", key)
		}
		tt.acknowledge(id, body, key)
		select {
		case acks <- struct{}{}:
		case <-stop:
			return
		}
	}
}

// resolveDoubts sends again every keyed start that got no answer: the server
// answers the run the first request started if it was durable, a new run if
// it was not; either way exactly one run holds the key.
func (tt *torture) resolveDoubts(c *child) {
	tt.mu.Lock()
	doubt := tt.doubt
	tt.doubt = nil
	tt.mu.Unlock()
	for _, key := range doubt {
		body := tt.bodies[key]
		code, id, replayed, err := tt.startRun(c, key, body)
		if err != nil || code != http.StatusCreated {
			tt.t.Fatalf("start %s again: %d %v", key, code, err)
		}
		tt.mu.Lock()
		if replayed {
			tt.figures.replayed++
		} else {
			tt.figures.newAfter++
		}
		tt.mu.Unlock()
		tt.acknowledge(id, body, key)
	}
}

// controller pauses, resumes, cancels and retries acknowledged runs, one
// action per acknowledged start; it closes busy once n starts came in.
func (tt *torture) controller(c *child, n int, busy chan<- struct{}, stop <-chan struct{}, acks <-chan struct{}) {
	seen := 0
	for {
		select {
		case <-stop:
			return
		case <-acks:
		}
		if seen++; seen == n {
			close(busy)
		}
		tt.mu.Lock()
		r := tt.runs[tt.rng.IntN(len(tt.runs))]
		action := tt.rng.IntN(100)
		var p *tortureRun
		pi := -1
		if len(tt.paused) > 0 {
			pi = tt.rng.IntN(len(tt.paused))
			p = tt.paused[pi]
		}
		tt.mu.Unlock()
		switch {
		case action < 12: // pause; the final phase resumes what is left paused
			code, _, err := postJSON(tt.client, c.url("/v1/runs/"+r.id+"/pause"), "")
			if err != nil {
				return
			}
			if code == http.StatusOK {
				tt.mu.Lock()
				tt.paused = append(tt.paused, r)
				tt.figures.pauses++
				tt.mu.Unlock()
			}
		case action < 20 && p != nil: // resume one of them
			code, _, err := postJSON(tt.client, c.url("/v1/runs/"+p.id+"/resume"), "")
			if err != nil {
				return
			}
			tt.mu.Lock()
			tt.paused = slices.Delete(tt.paused, pi, pi+1)
			if code == http.StatusOK {
				tt.figures.resumes++
			}
			tt.mu.Unlock()
		case action < 25: // cancel
			code, _, err := postJSON(tt.client, c.url("/v1/runs/"+r.id+"/cancel"), "")
			if err != nil {
				tt.mu.Lock()
				r.cancelLost = true
				tt.mu.Unlock()
				return
			}
			if code == http.StatusOK {
				tt.mu.Lock()
				r.cancelled = true
				tt.figures.cancels++
				tt.mu.Unlock()
			}
		case action < 45: // retry it if it failed
			tt.mu.Lock()
			ok := r.mayRetry()
			tt.mu.Unlock()
			if !ok {
				continue
			}
			code, _, err := postJSON(tt.client, c.url("/v1/runs/"+r.id+"/retry"), "")
			if err != nil {
				return
			}
			if code == http.StatusOK {
				tt.mu.Lock()
				tt.figures.retries++
				tt.mu.Unlock()
			}
		}
	}
}

// finish drives every acknowledged run to its end: paused runs are resumed,
// failed t-retried runs retried (unless a cancel may have been recorded).
func (tt *torture) finish(c *child, deadline time.Time) {
	for _, r := range tt.runs {
		for {
			resp, err := tt.client.Get(c.url("/v1/runs/" + r.id))
			if err != nil {
				tt.t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var run struct{ State engine.RunState }
			json.Unmarshal(body, &run)
			if resp.StatusCode != http.StatusOK {
				tt.t.Fatalf("acknowledged run %s: %d after the kills", r.id, resp.StatusCode)
			}
			switch {
			case run.State == engine.RunPaused:
				postJSON(tt.client, c.url("/v1/runs/"+r.id+"/resume"), "")
				continue
			case run.State == engine.RunFailed && r.mayRetry():
				if code, _, _ := postJSON(tt.client, c.url("/v1/runs/"+r.id+"/retry"), ""); code == http.StatusOK {
					tt.figures.retries++
				}
				continue
			case run.State.Terminal():
			default:
				if time.Now().After(deadline) {
					tt.t.Fatalf("run %s of %s still %s: %s", r.id, r.workflow, run.State, body)
				}
				time.Sleep(5 * time.Millisecond)
				continue
			}
			break
		}
	}
}

// TestTorture runs the server as a child process under mixed load (chains,
// fan-outs, durable sleeps, retries after failures, external tasks run by
// example worker processes, pauses, resumes, cancels, run retries, starts
// with an Idempotency-Key sent again after a crash) and SIGKILLs it
// TORTURE_KILLS times (default 10) at random points, some right after a
// restart. After the last restart every acknowledged run ends as it must,
// none is lost, no task completed more often than it was reset plus once,
// every log is gapless, its chain holds, its projections equal its fold, and
// `orchestrator verify` exits 0. TORTURE_SEED repeats a run's choice of kill
// points (the load's own timing differs from run to run).
func TestTorture(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	kills := 10
	if v := os.Getenv("TORTURE_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		is.NoErr(err) // TORTURE_KILLS is a number
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("TORTURE_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		is.NoErr(err) // TORTURE_SEED is a number
		seed = n
	}
	t.Logf("TORTURE_KILLS=%d TORTURE_SEED=%d", kills, seed)
	began := time.Now()
	dbPath := filepath.Join(t.TempDir(), "torture.db")
	port := freePort(t) // one address for every life, so that the workers carry on across kills
	// Kills may land on the same task's attempts again and again; the bound
	// of MAX_ABANDONED is TestCrashLoop's subject, not this test's. The
	// flaky tasks open the breaker of their type: it holds their attempts
	// back for a moment, not for the default 30s.
	env := []string{"PORT=" + port, "MAX_ABANDONED=1000", "BREAKER_OPEN_FOR=100ms"}
	tt := &torture{t: t, client: newClient(), rng: rand.New(rand.NewPCG(seed, 7)),
		keys: map[string]string{}, bodies: map[string]string{}}
	kill := rand.New(rand.NewPCG(seed, 11)) // the kill points; only this goroutine draws from it

	c := startChild(t, dbPath, env...)
	for _, d := range tortureDefs {
		code, body, err := postJSON(tt.client, c.url("/v1/workflows"), d.def)
		is.NoErr(err) // register
		if code != http.StatusCreated {
			t.Fatalf("register %s: %d %s", d.name, code, body)
		}
	}
	workers := make([]*workerProc, 3)
	for i := range workers {
		workers[i] = startWorker(t, c.url(""), fmt.Sprintf("w%d", i), 2*time.Second, false)
	}
	for life := 0; life < kills; life++ {
		if life > 0 {
			c = startChild(t, dbPath, env...)
		}
		tt.client.CloseIdleConnections() // those of the dead process
		tt.mu.Lock()
		tt.life = life
		tt.mu.Unlock()
		tt.resolveDoubts(c)
		stop, busy := make(chan struct{}), make(chan struct{})
		acks := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() { defer wg.Done(); tt.starter(c, g, stop, acks) }()
		}
		wg.Add(1)
		starts := 10 + kill.IntN(40)
		go func() { defer wg.Done(); tt.controller(c, starts, busy, stop, acks) }()
		// A random point: mostly under load, sometimes right after the
		// restart, while the attempts recovery retries run again.
		if kill.IntN(5) == 0 {
			time.Sleep(time.Duration(kill.IntN(50)) * time.Millisecond)
		} else {
			select {
			case <-busy:
			case <-time.After(30 * time.Second):
				c.kill(t)
				t.Fatalf("life %d: %d starts not acknowledged within 30s\n%s", life, starts, c.logs.String())
			}
			time.Sleep(time.Duration(kill.IntN(150)) * time.Millisecond)
		}
		if kill.IntN(4) == 0 { // a worker dies too, maybe holding a lease
			i := kill.IntN(len(workers))
			workers[i].kill()
			tt.mu.Lock()
			tt.figures.workerKills++
			tt.mu.Unlock()
			workers[i] = startWorker(t, c.url(""), fmt.Sprintf("w%d-%d", i, life), 2*time.Second, false)
		}
		c.kill(t)
		close(stop)
		wg.Wait()
		tt.figures.kills++
	}

	// The last life: settle the doubts, check every key, drive every run to its end.
	c = startChild(t, dbPath, env...)
	tt.client.CloseIdleConnections()
	tt.resolveDoubts(c)
	for key, id := range tt.keys {
		code, got, replayed, err := tt.startRun(c, key, tt.bodies[key])
		is.NoErr(err)                      // start again
		is.Equal(code, http.StatusCreated) // answered
		is.True(replayed)                  // from the key
		is.Equal(got, id)                  // with the run it acknowledged first
	}
	tt.finish(c, time.Now().Add(60*time.Second+time.Duration(kills)*time.Second))
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		is.NoErr(c.err) // graceful shutdown exits 0
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}

	tasks := tortureCheckLog(t, dbPath, tt.runs)
	f := tt.figures
	is.True(f.pauses > 0 && f.cancels > 0 && f.keyed > 0) // the load was mixed
	t.Logf("torture: %d kills (%d of a worker), %d runs acknowledged, %d tasks completed, in %s",
		f.kills, f.workerKills, len(tt.runs), tasks, time.Since(began).Round(time.Second))
	t.Logf("torture: %d starts with an Idempotency-Key, %d unanswered and sent again (%d replayed, %d new); %d pauses, %d resumes, %d cancels, %d run retries",
		f.keyed, f.inDoubt, f.replayed, f.newAfter, f.pauses, f.resumes, f.cancels, f.retries)
}

// tortureCheckLog reads the log straight from the file: every run ended as
// it must, no task completed more than once per reset, every log is gapless
// and verifies. It returns how many task completions the log holds.
func tortureCheckLog(t *testing.T, dbPath string, runs []*tortureRun) int {
	t.Helper()
	is := is.New(t)
	ctx := context.Background()
	db, err := store.Open(ctx, dbPath, store.Options{})
	is.NoErr(err) // open the database
	tasksOf := map[string]int{}
	for _, d := range tortureDefs {
		tasksOf[d.name] = d.tasks
	}
	completedBy := map[string]int{} // runs completed per workflow
	var completions, abandoned, leaseExpired, held, failures int
	for _, r := range runs {
		run, _, err := db.LoadRun(ctx, "default", r.id)
		is.NoErr(err) // every acknowledged run is in the database
		switch {
		case r.cancelled && run.State != engine.RunCancelled:
			t.Errorf("run %s: cancel answered 200, ended %s", r.id, run.State)
		case r.cancelLost && !(run.State == engine.RunCancelled || run.State == engine.RunCompleted ||
			run.State == engine.RunFailed && r.workflow == "t-retried"):
			t.Errorf("run %s of %s: a cancel got no answer, ended %s (%v)", r.id, r.workflow, run.State, run.Error)
		case !r.cancelled && !r.cancelLost && run.State != engine.RunCompleted:
			t.Errorf("run %s of %s ended %s, want completed (%v)", r.id, r.workflow, run.State, run.Error)
		case run.State == engine.RunCompleted:
			completedBy[r.workflow]++
		}
		events, err := db.RunEvents(ctx, "default", r.id, 0, 0)
		is.NoErr(err) // read the log
		completed, reset := map[string]int{}, map[string]int{}
		for i, e := range events {
			if e.Seq != int64(i+1) {
				t.Fatalf("run %s: event %d has seq %d: the log has a gap", r.id, i+1, e.Seq)
			}
			switch e.Type {
			case engine.EventTaskCompleted:
				completed[e.TaskID]++
				completions++
			case engine.EventTaskReset:
				reset[e.TaskID]++
			case engine.EventTaskAttemptFailed:
				failures++
				switch {
				case strings.Contains(string(e.Data), `"reason":"`+engine.ReasonAbandoned+`"`):
					abandoned++
				case strings.Contains(string(e.Data), `"reason":"`+engine.ReasonLeaseExpired+`"`):
					leaseExpired++
				case strings.Contains(string(e.Data), `"reason":"`+engine.ReasonCircuitOpen+`"`):
					held++
				}
			}
		}
		for task, n := range completed {
			if n > reset[task]+1 {
				t.Errorf("run %s task %s completed %d times after %d resets", r.id, task, n, reset[task])
			}
		}
		if run.State == engine.RunCompleted && len(completed) != tasksOf[r.workflow] {
			t.Errorf("run %s completed with %d of its %d tasks completed", r.id, len(completed), tasksOf[r.workflow])
		}
	}
	for _, d := range tortureDefs {
		is.True(completedBy[d.name] > 0) // each kind of workflow went through
	}
	is.True(abandoned > 0) // kills landed on running attempts and recovery retried them
	t.Logf("torture: %d attempts failed: %d abandoned by the kills, %d leases expired, %d held back by an open breaker",
		failures, abandoned, leaseExpired, held)

	var bad []string
	n, err := engine.Verify(ctx, db, func(_, id string, err error) { bad = append(bad, fmt.Sprintf("%s: %v", id, err)) })
	is.NoErr(err)           // verify
	is.True(n >= len(runs)) // a run may be durable yet unanswered when a kill lands between commit and answer
	if len(bad) > 0 {
		t.Fatalf("%d runs do not verify:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	is.NoErr(db.Close())
	code, out, errOut := runCmd("verify", "--database-url", dbPath)
	is.Equal(code, 0) // orchestrator verify agrees
	t.Logf("torture: orchestrator verify: %s%s", strings.TrimSpace(out), errOut)
	return completions
}
