package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
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

// TestServe_StreamsCappedAtHalfTheConnections: a STREAM_MAX above half of
// MAX_CONNECTIONS is lowered to half, with a warning, and the server holds
// to the lowered bound: the stream past it is refused, not accepted.
func TestServe_StreamsCappedAtHalfTheConnections(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	addr, logs := serveLogged(t, "--max-connections", "4", "--stream-max", "10")
	warned := logs.find("stream-max lowered to half of max-connections")
	is.Equal(len(warned), 1)                      // the server says it lowered the bound
	is.Equal(warned[0]["stream_max"], float64(2)) // to half of 4
	is.Equal(warned[0]["level"], "WARN")

	url := "http://" + addr + "/api/v1/tenants/default/stream"
	for range 2 {
		res, err := http.Get(url)
		is.NoErr(err) // open a stream
		t.Cleanup(func() { res.Body.Close() })
		is.Equal(res.StatusCode, http.StatusOK) // the first two are streams
		is.Equal(res.Header.Get("Content-Type"), "text/event-stream")
	}
	res, err := http.Get(url)
	is.NoErr(err) // a third
	defer res.Body.Close()
	is.Equal(res.StatusCode, http.StatusTooManyRequests) // is refused: the bound is 2, not 10
	var p struct{ Code string }
	is.NoErr(json.NewDecoder(res.Body).Decode(&p)) // a problem document
	is.Equal(p.Code, "too_many_streams")
}
