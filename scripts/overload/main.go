// Command overload drives a real orchestrator server at a multiple of its
// sustainable start rate and reports how it holds up: memory, accepted and
// refused starts, latency of the accepted calls, whether every accepted run
// completed, and how long it takes to recover once the load stops.
//
//	go run ./scripts/overload                  # 60 s at 10x
//	DURATION=20s FACTOR=10 go run ./scripts/overload
//
// It builds the binary, serves it on a temporary database on 127.0.0.1 and
// passes its own environment on, so OVERLOAD_* and WORKERS settings apply.
// Settings: DURATION (60s), FACTOR (10), INFLIGHT (512: requests in flight
// at most; a start due while all are busy is counted as not sent),
// CALIBRATE_RUNS (2000: runs started at once to measure the sustainable
// rate), DEADLINE (5m: how long the accepted runs may take to complete).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const chain = `{"name":"chain","tasks":[` +
	`{"id":"t0","type":"noop"},{"id":"t1","type":"noop","depends_on":["t0"]},{"id":"t2","type":"noop","depends_on":["t1"]},` +
	`{"id":"t3","type":"noop","depends_on":["t2"]},{"id":"t4","type":"noop","depends_on":["t3"]},{"id":"t5","type":"noop","depends_on":["t4"]},` +
	`{"id":"t6","type":"noop","depends_on":["t5"]},{"id":"t7","type":"noop","depends_on":["t6"]},{"id":"t8","type":"noop","depends_on":["t7"]},` +
	`{"id":"t9","type":"noop","depends_on":["t8"]}]}`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "overload:", err)
		os.Exit(1)
	}
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "overload: %s=%q: want a duration like 60s\n", name, v)
			os.Exit(2)
		}
		return d
	}
	return def
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "overload: %s=%q: want a positive whole number\n", name, v)
			os.Exit(2)
		}
		return n
	}
	return def
}

type server struct {
	url    string
	cmd    *exec.Cmd
	client *http.Client
}

