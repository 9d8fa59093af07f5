package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api"
	"github.com/orchestrator/orchestrator/engine"
)

// envelope is room for a page's own fields around its items: the list's
// name, a page token or next_after, a run id.
const envelope = 256

// listPage is any page of a list: its items and how to ask for the next.
type listPage struct {
	Runs          []map[string]json.RawMessage `json:"runs"`
	Events        []engine.Event               `json:"events"`
	NextPageToken string                       `json:"next_page_token"`
	NextAfter     int64                        `json:"next_after"`
}

// walk reads every page of the list at path (which has a query), checking
// that each page stays under maxBytes unless it holds a single item, and
// returns the pages.
func (ts *testServer) walk(t *testing.T, path string, maxBytes int) []listPage {
	t.Helper()
	var pages []listPage
	next := path
	for len(pages) < 10000 {
		r := ts.get(t, next)
		var p listPage
		decodeJSON(t, r, http.StatusOK, &p)
		if n := len(p.Runs) + len(p.Events); n > 1 && len(r.Body) > maxBytes+envelope {
			t.Fatalf("GET %s: %d items in %d bytes, over the bound of %d", next, n, len(r.Body), maxBytes)
		}
		pages = append(pages, p)
		switch {
		case p.NextPageToken != "":
			next = path + "&page_token=" + url.QueryEscape(p.NextPageToken)
		case p.NextAfter != 0:
			next = fmt.Sprintf("%s&after=%d", path, p.NextAfter)
		default:
			return pages
		}
	}
	t.Fatalf("GET %s: no last page", path)
	return nil
}

// exportIDs streams every event of the tenant as NDJSON, which is not
// paged, and returns their ids in order.
func (ts *testServer) exportIDs(t *testing.T, tenant string) []int64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/tenants/"+tenant+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/x-ndjson")
	res, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	defer res.Body.Close()
	var ids []int64
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 4<<20), 4<<20)
	for sc.Scan() {
		var e engine.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line %q: %v", sc.Bytes(), err)
		}
		ids = append(ids, e.ID)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("export: %v", err)
	}
	return ids
}

func eventIDs(pages []listPage) []int64 {
	var ids []int64
	for _, p := range pages {
		for _, e := range p.Events {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// TestAPI_ListsAreBounded: lists of runs carry summaries without inputs and
// outputs, and every list page (runs, a run's events, a tenant's events)
// ends early once its encoded items pass the page's byte bound, with a
// token that continues without gaps or repeats.
func TestAPI_ListsAreBounded(t *testing.T) {
	t.Parallel()
	blob := strings.Repeat("x", 64<<10)
	handlers := map[string]engine.Handler{
		"blob": engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
			return json.RawMessage(`{"blob":"` + blob + `"}`), nil
		}),
	}

	t.Run("runs with large inputs are listed without them, under the bound", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		ts := newServer(t, serverOptions{Handlers: handlers})
		ts.register(t, `{"name":"big","tasks":[{"id":"t","type":"blob"}]}`)
		const n = 24 // 24 inputs and 24 outputs of 64 KiB: 3 MiB in all
		var ids []string
		for i := 0; i < n; i++ {
			ids = append(ids, ts.startRun(t, `{"workflow":"big","input":{"blob":"`+blob+`"}}`).ID)
		}
		for _, id := range ids {
			ts.waitState(t, id, engine.RunCompleted)
		}
		r := ts.get(t, "/api/v1/tenants/default/workflows?limit=1000")
		is.True(len(r.Body) < api.DefaultMaxPageBytes) // the list is small
		var page listPage
		decodeJSON(t, r, http.StatusOK, &page)
		is.Equal(len(page.Runs), n)      // every run is listed
		is.Equal(page.NextPageToken, "") // on one page
		for _, run := range page.Runs {
			_, hasInput := run["input"]
			_, hasOutput := run["output"]
			is.True(!hasInput && !hasOutput) // a list item is a summary
			is.True(run["id"] != nil && run["state"] != nil && run["created_at"] != nil)
		}
		var full runJSON
		ts.getJSON(t, "/v1/runs/"+ids[0], &full)
		is.Equal(len(full.Input), len(`{"blob":""}`)+len(blob)) // the run's own endpoint has its input

		pages := ts.walk(t, "/api/v1/tenants/default/events?limit=1000", api.DefaultMaxPageBytes+64<<10)
		is.True(len(pages) > 1)                               // events carrying 3 MiB take several pages
		is.Equal(eventIDs(pages), ts.exportIDs(t, "default")) // which hold every event once, in order
	})

	t.Run("pages stop at the bound and continue without gaps or repeats", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		const bound = 4 << 10
		ts := newServer(t, serverOptions{MaxPageBytes: bound})
		var tasks []string
		for i := 0; i < 20; i++ {
			tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","type":"noop"}`, i))
		}
		ts.register(t, `{"name":"many","tasks":[`+strings.Join(tasks, ",")+`]}`)
		var ids []string
		for i := 0; i < 30; i++ {
			ids = append(ids, ts.startRun(t, `{"workflow":"many"}`).ID)
		}
		for _, id := range ids {
			ts.waitState(t, id, engine.RunCompleted)
		}

		pages := ts.walk(t, "/api/v1/tenants/default/workflows?limit=1000", bound)
		is.True(len(pages) > 1) // 30 runs do not fit in 4 KiB
		var listed []string
		for _, p := range pages {
			for _, run := range p.Runs {
				var id string
				is.NoErr(json.Unmarshal(run["id"], &id))
				listed = append(listed, id)
			}
		}
		want := make([]string, len(ids))
		for i, id := range ids {
			want[len(ids)-1-i] = id // newest first
		}
		is.Equal(listed, want) // every run once, in order

		run := ts.waitState(t, ids[0], engine.RunCompleted)
		pages = ts.walk(t, "/v1/runs/"+ids[0]+"/events?limit=1000", bound)
		is.True(len(pages) > 1) // 60-odd events do not fit in 4 KiB
		var seqs []int64
		for _, p := range pages {
			for _, e := range p.Events {
				seqs = append(seqs, e.Seq)
			}
		}
		is.Equal(int64(len(seqs)), run.LastSeq) // every event of the run
		for i, s := range seqs {
			is.Equal(s, int64(i+1)) // once, in seq order
		}

		pages = ts.walk(t, "/api/v1/tenants/default/events?limit=1000", bound)
		is.True(len(pages) > 1)
		is.Equal(eventIDs(pages), ts.exportIDs(t, "default")) // every event once, in log order
		for _, p := range pages[:len(pages)-1] {
			is.True(len(p.Events) < 1000) // the pages ended at the bound, not at the limit
		}
	})
}
