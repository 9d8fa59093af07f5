package main

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestShutdown_OpenStreamsDoNotHoldIt: an event stream never ends by
// itself, and HTTP shutdown waits for every request in flight; the stream
// must end with the engine so that SIGTERM exits promptly.
func TestShutdown_OpenStreamsDoNotHoldIt(t *testing.T) {
	const grace = 8 * time.Second
	addr, cancel, exit := startServer(t, "--shutdown-grace", grace.String())
	defer cancel()
	res, err := http.Get("http://" + addr + "/api/v1/tenants/default/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			_ = strings.TrimSpace(sc.Text())
		}
	}()
	start := time.Now()
	cancel() // SIGTERM
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit code %d", code)
		}
	case <-time.After(grace / 2):
		t.Fatalf("an open stream held the shutdown for %s", time.Since(start).Round(time.Millisecond))
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end with the server")
	}
}
