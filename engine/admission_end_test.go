package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// lineGate wraps the real store and, while paused, keeps the commits it is
// handed in line, in order, until the test lets them go one by one (each
// written, or failed as a disk error would fail it). Unlike reloadGate it
// never lets a later commit overtake an earlier one.
type lineGate struct {
	*store.DB
	mu     sync.Mutex
	paused bool
	line   []lineCommit
}

type lineCommit struct {
	changes []engine.Change
	done    func(error)
}

func (g *lineGate) Commit(changes []engine.Change, done func(error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused || len(g.line) > 0 {
		g.line = append(g.line, lineCommit{changes, done})
		return
	}
	g.DB.Commit(changes, done)
}

func (g *lineGate) pause() {
	g.mu.Lock()
	g.paused = true
	g.mu.Unlock()
}

// waiting is how many commits are held in line.
func (g *lineGate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.line)
}

// next lets the first commit in line go: written, or failed with fail.
func (g *lineGate) next(t *testing.T, fail bool) {
	t.Helper()
	g.mu.Lock()
	if len(g.line) == 0 {
		g.mu.Unlock()
		t.Fatal("no commit in line")
	}
	c := g.line[0]
	g.line = g.line[1:]
	if !fail {
		g.DB.Commit(c.changes, c.done)
	}
	g.mu.Unlock()
	if fail {
		c.done(errors.New("simulated disk I/O error"))
	}
}

// open lets every commit go, written, from now on.
func (g *lineGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.paused = false
	for _, c := range g.line {
		g.DB.Commit(c.changes, c.done)
	}
	g.line = nil
}

// A run cancelled, retried and cancelled again before the first
// cancellation is durable keeps its slots until the last end is: the first
// end's commit, durable, does not give them back while the second may
// still fail and leave the run active in the store.
func TestAdmission_EndAfterRetryKeepsTheSlotsUntilDurable(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	g := &lineGate{DB: openTestStore(t)}
	e := startEngineWith(t, g, engine.Config{ExternalTypes: true}, nil)
	t.Cleanup(g.open) // before the engine stops, which waits for the commits in line
	register(t, e, keyedDef("queue"))
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	b := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	is.Equal(b.State, engine.RunPending) // b waits for a's slot

	g.pause()
	control := func(f func(context.Context, string, string, engine.Caller) (*engine.Run, error)) chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := f(ctx, "default", a.ID, engine.Caller{})
			ch <- err
		}()
		return ch
	}
	cancelled := control(e.Cancel)
	waitFor(t, "a's cancellation in line", func() bool { return g.waiting() == 1 })
	retried := control(e.Retry)
	waitFor(t, "a's retry in line", func() bool { return g.waiting() == 2 })
	cancelledAgain := control(e.Cancel)
	waitFor(t, "a's second cancellation in line", func() bool { return g.waiting() == 3 })

	g.next(t, false) // the first cancellation is durable
	is.NoErr(recv(t, cancelled, "the first cancellation"))
	g.next(t, false) // and the retry
	is.NoErr(recv(t, retried, "the retry"))
	e.AdmitOnce()
	_, _, waiting := e.QueuedReason("default", b.ID)
	is.True(waiting) // a is cancelled again only in memory: b still waits

	g.next(t, true) // the second cancellation fails: a is active in the store
	is.True(recv(t, cancelledAgain, "the second cancellation") != nil)
	waitFor(t, "a to be back", func() bool {
		h := e.KeyHolders("default", "keyed", "c1")
		return len(h) == 1 && h[0] == a.ID && e.Active() == 2
	})
	is.Equal(mustLoad(t, g.DB, a.ID).State, engine.RunRunning)
	e.AdmitOnce()
	_, _, waiting = e.QueuedReason("default", b.ID)
	is.True(waiting) // b waits for a, running again

	g.open()
	_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
	is.NoErr(err) // durable this time
	waitFor(t, "b to start in a's slot", func() bool { return mustLoad(t, g.DB, b.ID).State == engine.RunRunning })
	is.True(strings.HasSuffix(reasonOf(t, runEvent(t, g.DB, b.ID, engine.EventRunStarted)), "slot freed by "+a.ID))
}

// cancel_in_progress: starts that come while the key's run is ending wait
// for its slot, and each supersedes the one waiting before it, so that the
// newest is the one that runs.
func TestAdmission_CancelInProgressSupersedesARunWaitingForAnEnd(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	g, e := gatedKeyEngine(t, "cancel_in_progress")
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	g.stallNext.Store(true)
	cancelled := make(chan error, 1)
	go func() {
		_, err := e.Cancel(ctx, "default", a.ID, engine.Caller{})
		cancelled <- err
	}()
	recv(t, g.stalled, "a's cancellation to reach the store")

	b := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	is.Equal(b.State, engine.RunPending) // b waits for a's end
	c := mustStart(t, e, "keyed", `{"customer":"c1"}`)
	is.Equal(c.State, engine.RunPending) // so does c, in b's place
	is.Equal(mustLoad(t, g.DB, b.ID).State, engine.RunCancelled)
	is.Equal(reasonOf(t, runEvent(t, g.DB, b.ID, engine.EventRunCancelled)), "concurrency_key: superseded by "+c.ID)

	close(g.unstall)
	is.NoErr(recv(t, cancelled, "the cancellation"))
	waitFor(t, "c to start in a's slot", func() bool { return mustLoad(t, g.DB, c.ID).State == engine.RunRunning })
	is.Equal(e.KeyHolders("default", "keyed", "c1"), []string{c.ID})
}
