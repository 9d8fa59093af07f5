package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/client"
)

// next receives a stream event or fails after waitTimeout.
func next(t *testing.T, ch <-chan client.StreamEvent) client.StreamEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(waitTimeout):
		t.Fatal("no stream event")
	}
	return client.StreamEvent{}
}

func TestFollowWorkflow_ReconnectsWithLastEventID(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t)
	ctx := ctxFor(t)
	mustRegister(t, c, def("w", typeExt))
	run := mustExecute(t, c, "w")
	waitTask(t, c, run.ID, "t1", "ready")

	events := make(chan client.StreamEvent, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.FollowWorkflow(ctx, run.ID, 0, func(ev client.StreamEvent) error {
			events <- ev
			if ev.End != nil {
				return client.ErrStop
			}
			return nil
		})
	}()
	var seqs []int64
	for len(seqs) < 3 { // created, started, a ready
		ev := next(t, events)
		is.True(ev.Event != nil) // history events, decoded
		seqs = append(seqs, ev.Event.Seq)
	}
	env.srv.CloseClientConnections() // the connection breaks
	_, err := c.PauseWorkflow(ctx, run.ID)
	is.NoErr(err)
	_, err = c.CancelWorkflow(ctx, run.ID)
	is.NoErr(err)
	var end *client.StreamEvent
	for end == nil {
		ev := next(t, events)
		if ev.End != nil {
			end = &ev
			break
		}
		seqs = append(seqs, ev.Event.Seq)
	}
	for i, s := range seqs {
		is.Equal(s, int64(i+1)) // every event once, in order, across the reconnect
	}
	is.Equal(string(end.End.State), "cancelled")
	is.NoErr(<-done) // ErrStop ends it with nil
}

func TestFollowTenantRuns(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t, envOptions{})
	c := env.client(t)
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	mustRegister(t, c, def("w", typeExt))
	run := mustExecute(t, c, "w")
	_, err := c.PauseWorkflow(ctx, run.ID)
	is.NoErr(err)
	events := make(chan client.StreamEvent, 100)
	go c.FollowTenantRuns(ctx, "1", func(ev client.StreamEvent) error { // after the log's first event
		events <- ev
		return nil
	})
	ev := next(t, events)
	is.True(ev.Run != nil)                   // run events, decoded
	is.Equal(ev.Run.ID, run.ID)              // the run changed since event 1
	is.Equal(string(ev.Run.State), "paused") // with its current state
	is.True(ev.ID != "")                     // and a cursor to resume from
	_, err = c.CancelWorkflow(ctx, run.ID)
	is.NoErr(err)
	ev = next(t, events)
	is.Equal(string(ev.Run.State), "cancelled") // then live
}
