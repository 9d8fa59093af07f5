package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startServer runs the binary's serve command in-process on 127.0.0.1
// and returns its address, a cancel standing in for SIGTERM, and a channel
// that receives run's exit code.
func startServer(t *testing.T, args ...string) (string, context.CancelFunc, chan int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	exit := make(chan int, 1)
	base := []string{"serve", "--host", "127.0.0.1", "--port", "0", "--log-format", "json",
		"--database-url", filepath.Join(t.TempDir(), "shutdown.db")}
	go func() {
		code := run(ctx, append(base, args...), io.Discard, pw, nil)
		pw.Close()
		exit <- code
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		return a, cancel, exit
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("server did not listen")
	}
	return "", nil, nil
}

// README: "On SIGTERM the server stops accepting, lets running attempts
// finish for SHUTDOWN_GRACE, records the rest as interrupted, commits, and
// exits 0." With nothing running it should exit at once. But serve() calls
// srv.Shutdown(grace) first, which waits for every in-flight request, and a
// worker's long poll (wait up to 60s) is one: the engine, whose Stop would
// end the poll, is only stopped after Shutdown has used up the whole grace
// period (and then gets an already expired context, so running attempts get
// no grace at all).
func TestShutdown_LongPollsDoNotSpendTheGrace(t *testing.T) {
	const grace = 8 * time.Second
	addr, cancel, exit := startServer(t, "--shutdown-grace", grace.String())
	defer cancel()

	connected := make(chan struct{})
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(connected) }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST",
			"http://"+addr+"/v1/tasks/poll", strings.NewReader(`{"types":["python"],"worker_id":"w1","wait":"60s"}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := (&http.Client{Timeout: 70 * time.Second}).Do(req)
		if err == nil {
			res.Body.Close()
			t.Logf("poll answered %d after shutdown began", res.StatusCode)
		} else {
			t.Logf("poll: %v", err)
		}
	}()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("poll request was not sent")
	}
	// The poll's request is on the wire. A later connection answered proves
	// the listener accepted the poll's (the accept queue is FIFO): the server
	// now tracks it and will hold it for 60s.
	hres, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	hres.Body.Close()
	start := time.Now()
	cancel() // SIGTERM
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit code %d", code)
		}
		t.Logf("exited after %s", time.Since(start))
	case <-time.After(grace / 2):
		code := <-exit
		t.Errorf("with no attempt running, shutdown took %s (exit %d): the pending long poll held srv.Shutdown for the whole SHUTDOWN_GRACE of %s",
			time.Since(start).Round(time.Millisecond), code, grace)
	}
	<-pollDone
}
