package engine_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// clock is a time the test moves by hand.
type clock struct {
	mu sync.Mutex // protects t
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// accessFixture is a store with the tenant acme, an Admin and a Keys on it.
type accessFixture struct {
	db    *store.DB
	clock *clock
	keys  *engine.Keys
	admin *engine.Admin
}

func newAccessFixture(t *testing.T, ttl time.Duration) *accessFixture {
	t.Helper()
	db := openTestStore(t)
	c := newClock()
	keys, err := engine.NewKeys(engine.KeysConfig{Store: db, CacheTTL: ttl, NowFunc: c.Now})
	if err != nil {
		t.Fatalf("new keys: %v", err)
	}
	t.Cleanup(func() { keys.Stop() })
	f := &accessFixture{db: db, clock: c, keys: keys, admin: &engine.Admin{Store: db, Keys: keys, NowFunc: c.Now}}
	if _, err := f.admin.CreateTenant(context.Background(), engine.LocalAdmin(), "acme", "Acme", engine.TenantSettings{}); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	return f
}

// key creates a key as the local admin and returns it with its token.
func (f *accessFixture) key(t *testing.T, r engine.KeyRequest) (*engine.APIKey, string) {
	t.Helper()
	k, token, err := f.admin.CreateKey(context.Background(), engine.LocalAdmin(), r)
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	return k, token
}

func TestKeys_Authenticate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a key names its principal", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		k, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleWorker, Name: "py", TaskTypes: []string{"python"}})
		p, err := f.keys.Authenticate(ctx, token)
		is.NoErr(err)                             // authenticated
		is.Equal(p.KeyID, k.ID)                   // the key
		is.Equal(p.Name, "py")                    // its name
		is.Equal(p.TenantID, "acme")              // its tenant
		is.Equal(p.Role, engine.RoleWorker)       // its role
		is.Equal(p.TaskTypes, []string{"python"}) // its task types
		is.Equal(p.Actor(), "key:"+k.ID+":py")    // recorded by id and name

		_, rootToken := f.key(t, engine.KeyRequest{Role: engine.RoleAdmin, Name: "root"})
		p, err = f.keys.Authenticate(ctx, rootToken)
		is.NoErr(err)                      // an admin key authenticates
		is.Equal(p.Role, engine.RoleAdmin) // as the admin
		is.Equal(p.TenantID, "")           // of no tenant
	})

	t.Run("bad tokens are told apart only as far as is safe", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		k, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "v"})
		_, err := f.keys.Authenticate(ctx, "Bearer "+token)
		is.True(errors.Is(err, engine.ErrMalformedKey)) // not a key
		wrong := token[:len(token)-1] + "0"
		if wrong == token {
			wrong = token[:len(token)-1] + "1"
		}
		_, err = f.keys.Authenticate(ctx, wrong)
		is.True(errors.Is(err, engine.ErrInvalidKey)) // a wrong secret
		_, err = f.keys.Authenticate(ctx, "orch_0000000000000000_"+token[len("orch_")+len(k.ID)+1:])
		is.True(errors.Is(err, engine.ErrInvalidKey)) // an unknown id: the same error
		for _, e := range []error{engine.ErrMalformedKey, engine.ErrInvalidKey, engine.ErrKeyRevoked, engine.ErrKeyExpired} {
			is.True(errors.Is(e, engine.ErrUnauthenticated)) // each is a 401
		}
	})

	t.Run("a revocation through the Admin holds at once", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, engine.MaxKeyCacheTTL)
		k, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOperator, Name: "ci"})
		_, err := f.keys.Authenticate(ctx, token)
		is.NoErr(err) // valid, and now cached
		_, err = f.admin.RevokeKey(ctx, engine.LocalAdmin(), "acme", k.ID)
		is.NoErr(err) // revoke
		_, err = f.keys.Authenticate(ctx, token)
		is.True(errors.Is(err, engine.ErrKeyRevoked)) // refused at once, without waiting for the cache
	})

	t.Run("a revocation by another process holds within the cache time", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, time.Second)
		k, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOperator, Name: "ci"})
		_, err := f.keys.Authenticate(ctx, token)
		is.NoErr(err)                                             // valid, and now cached
		other := &engine.Admin{Store: f.db, NowFunc: f.clock.Now} // knows nothing of f.keys
		_, err = other.RevokeKey(ctx, engine.LocalAdmin(), "acme", k.ID)
		is.NoErr(err) // revoked behind the cache's back
		f.clock.Add(time.Second)
		_, err = f.keys.Authenticate(ctx, token)
		is.True(errors.Is(err, engine.ErrKeyRevoked)) // refused once the cache time is over
	})

	t.Run("an expired key is refused", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		_, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "v", ExpiresAt: f.clock.Now().Add(time.Hour)})
		_, err := f.keys.Authenticate(ctx, token)
		is.NoErr(err) // valid before
		f.clock.Add(time.Hour)
		_, err = f.keys.Authenticate(ctx, token)
		is.True(errors.Is(err, engine.ErrKeyExpired)) // expired at its time
	})

	t.Run("a suspended tenant's keys are refused until it is resumed", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, engine.MaxKeyCacheTTL)
		_, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleOwner, Name: "boss"})
		_, err := f.keys.Authenticate(ctx, token)
		is.NoErr(err) // valid, tenant cached active
		_, err = f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "acme", engine.TenantChange{State: engine.TenantSuspended})
		is.NoErr(err) // suspend
		_, err = f.keys.Authenticate(ctx, token)
		is.True(errors.Is(err, engine.ErrTenantSuspended)) // refused at once
		is.True(errors.Is(err, engine.ErrForbidden))       // as a 403, not a 401
		_, err = f.keys.CheckTenant(ctx, "acme")
		is.True(errors.Is(err, engine.ErrTenantSuspended)) // the tenant check says so too
		_, err = f.admin.UpdateTenant(ctx, engine.LocalAdmin(), "acme", engine.TenantChange{State: engine.TenantActive})
		is.NoErr(err) // resume
		_, err = f.keys.Authenticate(ctx, token)
		is.NoErr(err) // served again
		_, err = f.keys.CheckTenant(ctx, "ghost")
		is.True(errors.Is(err, engine.ErrTenantNotFound)) // an unknown tenant
	})
}

