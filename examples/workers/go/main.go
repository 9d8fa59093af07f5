// Command worker is an example external worker: it leases tasks of the given
// types from an orchestrator server, runs them, heartbeats while they run,
// and reports the outcome. Any language that speaks HTTP and JSON can do the
// same; see ../python/worker.py.
//
//	ORCHESTRATOR_API_KEY=orch_... go run ./examples/workers/go --server http://localhost:8084 --types python
//
// The key (a worker key of the tenant) goes in Authorization: Bearer; the
// server records it, with the worker id, on the events of every attempt.
// Without one only a server in AUTH=local on this host answers.
//
// The work it does is a demonstration: it echoes the task's input after
// sleeping input.sleep_ms milliseconds, and fails with input.fail_code (not
// retryable when input.permanent is true).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// lease is what poll answers.
type lease struct {
	ID         string          `json:"id"`
	RunID      string          `json:"run_id"`
	TaskID     string          `json:"task_id"`
	Type       string          `json:"type"`
	Attempt    int             `json:"attempt"`
	Input      json.RawMessage `json:"input"`
	LeaseToken string          `json:"lease_token"`
}

type worker struct {
	server, id string
	apiKey     string
	types      []string
	lease      time.Duration
	client     *http.Client
}

func main() {
	server := flag.String("server", envOr("ORCHESTRATOR_URL", "http://localhost:8084"), "orchestrator base URL")
	types := flag.String("types", "python", "comma-separated task types to run")
	id := flag.String("worker-id", "", "worker id (default host-pid)")
	leaseFor := flag.Duration("lease", 10*time.Second, "lease length; heartbeats come at a third of it")
	tenant := flag.String("tenant", "", "tenant id; empty uses the short /v1 API (tenant default)")
	apiKey := flag.String("api-key", os.Getenv("ORCHESTRATOR_API_KEY"), "API key of the worker (env ORCHESTRATOR_API_KEY, preferred: a flag shows in the process list)")
	flag.Parse()
	if *id == "" {
		host, _ := os.Hostname()
		*id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	base := strings.TrimRight(*server, "/") + "/v1"
	if *tenant != "" {
		base = strings.TrimRight(*server, "/") + "/api/v1/tenants/" + *tenant
	}
	w := &worker{server: base, id: *id, apiKey: *apiKey, types: strings.Split(*types, ","), lease: *leaseFor,
		client: &http.Client{Timeout: 70 * time.Second}}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("worker %s polling %s for %v", w.id, w.server, w.types)
	w.loop(ctx)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// loop polls until ctx is done, running one task at a time.
func (w *worker) loop(ctx context.Context) {
	for ctx.Err() == nil {
		var l lease
		status, err := w.post(ctx, "/tasks/poll", map[string]any{"types": w.types, "worker_id": w.id,
			"lease": w.lease.String(), "wait": "20s"}, &l)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Printf("poll: %v", err)
				time.Sleep(time.Second)
			}
			continue
		case status == http.StatusNoContent:
			continue
		}
		w.run(ctx, &l)
	}
}

// run does one task, heartbeating until it is done, then reports.
func (w *worker) run(ctx context.Context, l *lease) {
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go func() {
		t := time.NewTicker(w.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				if _, err := w.post(hbCtx, "/tasks/"+l.ID+"/heartbeat", map[string]any{"lease_token": l.LeaseToken,
					"lease": w.lease.String()}, nil); err != nil && hbCtx.Err() == nil {
					log.Printf("heartbeat %s: %v", l.ID, err)
				}
			}
		}
	}()
	output, code, permanent := work(ctx, l, w.id)
	stopHB()
	if code != "" {
		_, err := w.post(ctx, "/tasks/"+l.ID+"/fail", map[string]any{"lease_token": l.LeaseToken,
			"error": map[string]string{"code": code, "message": "the example worker was asked to fail"}, "retryable": !permanent}, nil)
		log.Printf("task %s failed with %s (report: %v)", l.ID, code, err)
		return
	}
	_, err := w.post(ctx, "/tasks/"+l.ID+"/complete", map[string]any{"lease_token": l.LeaseToken, "output": output}, nil)
	log.Printf("task %s completed (report: %v)", l.ID, err)
}

// work is the demonstration task.
func work(ctx context.Context, l *lease, workerID string) (output any, failCode string, permanent bool) {
	var in struct {
		SleepMS   int    `json:"sleep_ms"`
		FailCode  string `json:"fail_code"`
		Permanent bool   `json:"permanent"`
	}
	json.Unmarshal(l.Input, &in)
	select {
	case <-time.After(time.Duration(in.SleepMS) * time.Millisecond):
	case <-ctx.Done():
	}
	if in.FailCode != "" {
		return nil, in.FailCode, in.Permanent
	}
	return map[string]any{"echo": l.Input, "attempt": l.Attempt, "worker": workerID}, "", false
}

// post sends a JSON request; a problem answer becomes an error.
func (w *worker) post(ctx context.Context, path string, body, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.server+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if w.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+w.apiKey)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return resp.StatusCode, errors.New(resp.Status + ": " + string(data))
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		return resp.StatusCode, json.Unmarshal(data, out)
	}
	return resp.StatusCode, nil
}
