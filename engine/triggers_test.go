package engine_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

func TestTriggers_SealsHMACSecretsAtRest(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"), store.Options{})
	is.NoErr(err)
	defer db.Close()
	eng, err := engine.New(engine.Config{Store: db})
	is.NoErr(err)
	_, _, err = eng.RegisterDefinition(ctx, "default", []byte(`{"name":"w","tasks":[{"id":"a","type":"noop"}]}`))
	is.NoErr(err)
	sealer, err := engine.NewSealer(bytes.Repeat([]byte{7}, 32))
	is.NoErr(err)
	ts := &engine.Triggers{Store: db, Engine: eng, Sealer: sealer}
	req := engine.TriggerRequest{TenantID: "default", Name: "gh", Kind: engine.TriggerWebhook, Workflow: "w",
		Config: engine.TriggerConfig{Webhook: &engine.WebhookConfig{Verify: engine.VerifyGitHub}}}
	_, secret, err := ts.Create(ctx, engine.LocalAdmin(), req)
	is.NoErr(err)
	stored, err := db.GetTrigger(ctx, "default", "gh")
	is.NoErr(err)
	is.True(strings.HasPrefix(stored.Secret, "sealed:v1:")) // sealed in the database
	is.True(!strings.Contains(stored.Secret, secret))       // the secret is not in it
	got, err := ts.Lookup(ctx, "default", "gh", engine.TriggerWebhook)
	is.NoErr(err)
	is.Equal(got.Secret, secret) // the receiver gets it opened

	other, err := engine.NewSealer(bytes.Repeat([]byte{8}, 32))
	is.NoErr(err)
	_, err = (&engine.Triggers{Store: db, Engine: eng, Sealer: other}).Lookup(ctx, "default", "gh", engine.TriggerWebhook)
	is.True(errors.Is(err, engine.ErrSealed)) // another key does not open it
	_, err = (&engine.Triggers{Store: db, Engine: eng}).Lookup(ctx, "default", "gh", engine.TriggerWebhook)
	is.True(errors.Is(err, engine.ErrSealed)) // nor no key
	_, err = sealer.Open(stored.Secret, "default/other")
	is.True(errors.Is(err, engine.ErrSealed)) // a sealed value is bound to its trigger

	req.Name, req.Config.Webhook = "b", &engine.WebhookConfig{Verify: engine.VerifyBearer}
	_, secret, err = ts.Create(ctx, engine.LocalAdmin(), req)
	is.NoErr(err)
	stored, err = db.GetTrigger(ctx, "default", "b")
	is.NoErr(err)
	is.Equal(stored.Secret, engine.HashSecret(secret)) // a bearer secret is only hashed
}

// TestTriggers_RepeatDedupsPastTheDedupWindow: a delivery repeated more
// than WebhookDedupWindow later still returns the first run, and a
// trigger made again under the same name dedups nothing of the old one.
func TestTriggers_RepeatDedupsPastTheDedupWindow(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "d.db"), store.Options{})
	is.NoErr(err)
	defer db.Close()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	eng, err := engine.New(engine.Config{Store: db, NowFunc: clock})
	is.NoErr(err)
	is.NoErr(eng.Start(ctx))
	defer eng.Stop(ctx)
	_, _, err = eng.RegisterDefinition(ctx, "default", []byte(`{"name":"w","tasks":[{"id":"a","type":"noop"}]}`))
	is.NoErr(err)
	ts := &engine.Triggers{Store: db, Engine: eng, NowFunc: clock}
	req := engine.TriggerRequest{TenantID: "default", Name: "gh", Kind: engine.TriggerWebhook, Workflow: "w",
		Config: engine.TriggerConfig{Webhook: &engine.WebhookConfig{Verify: engine.VerifyGitHub, DeliveryHeader: "X-Id"}}}
	tr, _, err := ts.Create(ctx, engine.LocalAdmin(), req)
	is.NoErr(err)
	msg := &engine.TriggerMessage{Body: []byte(`{}`), Ref: "d-1"}
	first, replayed, err := ts.Fire(ctx, tr, msg)
	is.NoErr(err)
	is.True(!replayed)
	mu.Lock()
	now = now.Add(engine.WebhookDedupWindow + time.Hour)
	mu.Unlock()
	again, replayed, err := ts.Fire(ctx, tr, msg)
	is.NoErr(err)
	is.True(replayed)            // a repeat 25 hours later
	is.Equal(again.ID, first.ID) // is the first run

	is.NoErr(ts.Delete(ctx, engine.LocalAdmin(), "default", "gh"))
	tr2, _, err := ts.Create(ctx, engine.LocalAdmin(), req)
	is.NoErr(err)
	is.True(tr2.ID != tr.ID) // a new id
	fresh, replayed, err := ts.Fire(ctx, tr2, msg)
	is.NoErr(err)
	is.True(!replayed && fresh.ID != first.ID) // the same delivery id starts a run of the new webhook
}
