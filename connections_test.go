package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
)

// serveInProcess runs the serve command in this process on 127.0.0.1 with
// the given flags and returns its address; the server is stopped (as by
// SIGTERM) at cleanup and must exit 0.
func serveInProcess(t *testing.T, args ...string) string {
	t.Helper()
	addr, _ := serveLogged(t, args...)
	return addr
}

// logLines keeps the JSON log records of a server, for tests to look at.
type logLines struct {
	mu      sync.Mutex // protects records
	records []map[string]any
}

// find returns the records whose msg is msg.
func (l *logLines) find(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, r := range l.records {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// serveLogged is serveInProcess that also returns the server's log records
// up to now and as they come.
func serveLogged(t *testing.T, args ...string) (string, *logLines) {
	t.Helper()
	logs := &logLines{}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	exit := make(chan int, 1)
	base := []string{"serve", "--host", "127.0.0.1", "--port", "0", "--log-format", "json",
		"--database-url", filepath.Join(t.TempDir(), "serve.db")}
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
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			logs.mu.Lock()
			logs.records = append(logs.records, rec)
			logs.mu.Unlock()
			if a, ok := rec["addr"].(string); ok && rec["msg"] == "listening" {
				addr <- a
			}
		}
		io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exit:
			if code != 0 {
				t.Errorf("server exited %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	})
	select {
	case a := <-addr:
		return a, logs
	case code := <-exit:
		exit <- code
		t.Fatalf("server exited %d before listening", code)
	case <-time.After(20 * time.Second):
		t.Fatal("server did not listen")
	}
	return "", nil
}

// rawGet sends GET path on conn and reads the answer whole.
func rawGet(conn net.Conn, br *bufio.Reader, path string) (*http.Response, error) {
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		return nil, err
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res, err
}

// dial opens a raw keep-alive connection; every read on it gives up after
// waitFor, so that a connection the server never closes fails the test.
func dial(t *testing.T, addr string, waitFor time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(waitFor))
	return conn, bufio.NewReader(conn)
}

// closedByServer reports whether reading conn ends (EOF or reset) rather
// than timing out on the client's own deadline.
func closedByServer(br *bufio.Reader) (bool, error) {
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, err
	}
	return true, err
}

func TestServe_IdleConnectionClosed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	addr := serveInProcess(t, "--idle-timeout", "200ms")
	conn, br := dial(t, addr, 20*time.Second)
	res, err := rawGet(conn, br, "/health")
	is.NoErr(err) // the first request is answered
	is.Equal(res.StatusCode, http.StatusOK)
	closed, err := closedByServer(br)
	is.True(closed) // the idle keep-alive connection is closed by the server
	if !closed {
		t.Logf("read: %v", err)
	}
}

func TestServe_SlowBodyCutOff(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	addr := serveInProcess(t, "--read-timeout", "300ms")
	conn, br := dial(t, addr, 20*time.Second)
	_, err := io.WriteString(conn, "POST /v1/run HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"+
		"Content-Length: 100\r\n\r\n{\"workflow\":")
	is.NoErr(err) // 12 of the 100 bytes announced, and no more
	closed, err := closedByServer(br)
	is.True(closed) // the server gives up on the body and closes the connection
	if !closed {
		t.Logf("read: %v", err)
	}
}

// TestServe_ConnectionCap: with --max-connections 1, a second client waits
// until the first connection is gone (here: closed by the idle timeout)
// instead of being accepted beside it.
func TestServe_ConnectionCap(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	addr := serveInProcess(t, "--max-connections", "1", "--idle-timeout", "2s")
	first, firstR := dial(t, addr, 30*time.Second)
	res, err := rawGet(first, firstR, "/health")
	is.NoErr(err) // the first client is served and keeps its connection
	is.Equal(res.StatusCode, http.StatusOK)

	second, secondR := dial(t, addr, 30*time.Second)
	res, err = rawGet(second, secondR, "/health")
	is.NoErr(err) // the second client is served too, once there is room
	is.Equal(res.StatusCode, http.StatusOK)
	// It was served only after the first connection was closed: the first
	// client cannot use its connection any more.
	_, err = rawGet(first, firstR, "/health")
	is.True(err != nil) // the first connection was closed before the second was served
	var ne net.Error
	is.True(!(errors.As(err, &ne) && ne.Timeout())) // by the server, not by the client's deadline
}

// TestServe_LongPollOutlivesWriteTimeout: a worker's long poll may wait
// longer than the write timeout of ordinary answers.
func TestServe_LongPollOutlivesWriteTimeout(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	addr := serveInProcess(t, "--write-timeout", "1s")
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Post("http://"+addr+"/v1/tasks/poll", "application/json",
		strings.NewReader(`{"types":["py"],"worker_id":"w1","wait":"2500ms"}`))
	is.NoErr(err) // the poll is answered, past the write timeout
	res.Body.Close()
	is.Equal(res.StatusCode, http.StatusNoContent) // nothing to lease
}
