package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

func aliasEntry(action engine.AdminAction, at time.Time) *engine.AdminEvent {
	return &engine.AdminEvent{At: at, Actor: "test", TenantID: "t1", Action: action}
}

func TestStore_AliasCompareAndSet(t *testing.T) {
	is := is.New(t)
	db := openTestStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	a := &engine.Alias{TenantID: "t1", Name: "wf", Alias: "live", Versions: []engine.AliasTarget{{Version: 1, Weight: 100}},
		Revision: 1, CreatedAt: now, UpdatedAt: now, UpdatedBy: "test"}
	is.NoErr(db.PutAlias(ctx, a, 0, aliasEntry(engine.AdminAliasSet, now)))                               // created
	is.True(errors.Is(db.PutAlias(ctx, a, 0, aliasEntry(engine.AdminAliasSet, now)), engine.ErrConflict)) // exists already

	b := *a
	b.Versions = []engine.AliasTarget{{Version: 1, Weight: 60}, {Version: 2, Weight: 40}}
	b.Revision, b.StickyKey = 2, "${workflow.input.k}"
	is.True(errors.Is(db.PutAlias(ctx, &b, 5, aliasEntry(engine.AdminAliasSet, now)), engine.ErrConflict)) // a stale revision
	is.NoErr(db.PutAlias(ctx, &b, 1, aliasEntry(engine.AdminAliasSet, now)))                               // moved
	got, err := db.GetAlias(ctx, "t1", "wf", "live")
	is.NoErr(err)
	is.Equal(got.Versions, b.Versions) // read back
	is.Equal(got.Revision, int64(2))
	is.Equal(got.StickyKey, "${workflow.input.k}")
	_, err = db.GetAlias(ctx, "t2", "wf", "live")
	is.True(errors.Is(err, engine.ErrAliasNotFound)) // another tenant's is not found

	missing := *a
	missing.Alias = "gone"
	is.True(errors.Is(db.PutAlias(ctx, &missing, 1, aliasEntry(engine.AdminAliasSet, now)), engine.ErrAliasNotFound)) // nothing to move

	is.True(errors.Is(db.DeleteAlias(ctx, "t1", "wf", "live", 1, aliasEntry(engine.AdminAliasDeleted, now)), engine.ErrConflict)) // a stale revision
	is.NoErr(db.DeleteAlias(ctx, "t1", "wf", "live", 2, aliasEntry(engine.AdminAliasDeleted, now)))
	is.True(errors.Is(db.DeleteAlias(ctx, "t1", "wf", "live", 0, aliasEntry(engine.AdminAliasDeleted, now)), engine.ErrAliasNotFound))
	list, err := db.ListAliases(ctx, "t1", "wf")
	is.NoErr(err)
	is.Equal(len(list), 0) // deleted

	// Every write that succeeded is in the admin log, the refused ones not.
	log, err := db.ListAdmin(ctx, engine.AdminFilter{TenantID: "t1"})
	is.NoErr(err)
	is.Equal(len(log), 3) // set, moved, deleted
}