func run() error {
	duration := envDuration("DURATION", 60*time.Second)
	factor := envInt("FACTOR", 10)
	inflight := envInt("INFLIGHT", 512)
	calibrate := envInt("CALIBRATE_RUNS", 2000)
	deadline := envDuration("DEADLINE", 5*time.Minute)

	dir, err := os.MkdirTemp("", "overload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "orchestrator")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	s, err := startServer(bin, dir)
	if err != nil {
		return err
	}
	defer s.stop()
	fmt.Printf("# server pid %d on %s, database %s\n", s.cmd.Process.Pid, s.url, filepath.Join(dir, "overload.db"))
	if code, body := s.post("/v1/workflows", chain); code != http.StatusCreated && code != http.StatusOK {
		return fmt.Errorf("register: %d %s", code, body)
	}

	// The sustainable rate: runs started at once, divided by the time until
	// the last of them completed.
	t0 := time.Now()
	var wg sync.WaitGroup
	next := make(chan struct{})
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				s.post("/v1/run", `{"workflow":"chain"}`)
			}
		}()
	}
	for i := 0; i < calibrate; i++ {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	if err := s.waitCompleted(float64(calibrate), time.Minute); err != nil {
		return fmt.Errorf("calibration: %w", err)
	}
	sustainable := float64(calibrate) / time.Since(t0).Seconds()
	target := sustainable * float64(factor)
	fmt.Printf("sustainable start rate: %.0f runs/s (%d 10-task chains started at once, all completed in %.2fs)\n",
		sustainable, calibrate, time.Since(t0).Seconds())
	fmt.Printf("offering %.0f starts/s (%dx) for %s, at most %d requests in flight\n", target, factor, duration, inflight)

	l := &load{s: s}
	stopRSS := l.watchRSS()
	l.drive(target, duration, inflight)
	loadEnd := time.Now()

	// Recovery: health back to ok, and a start accepted.
	var healthy, accepting time.Duration
	var recoverErr error
	for healthy == 0 || accepting == 0 {
		if time.Since(loadEnd) > deadline {
			recoverErr = fmt.Errorf("not recovered %s after the load stopped", deadline)
			break
		}
		if healthy == 0 && s.health() == "ok" {
			healthy = time.Since(loadEnd)
		}
		if healthy != 0 && accepting == 0 {
			if code, _ := s.post("/v1/run", `{"workflow":"chain"}`); code == http.StatusCreated {
				accepting = time.Since(loadEnd)
				l.accepted.Add(1)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := float64(calibrate) + float64(l.accepted.Load())
	doneErr := s.waitCompleted(want, deadline-time.Since(loadEnd))
	drained := time.Since(loadEnd)
	stopRSS()
	failed := s.metric(`orchestrator_runs_total{outcome="failed"}`)
	hwm := rssOf(s.cmd.Process.Pid, "VmHWM:")

	lat := l.latencies()
	fmt.Printf("starts offered %d: accepted %d (%.0f/s), refused 503 overloaded %d (all with Retry-After: %v), other answers %d, not sent (client busy) %d\n",
		l.offered.Load(), l.accepted.Load(), float64(l.accepted.Load())/duration.Seconds(), l.refused.Load(),
		l.refused.Load() == l.retryAfter.Load(), l.other.Load(), l.notSent.Load())
	fmt.Printf("latency of accepted starts: p50 %s, p99 %s, max %s (%d)\n", pct(lat.accepted, 50), pct(lat.accepted, 99), pct(lat.accepted, 100), len(lat.accepted))
	fmt.Printf("latency of refused starts: p50 %s, p99 %s\n", pct(lat.refused, 50), pct(lat.refused, 99))
	fmt.Printf("latency of reads during the load (GET /v1/runs/{id}, 20/s): p50 %s, p99 %s, max %s; failed %d\n",
		pct(lat.reads, 50), pct(lat.reads, 99), pct(lat.reads, 100), l.readErrs.Load())
	fmt.Printf("overloaded for %.1fs of %.0fs (health sampled every 100 ms)\n", time.Duration(l.degraded.Load()).Seconds(), duration.Seconds())
	fmt.Printf("server memory: max RSS %.0f MiB (VmHWM), highest sampled during the load %.0f MiB\n", hwm/1024, float64(l.maxRSS.Load())/1024)
	if doneErr != nil {
		fmt.Printf("accepted runs completed: NO: %v\n", doneErr)
	} else {
		fmt.Printf("accepted runs completed: all %d (and none failed: %v), %.1fs after the load stopped\n", int(want), failed <= 0, drained.Seconds())
	}
	if recoverErr != nil {
		fmt.Printf("recovery after the load stopped: NO: %v (health %q)\n", recoverErr, s.health())
		return recoverErr
	}
	fmt.Printf("recovery after the load stopped: health ok in %s, first start accepted in %s\n",
		healthy.Round(time.Millisecond), accepting.Round(time.Millisecond))
	return doneErr
}

func startServer(bin, dir string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "serve", "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--database-url", filepath.Join(dir, "overload.db"), "--log-level", "warn")
	cmd.Env = append(os.Environ(), "AUTH=local")
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{url: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, client: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 1024}}}
	for start := time.Now(); s.health() != "ok"; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			s.stop()
			return nil, fmt.Errorf("server did not become healthy; see %s", logf.Name())
		}
	}
	return s, nil
}

