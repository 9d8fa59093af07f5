package engine_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

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
	is.Equal(stored.Secret, engine.HashBearer(secret)) // a bearer secret is only hashed
}
