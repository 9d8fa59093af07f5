package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

// quotaEnv caps the default tenant at two active runs and queues the rest.
var quotaEnv = []string{"TENANT_MAX_ACTIVE_RUNS=2", "TENANT_ON_ACTIVE_LIMIT=queue"}

// Runs of these definitions wait for an external worker nobody runs, so
// they stay active until cancelled.
const (
	heldE2EDef  = `{"name":"held","tasks":[{"id":"x","type":"remote"}]}`
	keyedE2EDef = `{"name":"keyed","concurrency":{"key":"${workflow.input.customer}","strategy":"%s"},"tasks":[{"id":"x","type":"remote"}]}`
)

// startE2E starts a run at url and returns its id and state.
func startE2E(t *testing.T, client *http.Client, url, body string) (id, state string) {
	t.Helper()
	var run struct{ ID, State string }
	if code := apiCall(t, client, url, body, &run); code != http.StatusCreated {
		t.Fatalf("start %s: %d", body, code)
	}
	return run.ID, run.State
}

// statesOf returns the state of each run, through the tenant API.
func statesOf(t *testing.T, client *http.Client, c *child, tenant string, ids ...string) []string {
	t.Helper()
	var out []string
	for _, id := range ids {
		resp, err := client.Get(c.url("/api/v1/tenants/" + tenant + "/workflows/" + id))
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ State string }
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		out = append(out, v.State)
	}
	return out
}

func cancelE2E(t *testing.T, client *http.Client, c *child, tenant, id string) {
	t.Helper()
	if code := apiCall(t, client, c.url("/api/v1/tenants/"+tenant+"/workflows/"+id+"/cancel"), "", nil); code != http.StatusOK {
		t.Fatalf("cancel %s: %d", id, code)
	}
}

// startedReason is the reason of a run's run.started event.
func startedReason(t *testing.T, dbPath, tenant, id string) string {
	t.Helper()
	for _, ev := range tenantRunEvents(t, dbPath, tenant, id) {
		if ev.Type == engine.EventRunStarted {
			var d engine.EventData
			json.Unmarshal(ev.Data, &d)
			return d.Reason
		}
	}
	return ""
}

