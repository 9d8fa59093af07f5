package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// childEnv marks the test binary re-executed as the server under test.
const childEnv = "ORCHESTRATOR_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := run(ctx, []string{"serve"}, os.Stdout, os.Stderr, childHandlers())
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// childHandlers are the in-process task types of the child server: "work"
// takes {"ms": N} and holds a worker for N milliseconds unless cancelled;
// "flaky" takes {"fail_until": N} and fails (retryably, code "flaky") every
// attempt numbered N or lower, so retries happen by attempt number and not
// by chance; "die" kills the server process at once, as the kernel's
// out-of-memory killer would.
func childHandlers() map[string]engine.Handler {
	return map[string]engine.Handler{
		"flaky": engine.HandlerFunc(func(_ context.Context, a *engine.Attempt) (json.RawMessage, error) {
			var in struct {
				FailUntil int `json:"fail_until"`
			}
			json.Unmarshal(a.Input, &in)
			if a.Attempt <= in.FailUntil {
				return nil, &engine.TaskError{Code: "flaky", Message: fmt.Sprintf("attempt %d of a task that fails until attempt %d", a.Attempt, in.FailUntil)}
			}
			return json.RawMessage(fmt.Sprintf(`{"attempt":%d}`, a.Attempt)), nil
		}),
		"die": engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}),
		"work": engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
			var in struct{ MS int }
			json.Unmarshal(a.Input, &in)
			select {
			case <-time.After(time.Duration(in.MS) * time.Millisecond):
				return json.RawMessage(fmt.Sprintf(`{"key":%q}`, a.IdempotencyKey)), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}),
	}
}

// child is a server process under test.
type child struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
	logs *bytes.Buffer
}

// startChild starts the test binary as a server on dbPath and waits until it listens.
func startChild(t *testing.T, dbPath string, extraEnv ...string) *child {
	t.Helper()
	c, err := launchChild(t, dbPath, extraEnv...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// launchChild starts the test binary as a server on dbPath and waits until
// it listens; it returns an error when the process exits first.
func launchChild(t *testing.T, dbPath string, extraEnv ...string) (*child, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "HOST=127.0.0.1", "PORT=0", "LOG_FORMAT=json",
		"DATABASE_URL="+dbPath, "WORKERS=4", "SHUTDOWN_GRACE=5s")
	cmd.Env = append(cmd.Env, extraEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{}), logs: &bytes.Buffer{}}
	addr := make(chan string, 1)
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			mu.Lock()
			c.logs.Write(line)
			c.logs.WriteByte('\n')
			mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	select {
	case c.addr = <-addr:
	case <-c.done:
		mu.Lock()
		defer mu.Unlock()
		return c, fmt.Errorf("child exited before listening: %v\n%s", c.err, c.logs.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-c.done
		t.Fatalf("child did not listen within 30s\n%s", c.logs.String())
	}
	return c, nil
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("child did not die")
	}
}

func (c *child) url(path string) string { return "http://" + c.addr + path }

func newClient() *http.Client { return &http.Client{Timeout: 10 * time.Second} }

// jsonField returns a string field of a JSON object.
func jsonField(t *testing.T, body []byte, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	s, _ := m[name].(string)
	return s
}

