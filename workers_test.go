package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

var (
	workerOnce sync.Once
	workerBin  string
	workerErr  error
)

// exampleWorker builds examples/workers/go once per test binary.
func exampleWorker(t *testing.T) string {
	t.Helper()
	workerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "orchestrator-worker")
		if err != nil {
			workerErr = err
			return
		}
		workerBin = filepath.Join(dir, "worker")
		out, err := exec.Command("go", "build", "-o", workerBin, "./examples/workers/go").CombinedOutput()
		if err != nil {
			workerErr = fmt.Errorf("build example worker: %v\n%s", err, out)
		}
	})
	if workerErr != nil {
		t.Fatal(workerErr)
	}
	return workerBin
}

// workerProc is an example worker process.
type workerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startWorker starts the Go example worker (or, with python, the Python one).
func startWorker(t *testing.T, server, id string, lease time.Duration, python bool) *workerProc {
	t.Helper()
	var cmd *exec.Cmd
	args := []string{"--server", server, "--types", "python", "--worker-id", id}
	if python {
		args = append(args, "--lease", strconv.Itoa(int(lease.Seconds())))
		cmd = exec.Command("python3", append([]string{"examples/workers/python/worker.py"}, args...)...)
	} else {
		args = append(args, "--lease", lease.String())
		cmd = exec.Command(exampleWorker(t), args...)
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &workerProc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-w.done
		if t.Failed() {
			t.Logf("worker %s log:\n%s", id, logs.String())
		}
	})
	return w
}

func (w *workerProc) kill() {
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
}