// tenantRunEvents reads a run's events from the database file, checking
// that its log verifies.
func tenantRunEvents(t *testing.T, dbPath, tenant, id string) []engine.Event {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ev, err := db.RunEvents(ctx, tenant, id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.VerifyRun(ctx, db, tenant, id); err != nil {
		t.Fatalf("verify %s: %v", id, err)
	}
	return ev
}

// TestQuotas_LinesAndCountsSurviveKill9 fills the default tenant's two
// active slots and a concurrency key's one, lines runs up behind them,
// SIGKILLs the server twice, and checks that each restart holds the same
// counts (a new start still waits) and starts the waiting runs in the order
// they were created as slots free.
func TestQuotas_LinesAndCountsSurviveKill9(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dbPath := t.TempDir() + "/q.db"
	client := newClient()
	c := startChild(t, dbPath, quotaEnv...)
	defer func() { c.kill(t) }()
	for _, def := range []string{heldE2EDef, strings.Replace(keyedE2EDef, "%s", "queue", 1)} {
		if code := apiCall(t, client, c.url("/v1/workflows"), def, nil); code != http.StatusCreated {
			t.Fatalf("register: %d", code)
		}
	}
	run := c.url("/v1/run")
	a, sa := startE2E(t, client, run, `{"workflow":"keyed","input":{"customer":"c1"}}`)
	b, sb := startE2E(t, client, run, `{"workflow":"keyed","input":{"customer":"c1"}}`) // waits for c1
	cc, sc := startE2E(t, client, run, `{"workflow":"held"}`)                           // the second slot
	d, sd := startE2E(t, client, run, `{"workflow":"held"}`)                            // waits for the tenant
	e, se := startE2E(t, client, run, `{"workflow":"keyed","input":{"customer":"c2"}}`) // waits for the tenant
	is.Equal([]string{sa, sb, sc, sd, se}, []string{"running", "pending", "running", "pending", "pending"})

	c.kill(t)
	c = startChild(t, dbPath, quotaEnv...)
	run = c.url("/v1/run")
	is.Equal(statesOf(t, client, c, "default", a, b, cc, d, e), []string{"running", "pending", "running", "pending", "pending"})
	f, sf := startE2E(t, client, run, `{"workflow":"held"}`)
	is.Equal(sf, "pending") // the two active runs are still counted
	cancelE2E(t, client, c, "default", cc)
	waitRunState(t, client, c, d, "running") // d was first in line
	is.Equal(statesOf(t, client, c, "default", b, e, f), []string{"pending", "pending", "pending"})

	c.kill(t)
	c = startChild(t, dbPath, quotaEnv...)
	is.Equal(statesOf(t, client, c, "default", a, b, d, e, f), []string{"running", "pending", "running", "pending", "pending"})
	cancelE2E(t, client, c, "default", a) // frees c1 and a tenant slot: b is older than e and f
	waitRunState(t, client, c, b, "running")
	is.Equal(statesOf(t, client, c, "default", e, f), []string{"pending", "pending"})
	cancelE2E(t, client, c, "default", d)
	waitRunState(t, client, c, e, "running")
	is.Equal(statesOf(t, client, c, "default", f), []string{"pending"})

	is.Equal(startedReason(t, dbPath, "default", d), "tenant_active_runs: slot freed by "+cc)
	is.Equal(startedReason(t, dbPath, "default", b), "concurrency_key:c1: slot freed by "+a) // it waited for its key
	is.Equal(startedReason(t, dbPath, "default", e), "tenant_active_runs: slot freed by "+d)
}

// TestQuotas_ConcurrencyStrategiesSurviveKill9 keeps a run of a
// cancel_in_progress key and one of a cancel_newest key active across a
// SIGKILL: after the restart a new run of the first supersedes it, and one
// of the second is refused.
func TestQuotas_ConcurrencyStrategiesSurviveKill9(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dbPath := t.TempDir() + "/k.db"
	client := newClient()
	c := startChild(t, dbPath)
	defer func() { c.kill(t) }()
	for _, tn := range []string{"newest", "progress"} {
		if code := apiCall(t, client, c.url("/api/v1/tenants"), `{"id":"`+tn+`"}`, nil); code != http.StatusCreated {
			t.Fatalf("create tenant: %d", code)
		}
	}
	register := func(tenant, strategy string) {
		def := strings.Replace(keyedE2EDef, "%s", strategy, 1)
		if code := apiCall(t, client, c.url("/api/v1/tenants/"+tenant+"/definitions"), def, nil); code != http.StatusCreated {
			t.Fatalf("register: %d", code)
		}
	}
	register("progress", "cancel_in_progress")
	register("newest", "cancel_newest")
	progress, newest := c.url("/api/v1/tenants/progress/workflows"), c.url("/api/v1/tenants/newest/workflows")
	p1, _ := startE2E(t, client, progress, `{"workflow":"keyed","input":{"customer":"c1"}}`)
	n1, _ := startE2E(t, client, newest, `{"workflow":"keyed","input":{"customer":"c1"}}`)

	c.kill(t)
	c = startChild(t, dbPath)
	progress, newest = c.url("/api/v1/tenants/progress/workflows"), c.url("/api/v1/tenants/newest/workflows")
	p2, s := startE2E(t, client, progress, `{"workflow":"keyed","input":{"customer":"c1"}}`)
	is.Equal(s, "running")
	is.Equal(statesOf(t, client, c, "progress", p1), []string{"cancelled"}) // superseded
	var cancelled engine.EventData
	for _, ev := range tenantRunEvents(t, dbPath, "progress", p1) {
		if ev.Type == engine.EventRunCancelled {
			is.Equal(ev.Actor, engine.ActorEngine)
			json.Unmarshal(ev.Data, &cancelled)
		}
	}
	is.Equal(cancelled.Reason, "concurrency_key: superseded by "+p2)

	var p struct{ Code, Key string }
	is.Equal(apiCall(t, client, newest, `{"workflow":"keyed","input":{"customer":"c1"}}`, &p), http.StatusConflict)
	is.Equal(p.Code, "concurrency_limited") // the key is still held by n1
	is.Equal(p.Key, "c1")
	is.Equal(statesOf(t, client, c, "newest", n1), []string{"running"})
}
