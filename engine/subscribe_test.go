package engine_test

import (
	"context"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

func TestSubscribe_TellsEachDurableCommitOfTheRun(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true}, nil)
	register(t, e, `{"name":"x","tasks":[{"id":"a","type":"ext"}]}`)
	run := start(t, e, "x")
	sub := e.Subscribe(tenant, run.ID, 0)
	defer sub.Close()
	other := e.Subscribe("other", run.ID, 0) // the same run id in another tenant
	defer other.Close()

	_, err := e.Pause(context.Background(), tenant, run.ID, engine.Caller{})
	is.NoErr(err) // pause
	c := recv(t, sub.C(), "the pause")
	is.Equal(c.State, engine.RunPaused)      // the state after the commit
	is.Equal(c.PrevState, engine.RunRunning) // and before
	is.True(c.Moved())                       // a state change
	stored, err := db.GetRunRow(context.Background(), tenant, run.ID)
	is.NoErr(err)
	is.Equal(c.LastSeq, stored.LastSeq) // durable when told: the store has it
	is.Equal(len(other.C()), 0)         // another tenant hears nothing
}

func TestSubscribe_SlowSubscriberNeverBlocksCommits(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e := startEngine(t, db, nil)
	register(t, e, `{"name":"n","tasks":[{"id":"a","type":"noop"},{"id":"b","type":"noop","depends_on":["a"]}]}`)
	slow := e.Subscribe(tenant, "", 1) // room for one change, and nobody reads it
	defer slow.Close()

	var ids []string
	for range 20 {
		ids = append(ids, start(t, e, "n").ID)
	}
	for _, id := range ids {
		run, err := e.Wait(context.Background(), tenant, id)
		is.NoErr(err)                            // every run ends
		is.Equal(run.State, engine.RunCompleted) // completed, the subscriber's buffer full all along
	}
	is.Equal(len(slow.C()), 1) // it kept the one change it had room for
	is.True(slow.Lagged())     // and knows it missed the rest
	is.True(!slow.Lagged())    // Lagged clears
	verify(t, db, ids...)
}

func TestSubscribe_CloseIsIdempotentAndStopsDelivery(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{ExternalTypes: true}, nil)
	register(t, e, `{"name":"x","tasks":[{"id":"a","type":"ext"}]}`)
	run := start(t, e, "x")
	sub := e.Subscribe(tenant, "", 4)
	sub.Close()
	sub.Close() // twice is fine
	is.Equal(e.Waiters(run.ID), 0)
	_, err := e.Pause(context.Background(), tenant, run.ID, engine.Caller{})
	is.NoErr(err)
	is.Equal(len(sub.C()), 0) // a closed subscription hears nothing
}