func TestKeys_LastUsed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("uses are written in one batch, not per call", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		k, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "v"})
		for range 50 {
			f.clock.Add(time.Millisecond)
			_, err := f.keys.Authenticate(ctx, token)
			is.NoErr(err) // authenticate
		}
		stored, err := f.db.GetKey(ctx, k.ID)
		is.NoErr(err)                       // read the key
		is.True(stored.LastUsedAt.IsZero()) // nothing written per call
		pending := f.keys.Pending()
		is.Equal(len(pending), 1)              // one entry for the key
		is.Equal(pending[k.ID], f.clock.Now()) // with its last use
		is.NoErr(f.keys.Flush(ctx))            // flush
		stored, err = f.db.GetKey(ctx, k.ID)
		is.NoErr(err)                              // read again
		is.Equal(stored.LastUsedAt, f.clock.Now()) // the last use written
		is.Equal(len(f.keys.Pending()), 0)         // nothing left
		is.NoErr(f.keys.Flush(ctx))                // a flush with nothing is fine
	})

	t.Run("Stop writes what is left, and is idempotent and safe before Start", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		k, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "v"})
		_, err := f.keys.Authenticate(ctx, token)
		is.NoErr(err)           // one use
		is.NoErr(f.keys.Stop()) // before any Start
		is.NoErr(f.keys.Stop()) // twice
		f.keys.Start(ctx)       // after Stop: does nothing
		stored, err := f.db.GetKey(ctx, k.ID)
		is.NoErr(err)                              // read
		is.Equal(stored.LastUsedAt, f.clock.Now()) // Stop wrote the use
	})

	t.Run("a failed flush keeps the uses for the next", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		f := newAccessFixture(t, 0)
		k, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "v"})
		_, err := f.keys.Authenticate(ctx, token)
		is.NoErr(err)                                   // one use
		is.NoErr(f.db.Close())                          // the store goes away
		is.True(f.keys.Flush(ctx) != nil)               // the flush fails
		is.Equal(f.keys.Pending()[k.ID], f.clock.Now()) // and keeps the use
	})

	t.Run("Start runs the loop until Stop", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		db := openTestStore(t)
		keys, err := engine.NewKeys(engine.KeysConfig{Store: db, FlushInterval: time.Millisecond})
		is.NoErr(err) // new
		admin := &engine.Admin{Store: db, Keys: keys}
		k, token, err := admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleViewer, Name: "v"})
		is.NoErr(err) // key
		keys.Start(ctx)
		keys.Start(ctx) // twice is fine
		_, err = keys.Authenticate(ctx, token)
		is.NoErr(err) // one use
		deadline := time.Now().Add(20 * time.Second)
		for {
			stored, err := db.GetKey(ctx, k.ID)
			is.NoErr(err) // read
			if !stored.LastUsedAt.IsZero() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the loop did not write the use")
			}
			time.Sleep(time.Millisecond) // poll the condition
		}
		is.NoErr(keys.Stop()) // stop
	})
}

func TestKeys_RunOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	f := newAccessFixture(t, time.Second)
	k, token := f.key(t, engine.KeyRequest{TenantID: "acme", Role: engine.RoleViewer, Name: "v"})
	_, err := f.keys.Authenticate(ctx, token)
	is.NoErr(err) // one use
	keys, tenants := f.keys.Cached()
	is.Equal([]int{keys, tenants}, []int{1, 1}) // the key and its tenant cached
	f.keys.RunOnce(ctx)
	keys, tenants = f.keys.Cached()
	is.Equal([]int{keys, tenants}, []int{1, 1}) // still fresh: kept
	stored, err := f.db.GetKey(ctx, k.ID)
	is.NoErr(err)                              // read
	is.Equal(stored.LastUsedAt, f.clock.Now()) // the turn wrote the use
	f.clock.Add(time.Second)
	f.keys.RunOnce(ctx)
	keys, tenants = f.keys.Cached()
	is.Equal([]int{keys, tenants}, []int{0, 0}) // stale entries dropped: the cache does not grow without bound
}

func TestKeysConfig_Validate(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	db := openTestStore(t)
	_, err := engine.NewKeys(engine.KeysConfig{})
	is.True(err != nil) // no store
	_, err = engine.NewKeys(engine.KeysConfig{Store: db, CacheTTL: time.Minute})
	is.True(err != nil) // a cache time that would let revoked keys in for a minute
	_, err = engine.NewKeys(engine.KeysConfig{Store: db, FlushInterval: -time.Second})
	is.True(err != nil) // a negative interval
	_, err = engine.NewKeys(engine.KeysConfig{Store: db, CacheTTL: -1})
	is.NoErr(err) // no cache at all is fine
}
