package engine

import (
	"testing"
	"time"

	"github.com/matryer/is"
)

// facts are the waitFacts of a process with nothing polled and idle workers.
func facts(now time.Time) *waitFacts {
	return &waitFacts{now: now, stuckAfter: time.Hour, external: func(typ string) bool { return typ == "ext" },
		lastPoll: func(string) time.Time { return time.Time{} }}
}

func TestExplain_PendingRunIsQueued(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	h := newHistory(t, testPlan(t, `{"name":"q","tasks":[{"id":"a","type":"noop"}]}`))
	h.add(EventRunCreated, "", 0, &EventData{Workflow: "q", Version: 1})
	x := explain(h.view, facts(h.at))
	is.Equal(x.Run.Reason, WaitQueued)        // a pending run waits in the queue
	is.Equal(x.Waiting[0].Reason, WaitQueued) // and so do its tasks
	f := facts(h.at)
	f.queued = "the tenant runs its quota of 10 runs"
	is.Equal(explain(h.view, f).Run.Detail, f.queued) // the hook's reason, when one is known
}

func TestExplain_ReadyInProcessAndBecomingReady(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	h := newHistory(t, testPlan(t, `{"name":"r","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`))
	h.add(EventRunCreated, "", 0, &EventData{Workflow: "r", Version: 1})
	h.add(EventRunStarted, "", 0, nil)
	h.add(EventTaskReady, "a", 0, nil)
	x := explain(h.view, facts(h.at))
	is.Equal(x.Waiting[0].Reason, WaitDispatching) // nothing holds a
	f := facts(h.at)
	f.poolBusy = true
	is.Equal(explain(h.view, f).Waiting[0].Reason, WaitPoolBusy) // unless every worker is busy
	h.add(EventTaskStarted, "a", 1, nil)
	h.add(EventTaskCompleted, "a", 1, nil)
	x = explain(h.view, facts(h.at))
	is.Equal(len(x.Waiting), 1)
	is.Equal(x.Waiting[0].Reason, WaitBecomingReady) // b's dependencies completed, task.ready not yet recorded
	is.True(!x.stuck)                                // on its way
}

func TestExplain_StalledNeedsIdleTimeAndNothingMoving(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	h := newHistory(t, testPlan(t, `{"name":"s","tasks":[{"id":"a","type":"ext"}]}`))
	h.add(EventRunCreated, "", 0, &EventData{Workflow: "s", Version: 1})
	h.add(EventRunStarted, "", 0, nil)
	h.add(EventTaskReady, "a", 0, nil)
	is.True(!explain(h.view, facts(h.at)).Stalled)               // not idle long enough
	is.True(explain(h.view, facts(h.at.Add(time.Hour))).Stalled) // idle for STUCK_AFTER, no worker ever polled
	f := facts(h.at.Add(time.Hour))
	f.lastPoll = func(string) time.Time { return h.at.Add(59 * time.Minute) }
	is.True(!explain(h.view, f).Stalled) // a worker polled the type within STUCK_AFTER
	f.stuckAfter = 0
	f.lastPoll = func(string) time.Time { return time.Time{} }
	is.True(!explain(h.view, f).Stalled) // detection off
}

func TestNotePoll_Bounded(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	e := &Engine{polls: map[string]map[string]time.Time{}, now: func() time.Time { return now }}
	for i := range maxPollMarks + 10 {
		e.notePoll("t", []string{"type" + time.Duration(i).String()})
	}
	is.Equal(e.npolls, maxPollMarks) // made-up type names cannot grow the map past its bound
	now = now.Add(2 * time.Hour)
	e.notePoll("t", []string{"fresh"})
	is.Equal(e.npolls, 1)                // polls long past make room
	is.Equal(e.polls["t"]["fresh"], now) // for the new one
	e.notePoll("t", []string{"fresh"})
	is.Equal(e.npolls, 1) // a type polled again counts once
}