// waitTasks polls a run until cond holds for its task states.
func waitTasks(t *testing.T, client *http.Client, c *child, id string, cond func(map[string]string) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(c.url("/v1/runs/" + id))
		if err != nil {
			t.Fatal(err)
		}
		var run struct {
			Tasks []struct{ ID, State string }
		}
		json.NewDecoder(resp.Body).Decode(&run)
		resp.Body.Close()
		states := map[string]string{}
		for _, tk := range run.Tasks {
			states[tk.ID] = tk.State
		}
		if cond(states) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: task states %v", id, states)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func postJSON(client *http.Client, url, body string) (int, []byte, error) {
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// crashDef mixes in-process work, durable sleeps, no-ops, retries and a
// fan-out/fan-in, so that a kill finds attempts and timers in flight.
const crashDef = `{"name":"crash","max_parallel":3,"tasks":[
 {"id":"a","type":"work","input":{"ms":20}},
 {"id":"b1","type":"work","depends_on":["a"],"input":{"ms":40},"retry":{"max_attempts":2,"initial_interval":"10ms"}},
 {"id":"b2","type":"sleep","depends_on":["a"],"config":{"duration":"150ms"}},
 {"id":"b3","type":"noop","depends_on":["a"],"input":{"x":1}},
 {"id":"b4","type":"work","depends_on":["a"],"input":{"ms":5},"priority":5},
 {"id":"c","type":"work","depends_on":["b1","b2","b3","b4"],"input":{"ms":10}},
 {"id":"d","type":"noop","depends_on":["c"]}]}`

// crashEnv lets a task lose any number of attempts to the kills of
// TestCrashRecovery.
var crashEnv = []string{"MAX_ABANDONED=1000"}

// TestCrashRecovery kills the server with SIGKILL in the middle of many runs,
// several times, and checks after the last restart that every acknowledged
// run finished, nothing completed twice, and the log is whole and verifies.
func TestCrashRecovery(t *testing.T) {
	is := is.New(t)
	dbPath := filepath.Join(t.TempDir(), "crash.db")
	client := newClient()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))

	var acked []string // runs the server answered 201 for
	var pauses int
	for round := 0; round < 5; round++ {
		// Five kills in quick succession may land on one task's attempts
		// each time; that is not the crash loop MAX_ABANDONED ends
		// (TestCrashLoop_TaskThatKillsTheServer tests that).
		c := startChild(t, dbPath, crashEnv...)
		if round == 0 {
			code, body, err := postJSON(client, c.url("/v1/workflows"), crashDef)
			is.NoErr(err)                                                // register
			is.True(code == http.StatusCreated || code == http.StatusOK) // definition stored
			_ = body
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					code, body, err := postJSON(client, c.url("/v1/run"), fmt.Sprintf(`{"workflow":"crash","input":{"g":%d,"i":%d}}`, g, i))
					if err != nil {
						return // the server died under us
					}
					if code != http.StatusCreated {
						t.Errorf("start run: %d %s", code, body)
						return
					}
					var run struct{ ID string }
					json.Unmarshal(body, &run)
					mu.Lock()
					acked = append(acked, run.ID)
					n := len(acked)
					mu.Unlock()
					if n%7 == 0 { // pause some runs; the final phase resumes them
						code, body, err := postJSON(client, c.url("/v1/runs/"+run.ID+"/pause"), "")
						switch {
						case err != nil:
						case code == http.StatusOK:
							mu.Lock()
							pauses++
							mu.Unlock()
						case code != http.StatusConflict: // the run may have finished already
							t.Errorf("pause: %d %s", code, body)
						}
					}
				}
			}(g)
		}
		// Let work pile up, then kill at a random moment.
		for start := len(acked); ; time.Sleep(2 * time.Millisecond) {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n-start >= 20 {
				break
			}
		}
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		c.kill(t)
		close(stop)
		wg.Wait()
	}
	t.Logf("%d runs acknowledged over 5 kills, %d paused", len(acked), pauses)
	is.True(len(acked) >= 100) // the rounds did real work

	// Final life: resume what was paused, wait for everything, shut down cleanly.
	c := startChild(t, dbPath, crashEnv...)
	deadline := time.Now().Add(90 * time.Second)
	for _, id := range acked {
		for {
			resp, err := client.Get(c.url("/v1/runs/" + id))
			is.NoErr(err) // get run
			var run struct{ State string }
			json.NewDecoder(resp.Body).Decode(&run)
			resp.Body.Close()
			is.True(resp.StatusCode == http.StatusOK) // every acknowledged run exists after the kills
			if run.State == "paused" {
				postJSON(client, c.url("/v1/runs/"+id+"/resume"), "")
				continue
			}
			if engine.RunState(run.State).Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s still %s", id, run.State)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		is.NoErr(c.err) // graceful shutdown exits 0
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}

	// The log, read straight from the file.
	ctx := context.Background()
	abandoned := 0
	db, err := store.Open(ctx, dbPath, store.Options{})
	is.NoErr(err)
	defer db.Close()
	for _, id := range acked {
		run, _, err := db.LoadRun(ctx, "default", id)
		is.NoErr(err)
		if run.State != engine.RunCompleted {
			t.Errorf("run %s ended %s, want completed (%v)", id, run.State, run.Error)
		}
		events, err := db.RunEvents(ctx, "default", id, 0, 0)
		is.NoErr(err)
		completed := map[string]int{}
		for _, e := range events {
			if e.Type == engine.EventTaskCompleted {
				completed[e.TaskID]++
			}
			if e.Type == engine.EventTaskAttemptFailed && bytes.Contains(e.Data, []byte(`"reason":"abandoned"`)) {
				abandoned++
			}
		}
		for task, n := range completed {
			if n != 1 {
				t.Errorf("run %s task %s completed %d times", id, task, n)
			}
		}
		is.Equal(len(completed), 7) // every task completed once
	}
	t.Logf("%d attempts recorded as abandoned by the kills", abandoned)
	is.True(abandoned > 0) // the kills landed on running attempts, and recovery retried them
	var bad []string
	n, err := engine.Verify(ctx, db, func(_, id string, err error) { bad = append(bad, fmt.Sprintf("%s: %v", id, err)) })
	is.NoErr(err)
	is.True(n >= len(acked)) // a run may be durable yet unacknowledged when the kill lands between commit and answer
	if len(bad) > 0 {
		t.Fatalf("%d runs do not verify (gapless seq, hash chain, projection = fold):\n%s", len(bad), strings.Join(bad, "\n"))
	}
}
