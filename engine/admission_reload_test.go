package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// A run dropped from memory after a failed commit keeps its slots until it
// is loaded again: a start meanwhile is refused as if it were there, so the
// reloaded run does not make one more than the key allows.
func TestAdmission_ReloadingRunKeepsItsSlots(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := quotaEngine(t, db, engine.TenantQuotas{}, keyedDef("cancel_newest"), heldDef)
	a := mustStart(t, e, "keyed", `{"customer":"c1"}`)

	_, err := db.LimitPages(ctx, 1)
	is.NoErr(err)       // the database may grow no more
	for i := 0; ; i++ { // runs fill the pages it has left
		if _, err := startIn(t, e, "held", ""); errors.Is(err, engine.ErrStorageUnavailable) {
			break
		}
		is.True(i < 10_000) // the database fills
	}
	// Failed commits in a row lengthen every reload's wait (to 0.6-1.3 s
	// after eight): the window below is that long, not a race.
	for range 8 {
		_, err := startIn(t, e, "held", string(bigOutput))
		is.True(errors.Is(err, engine.ErrStorageUnavailable)) // no room for the run
	}
	// A pause recorded with a large event finds no room either.
	_, err = e.Pause(ctx, "default", a.ID, engine.Caller{Actor: "cli:" + strings.Repeat("x", 32<<10)})
	is.True(errors.Is(err, engine.ErrStorageUnavailable)) // the pause is not recorded: a is reloaded

	_, err = startIn(t, e, "keyed", `{"customer":"c1"}`)
	var ce *engine.ConcurrencyLimitedError
	is.True(errors.As(err, &ce)) // refused for the key a still holds, not let through to the full database
	is.Equal(ce.Key, "c1")

	_, err = db.LimitPages(ctx, 1<<30)
	is.NoErr(err) // room again
	waitFor(t, "a to be back", func() bool {
		_, err := startIn(t, e, "keyed", `{"customer":"c1"}`)
		return errors.As(err, &ce) && ce.Key == "c1" // still refused once a is back
	})
	is.Equal(mustLoad(t, db, a.ID).State, engine.RunRunning)
	b := mustStart(t, e, "keyed", `{"customer":"c2"}`) // another key is free
	is.Equal(b.State, engine.RunRunning)
}
