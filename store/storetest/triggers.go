package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

func testTriggers(t *testing.T, open func(t *testing.T) engine.Store) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	newTrigger := func(name string) *engine.Trigger {
		return &engine.Trigger{ID: "id-" + name, TenantID: engine.DefaultTenantID, Name: name, Kind: engine.TriggerWebhook,
			Workflow: "wf@2", Config: engine.TriggerConfig{Input: json.RawMessage(`{"a":"${/body/a}"}`),
				Webhook: &engine.WebhookConfig{Verify: engine.VerifyGitHub, DeliveryHeader: "X-GitHub-Delivery"}},
			Secret: "0123456789abcdef", State: engine.TriggerEnabled, Version: 1, CreatedAt: at, UpdatedAt: at}
	}
	entry := func(action engine.AdminAction) *engine.AdminEvent {
		return &engine.AdminEvent{At: at, Actor: "test", TenantID: engine.DefaultTenantID, Action: action}
	}
	triggers := func(t *testing.T) (engine.TriggerStore, engine.AccessStore) {
		s := open(t)
		ts, ok := s.(engine.TriggerStore)
		if !ok {
			t.Fatalf("%T does not implement engine.TriggerStore", s)
		}
		as, ok := s.(engine.AccessStore)
		if !ok {
			t.Fatalf("%T does not implement engine.AccessStore", s)
		}
		return ts, as
	}

	t.Run("a trigger is stored with its secret, its change audited in the same write", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s, as := triggers(t)
		tr := newTrigger("gh")
		ev := entry(engine.AdminTriggerCreated)
		is.NoErr(s.CreateTrigger(t.Context(), tr, ev)) // create
		is.True(ev.ID > 0 && ev.Hash != "")            // the entry is numbered and chained
		got, err := s.GetTrigger(t.Context(), engine.DefaultTenantID, "gh")
		is.NoErr(err)     // get
		is.Equal(got, tr) // every field, the secret included, comes back
		err = s.CreateTrigger(t.Context(), newTrigger("gh"), entry(engine.AdminTriggerCreated))
		is.True(errors.Is(err, engine.ErrConflict)) // the name is taken
		log, err := as.ListAdmin(t.Context(), engine.AdminFilter{TenantID: engine.DefaultTenantID})
		is.NoErr(err)
		is.Equal(len(log), 1) // the refused create wrote no entry

		other := newTrigger("x")
		other.TenantID = "nobody"
		err = s.CreateTrigger(t.Context(), other, entry(engine.AdminTriggerCreated))
		is.True(errors.Is(err, engine.ErrTenantNotFound)) // an unregistered tenant
		_, err = s.GetTrigger(t.Context(), "nobody", "gh")
		is.True(errors.Is(err, engine.ErrNotFound)) // another tenant's name is not found
	})

	t.Run("update is a compare-and-set on the version, delete removes", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s, as := triggers(t)
		is.NoErr(s.CreateTrigger(t.Context(), newTrigger("b"), entry(engine.AdminTriggerCreated)))
		is.NoErr(s.CreateTrigger(t.Context(), newTrigger("a"), entry(engine.AdminTriggerCreated)))
		tr := newTrigger("b")
		tr.Workflow, tr.State, tr.Secret = "other", engine.TriggerDisabled, "fedcba9876543210"
		tr.UpdatedAt = at.Add(time.Second)
		is.NoErr(s.UpdateTrigger(t.Context(), tr, entry(engine.AdminTriggerUpdated))) // version 1 -> 2
		got, err := s.GetTrigger(t.Context(), engine.DefaultTenantID, "b")
		is.NoErr(err)
		is.Equal(got.Version, int64(2))             // the version moved
		is.Equal(got.Workflow, "other")             // and the fields with it
		is.Equal(got.State, engine.TriggerDisabled) //
		is.Equal(got.Secret, "fedcba9876543210")    //
		is.Equal(got.UpdatedAt, tr.UpdatedAt)       //
		is.Equal(got.CreatedAt, at)                 // created stays
		err = s.UpdateTrigger(t.Context(), tr, entry(engine.AdminTriggerUpdated))
		is.True(errors.Is(err, engine.ErrConflict)) // version 1 is stale
		tr.Name = "none"
		err = s.UpdateTrigger(t.Context(), tr, entry(engine.AdminTriggerUpdated))
		is.True(errors.Is(err, engine.ErrNotFound)) // no such trigger

		list, err := s.ListTriggers(t.Context(), engine.DefaultTenantID)
		is.NoErr(err)
		is.Equal(len(list), 2)                    // both
		is.Equal(list[0].Name+list[1].Name, "ab") // by name
		all, err := s.ListTriggers(t.Context(), engine.AllTenants)
		is.NoErr(err)
		is.Equal(len(all), 2) // every tenant's

		is.NoErr(s.DeleteTrigger(t.Context(), engine.DefaultTenantID, "a", entry(engine.AdminTriggerDeleted)))
		_, err = s.GetTrigger(t.Context(), engine.DefaultTenantID, "a")
		is.True(errors.Is(err, engine.ErrNotFound)) // gone
		err = s.DeleteTrigger(t.Context(), engine.DefaultTenantID, "a", entry(engine.AdminTriggerDeleted))
		is.True(errors.Is(err, engine.ErrNotFound)) // twice is not found
		log, err := as.ListAdmin(t.Context(), engine.AdminFilter{TenantID: engine.DefaultTenantID})
		is.NoErr(err)
		is.Equal(len(log), 4) // two creates, one update, one delete; the refused ones wrote nothing
		n, err := as.VerifyAdminLog(t.Context())
		is.NoErr(err) // the log chains
		is.Equal(n, 4)
	})
}