// apiCall posts JSON and decodes the answer into out (if not nil).
func apiCall(t *testing.T, client *http.Client, url, body string, out any) int {
	t.Helper()
	code, data, err := postJSON(client, url, body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	if out != nil && len(data) > 0 {
		json.Unmarshal(data, out)
	}
	return code
}

type runView struct {
	State string
	Tasks []struct {
		ID, State string
		WorkerID  string `json:"worker_id"`
		Attempts  int
		Output    json.RawMessage
	}
}

func getRun(t *testing.T, client *http.Client, c *child, id string) runView {
	t.Helper()
	resp, err := client.Get(c.url("/v1/runs/" + id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v runView
	json.NewDecoder(resp.Body).Decode(&v)
	return v
}

// waitRunState polls a run until its state is want.
func waitRunState(t *testing.T, client *http.Client, c *child, id, want string) runView {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v := getRun(t, client, c, id)
		if v.State == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: state %s, want %s", id, v.State, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runEvents(t *testing.T, dbPath, id string) []engine.Event {
	t.Helper()
	db, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ev, err := db.RunEvents(context.Background(), "default", id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.VerifyRun(context.Background(), db, "default", id); err != nil {
		t.Fatalf("verify %s: %v", id, err)
	}
	return ev
}

func countEvents(events []engine.Event, typ engine.EventType, reason string) int {
	n := 0
	for _, e := range events {
		if e.Type == typ && (reason == "" || bytes.Contains(e.Data, []byte(`"reason":"`+reason+`"`))) {
			n++
		}
	}
	return n
}

const workerDef = `{"name":"ext","tasks":[
 {"id":"a","type":"python","input":{"sleep_ms":%d},"retry":{"max_attempts":3,"initial_interval":"10ms"}},
 {"id":"b","type":"noop","depends_on":["a"]}]}`

func TestWorkers_LeaseProtocol(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dbPath := filepath.Join(t.TempDir(), "w.db")
	c := startChild(t, dbPath)
	t.Cleanup(func() { c.kill(t) })
	client := newClient()
	is.Equal(apiCall(t, client, c.url("/v1/workflows"), fmt.Sprintf(workerDef, 0), nil), 201) // register

	var run struct{ ID string }
	is.Equal(apiCall(t, client, c.url("/v1/run"), `{"workflow":"ext"}`, &run), 201) // start

	// A worker that leases and then goes silent: the lease expires.
	var l engine.Lease
	is.Equal(apiCall(t, client, c.url("/v1/tasks/poll"), `{"types":["python"],"worker_id":"silent","lease":"200ms","wait":"5s"}`, &l), 200)
	is.Equal(l.Attempt, 1) // first attempt
	is.Equal(l.TaskID, "a")
	// It comes back after the expiry: its token no longer holds the task.
	var l2 engine.Lease
	is.Equal(apiCall(t, client, c.url("/v1/tasks/poll"), `{"types":["python"],"worker_id":"second","lease":"5s","wait":"10s"}`, &l2), 200)
	is.Equal(l2.Attempt, 2) // the expired attempt was retried
	var prob struct{ Code, State string }
	is.Equal(apiCall(t, client, c.url("/v1/tasks/"+l.ID+"/complete"), `{"lease_token":"`+l.Token+`","output":{"late":true}}`, &prob), 409)
	is.Equal(prob.Code, "lease_lost") // stale token refused
	is.Equal(apiCall(t, client, c.url("/v1/tasks/"+l2.ID+"/heartbeat"), `{"lease_token":"wrong","lease":"5s"}`, &prob), 409)
	is.Equal(apiCall(t, client, c.url("/v1/tasks/"+l2.ID+"/heartbeat"), `{"lease_token":"`+l2.Token+`","lease":"5s"}`, nil), 200) // heartbeat

	// Completion, then the same completion again: same answer, nothing new recorded.
	is.Equal(apiCall(t, client, c.url("/v1/tasks/"+l2.ID+"/complete"), `{"lease_token":"`+l2.Token+`","output":{"n":1}}`, nil), 200)
	waitRunState(t, client, c, run.ID, "completed")
	before := len(runEvents(t, dbPath, run.ID))
	var again struct{ Status string }
	is.Equal(apiCall(t, client, c.url("/v1/tasks/"+l2.ID+"/complete"), `{"lease_token":"`+l2.Token+`","output":{"n":1}}`, &again), 200)
	is.Equal(again.Status, "completed")
	is.Equal(apiCall(t, client, c.url("/v1/tasks/"+l2.ID+"/fail"), `{"lease_token":"`+l2.Token+`","error":{"code":"x","message":"y"}}`, &prob), 409) // fail after complete is refused
	events := runEvents(t, dbPath, run.ID)
	is.Equal(len(events), before)                                                    // nothing recorded by the repeats
	is.Equal(countEvents(events, engine.EventTaskAttemptFailed, "lease_expired"), 1) // the expiry is in the history
	is.Equal(countEvents(events, engine.EventTaskCompleted, ""), 2)                  // a and b, once each

	// Bad requests.
	is.Equal(apiCall(t, client, c.url("/v1/tasks/poll"), `{"types":[],"worker_id":"w"}`, &prob), 400)
	is.Equal(apiCall(t, client, c.url("/v1/tasks/poll"), `{"types":["python"]}`, &prob), 400)
	is.Equal(apiCall(t, client, c.url("/v1/tasks/poll"), `{"types":["python"],"worker_id":"w","lease":"soon"}`, &prob), 400)
	is.Equal(apiCall(t, client, c.url("/v1/tasks/nope~a~1/complete"), `{"lease_token":"t"}`, &prob), 404)
	is.Equal(apiCall(t, client, c.url("/v1/tasks/garbage/complete"), `{"lease_token":"t"}`, &prob), 404)
	code := apiCall(t, client, c.url("/v1/tasks/poll"), `{"types":["python"],"worker_id":"w","wait":"0s"}`, nil)
	is.Equal(code, 204) // nothing ready
}

func TestWorkers_FailAndNonRetryable(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dbPath := filepath.Join(t.TempDir(), "f.db")
	c := startChild(t, dbPath)
	t.Cleanup(func() { c.kill(t) })
	client := newClient()
	is.Equal(apiCall(t, client, c.url("/v1/workflows"), `{"name":"f","tasks":[{"id":"a","type":"python",
		"retry":{"max_attempts":5,"initial_interval":"10ms","non_retryable_errors":["bad_input"]}},{"id":"b","type":"noop","depends_on":["a"]}]}`, nil), 201)
	var run struct{ ID string }
	is.Equal(apiCall(t, client, c.url("/v1/run"), `{"workflow":"f"}`, &run), 201)
	poll := func() engine.Lease {
		var l engine.Lease
		is.Equal(apiCall(t, client, c.url("/v1/tasks/poll"), `{"types":["python"],"worker_id":"w","wait":"10s"}`, &l), 200)
		return l
	}
	l := poll()
	is.Equal(apiCall(t, client, c.url("/v1/tasks/"+l.ID+"/fail"), `{"lease_token":"`+l.Token+`","error":{"code":"flaky","message":"try again"}}`, nil), 200)
	is.Equal(apiCall(t, client, c.url("/v1/tasks/"+l.ID+"/fail"), `{"lease_token":"`+l.Token+`","error":{"code":"flaky","message":"try again"}}`, nil), 200) // repeat: same answer
	l = poll()
	is.Equal(l.Attempt, 2) // retried
	is.Equal(apiCall(t, client, c.url("/v1/tasks/"+l.ID+"/fail"), `{"lease_token":"`+l.Token+`","error":{"code":"bad_input","message":"no"}}`, nil), 200)
	v := waitRunState(t, client, c, run.ID, "failed")
	is.Equal(v.Tasks[0].State, "failed")  // a non-retryable code fails the task at once
	is.Equal(v.Tasks[1].State, "skipped") // and skips what depends on it
	events := runEvents(t, dbPath, run.ID)
	is.Equal(countEvents(events, engine.EventTaskAttemptFailed, ""), 1) // the repeated fail recorded nothing
}

// TestWorkers_KilledWorker kills a real worker process in the middle of a
// task: its lease expires and another worker process finishes the task.
func TestWorkers_KilledWorker(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dbPath := filepath.Join(t.TempDir(), "k.db")
	c := startChild(t, dbPath)
	t.Cleanup(func() { c.kill(t) })
	client := newClient()
	is.Equal(apiCall(t, client, c.url("/v1/workflows"), fmt.Sprintf(workerDef, 3000), nil), 201)
	var run struct{ ID string }
	is.Equal(apiCall(t, client, c.url("/v1/run"), `{"workflow":"ext"}`, &run), 201)
	doomed := startWorker(t, c.url(""), "doomed", time.Second, false)
	waitTasks(t, client, c, run.ID, func(s map[string]string) bool { return s["a"] == "running" })
	doomed.kill()
	startWorker(t, c.url(""), "rescuer", 2*time.Second, false)
	v := waitRunState(t, client, c, run.ID, "completed")
	var out struct{ Worker string }
	json.Unmarshal(v.Tasks[0].Output, &out)
	is.Equal(out.Worker, "rescuer")  // the second worker finished it
	is.Equal(v.Tasks[0].Attempts, 2) // on the second attempt
	events := runEvents(t, dbPath, run.ID)
	is.Equal(countEvents(events, engine.EventTaskAttemptFailed, "lease_expired"), 1) // after the first lease expired
	is.Equal(countEvents(events, engine.EventTaskCompleted, ""), 2)
}

func TestWorkers_Python(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dbPath := filepath.Join(t.TempDir(), "p.db")
	c := startChild(t, dbPath)
	t.Cleanup(func() { c.kill(t) })
	client := newClient()
	is.Equal(apiCall(t, client, c.url("/v1/workflows"), fmt.Sprintf(workerDef, 10), nil), 201)
	var run struct{ ID string }
	is.Equal(apiCall(t, client, c.url("/v1/run"), `{"workflow":"ext","input":{}}`, &run), 201)
	startWorker(t, c.url(""), "py", 3*time.Second, true)
	v := waitRunState(t, client, c, run.ID, "completed")
	var out struct {
		Worker string
		Echo   struct {
			SleepMS int `json:"sleep_ms"`
		}
	}
	json.Unmarshal(v.Tasks[0].Output, &out)
	is.Equal(out.Worker, "py")     // the Python worker did it
	is.Equal(out.Echo.SleepMS, 10) // with the task's input
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestWorkers_ServerCrash kills the server while real workers hold leases:
// after the restart the leases still complete (the workers carry on) or
// expire and are retried, and no completion is recorded twice.
func TestWorkers_ServerCrash(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dbPath := filepath.Join(t.TempDir(), "sc.db")
	port := freePort(t)
	c := startChild(t, dbPath, "PORT="+port)
	client := newClient()
	is.Equal(apiCall(t, client, c.url("/v1/workflows"), `{"name":"many","tasks":[
		{"id":"a","type":"python","input":{"sleep_ms":150},"retry":{"max_attempts":3,"initial_interval":"10ms"}},
		{"id":"b","type":"python","depends_on":["a"],"input":{"sleep_ms":100},"retry":{"max_attempts":3,"initial_interval":"10ms"}}]}`, nil), 201)
	var ids []string
	for i := 0; i < 20; i++ {
		var run struct{ ID string }
		is.Equal(apiCall(t, client, c.url("/v1/run"), `{"workflow":"many"}`, &run), 201)
		ids = append(ids, run.ID)
	}
	for i := 0; i < 3; i++ {
		startWorker(t, c.url(""), fmt.Sprintf("w%d", i), time.Second, false)
	}
	// Kill the server while the workers hold leases.
	waitTasks(t, client, c, ids[0], func(s map[string]string) bool { return s["a"] == "running" || s["a"] == "completed" })
	c.kill(t)
	c = startChild(t, dbPath, "PORT="+port)
	t.Cleanup(func() { c.kill(t) })
	for _, id := range ids {
		waitRunState(t, client, c, id, "completed")
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	<-c.done
	for _, id := range ids {
		events := runEvents(t, dbPath, id) // verifies the chain and projections too
		done := map[string]int{}
		for _, e := range events {
			if e.Type == engine.EventTaskCompleted {
				done[e.TaskID]++
			}
		}
		is.Equal(done["a"], 1) // completed once
		is.Equal(done["b"], 1)
	}
}