func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// post sends a JSON body and returns the status and body.
func (s *server) post(path, body string) (int, []byte) {
	res, err := s.client.Post(s.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, data
}

func (s *server) health() string {
	res, err := s.client.Get(s.url + "/health")
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	var h struct {
		Status string `json:"status"`
	}
	json.NewDecoder(res.Body).Decode(&h)
	return h.Status
}

// metric reads one series from /metrics (-1 when absent).
func (s *server) metric(name string) float64 {
	res, err := s.client.Get(s.url + "/metrics")
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// waitCompleted waits until the server counts n completed runs.
func (s *server) waitCompleted(n float64, within time.Duration) error {
	end := time.Now().Add(within)
	for {
		got := s.metric(`orchestrator_runs_total{outcome="completed"}`)
		if got >= n {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%.0f of %.0f runs completed after %s", got, n, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rssOf reads a memory line (VmRSS:, VmHWM:) of /proc/PID/status, in KiB.
func rssOf(pid int, key string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb
		}
	}
	return 0
}

// load is the open-loop start traffic and what it saw.
type load struct {
	s                                                      *server
	offered, accepted, refused, retryAfter, other, notSent atomic.Int64
	readErrs                                               atomic.Int64
	maxRSS                                                 atomic.Int64
	degraded                                               atomic.Int64 // time.Duration
	mu                                                     sync.Mutex
	acceptedLat, refusedLat, readLat                       []time.Duration
	lastRun                                                atomic.Value // string: a run id to read
}

type latencies struct{ accepted, refused, reads []time.Duration }

func (l *load) latencies() latencies {
	l.mu.Lock()
	defer l.mu.Unlock()
	return latencies{l.acceptedLat, l.refusedLat, l.readLat}
}

// watchRSS samples the server's RSS every 100 ms until the returned stop.
func (l *load) watchRSS() func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if r := int64(rssOf(l.s.cmd.Process.Pid, "VmRSS:")); r > l.maxRSS.Load() {
				l.maxRSS.Store(r)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// drive offers starts at rate per second for d from at most inflight
// requests, reads a run 20 times a second and samples /health.
func (l *load) drive(rate float64, d time.Duration, inflight int) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tokens := make(chan struct{}) // unbuffered: a start is sent only if a client is free
	var wg sync.WaitGroup
	for i := 0; i < inflight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				l.start()
			}
		}()
	}
	wg.Add(2)
	go func() { defer wg.Done(); l.reads(ctx) }()
	go func() { defer wg.Done(); l.watchHealth(ctx) }()
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sent := 0.0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		due := rate * time.Since(start).Seconds()
		for ; sent < due; sent++ {
			l.offered.Add(1)
			select {
			case tokens <- struct{}{}:
			default:
				l.notSent.Add(1)
			}
		}
	}
	close(tokens)
	wg.Wait()
}

func (l *load) start() {
	t := time.Now()
	res, err := l.s.client.Post(l.s.url+"/v1/run", "application/json", bytes.NewReader([]byte(`{"workflow":"chain"}`)))
	if err != nil {
		l.other.Add(1)
		return
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	lat := time.Since(t)
	switch res.StatusCode {
	case http.StatusCreated:
		l.accepted.Add(1)
		var r struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(body, &r) == nil && r.ID != "" {
			l.lastRun.Store(r.ID)
		}
		l.mu.Lock()
		l.acceptedLat = append(l.acceptedLat, lat)
		l.mu.Unlock()
	case http.StatusServiceUnavailable:
		if !bytes.Contains(body, []byte(`"overloaded"`)) {
			l.other.Add(1)
			return
		}
		l.refused.Add(1)
		if res.Header.Get("Retry-After") != "" {
			l.retryAfter.Add(1)
		}
		l.mu.Lock()
		l.refusedLat = append(l.refusedLat, lat)
		l.mu.Unlock()
	default:
		l.other.Add(1)
	}
}

// reads reads the latest accepted run 20 times a second.
func (l *load) reads(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		id, _ := l.lastRun.Load().(string)
		if id == "" {
			continue
		}
		t := time.Now()
		res, err := l.s.client.Get(l.s.url + "/v1/runs/" + id)
		if err != nil {
			l.readErrs.Add(1)
			continue
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			l.readErrs.Add(1)
			continue
		}
		l.mu.Lock()
		l.readLat = append(l.readLat, time.Since(t))
		l.mu.Unlock()
	}
}

// watchHealth adds up the time /health says degraded.
func (l *load) watchHealth(ctx context.Context) {
	const every = 100 * time.Millisecond
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if l.s.health() == "degraded" {
			l.degraded.Add(int64(every))
		}
	}
}

// pct is the p-th percentile of ds (100: the largest).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := len(s) * p / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i].Round(10 * time.Microsecond)
}
