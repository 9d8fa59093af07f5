package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

func TestWithBreaker(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var calls atomic.Int32
	var fail atomic.Bool
	fail.Store(true)
	inner := engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
		calls.Add(1)
		if fail.Load() {
			return nil, errors.New("service down")
		}
		return json.RawMessage(`{"ok":true}`), nil
	})
	set := metrics.NewSet()
	h := WithBreaker("model", inner, BreakerConfig{Failures: 3, OpenFor: 50 * time.Millisecond, TargetMetrics: true}, set).(*typeBreaker)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		_, err := h.Run(ctx, &engine.Attempt{})
		is.True(err != nil) // the service fails
	}
	is.Equal(h.State(""), "open") // three failures in a row open it
	_, err := h.Run(ctx, &engine.Attempt{})
	reason, wait, deferred := engine.DeferredOf(err)
	is.True(deferred)                          // the next attempt is deferred
	is.Equal(reason, engine.ReasonCircuitOpen) // with the reason recorded
	is.True(wait > 0 && wait <= 50*time.Millisecond)
	is.Equal(calls.Load(), int32(3)) // and not sent
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	is.True(strings.Contains(buf.String(), `orchestrator_circuit_breaker_state{kind="task_type",tenant="",name="model"} 2`)) // visible in metrics
	is.True(strings.Contains(buf.String(), `orchestrator_circuit_breakers_open{kind="task_type",type="model"} 1`))           // and counted

	fail.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for h.State("") == "open" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	is.Equal(h.State(""), "half-open") // after OpenFor a probe may go
	out, err := h.Run(ctx, &engine.Attempt{})
	is.NoErr(err)                        // the probe succeeds
	is.Equal(string(out), `{"ok":true}`) // and its output comes through
	is.Equal(h.State(""), "closed")      // which closes the breaker
	_, err = h.Run(ctx, &engine.Attempt{})
	is.NoErr(err)

	fail.Store(true)
	perm := WithBreaker("strict", engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
		return nil, engine.Permanent(errors.New("bad input"))
	}), BreakerConfig{Failures: 1}, nil).(*typeBreaker)
	for i := 0; i < 3; i++ {
		perm.Run(ctx, &engine.Attempt{})
	}
	is.Equal(perm.State(""), "closed") // permanent failures do not open it
}

func TestWithBreaker_PerTenant(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var calls atomic.Int32
	inner := engine.HandlerFunc(func(ctx context.Context, a *engine.Attempt) (json.RawMessage, error) {
		calls.Add(1)
		if a.TenantID == "acme" {
			return nil, errors.New("acme's service is down")
		}
		return json.RawMessage(`{"ok":true}`), nil
	})
	set := metrics.NewSet()
	h := WithBreaker("model", inner, BreakerConfig{Failures: 2, OpenFor: time.Hour}, set).(*typeBreaker)
	ctx := context.Background()
	for range 2 {
		_, err := h.Run(ctx, &engine.Attempt{TenantID: "acme"})
		is.True(err != nil) // acme's calls fail
	}
	is.Equal(h.State("acme"), "open") // and open acme's breaker
	_, err := h.Run(ctx, &engine.Attempt{TenantID: "acme"})
	_, _, deferred := engine.DeferredOf(err)
	is.True(deferred) // acme is held back
	out, err := h.Run(ctx, &engine.Attempt{TenantID: "globex"})
	is.NoErr(err)                         // globex is not
	is.Equal(string(out), `{"ok":true}`)  // and its call was made
	is.Equal(h.State("globex"), "closed") // with its own breaker
	is.Equal(calls.Load(), int32(3))      // two failures and globex's call
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	is.True(strings.Contains(buf.String(), `orchestrator_circuit_breakers_open{kind="task_type",type="model"} 1`)) // counted
	is.True(!strings.Contains(buf.String(), "acme"))                                                               // without naming the tenant
}
