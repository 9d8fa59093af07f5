package web_test

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/orchestrator/orchestrator/engine"
)

// TestUI_ARefusedStreamSaysSoWithoutTheLoginForm: the key is revoked while
// the runs list is open; the stream, cut off, reconnects and is refused
// with 401. The page stays and says its updates stopped, and why; the next
// call the reader makes is refused too, and that one asks for a key.
func TestUI_ARefusedStreamSaysSoWithoutTheLoginForm(t *testing.T) {
	s := newUIServer(t, uiOptions{AuthRequired: true})
	ctx := context.Background()
	k, key, err := s.Admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleOperator, Name: "ui"})
	if err != nil {
		t.Fatal(err)
	}
	_, owner, err := s.Admin.CreateKey(ctx, engine.LocalAdmin(), engine.KeyRequest{TenantID: "default", Role: engine.RoleOwner, Name: "boss"})
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	b.open(t, s, "#/runs")
	b.do(t, "log in", chromedp.WaitVisible(chromedp.CSS(`#login-form input[name=key]`)),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name=key]`), key), click(`#login-form button`))
	b.waitJS(t, "the list, live", `document.getElementById('live') && document.getElementById('live').dataset.live === 'live'`)

	if _, err := s.Admin.RevokeKey(ctx, engine.LocalAdmin(), "default", k.ID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	s.srv.CloseClientConnections()
	b.waitJS(t, "the page says its updates stopped", `document.getElementById('live').dataset.live === 'stopped' && document.getElementById('live').textContent.includes('(401)')`)
	if hash := evalJS[string](t, b, `location.hash`); hash != "#/runs" || b.count(t, "#login-form") != 0 {
		t.Errorf("the refused stream took the page to %s (a login form: %d)", hash, b.count(t, "#login-form"))
	}

	b.do(t, "filter", chromedp.SendKeys(chromedp.CSS(`#run-filters input[name=workflow]`), "quick"), click(`#run-filters button`))
	b.waitJS(t, "the refused call asks for a key", `document.getElementById('login-form') && location.hash === '#/login'`)
	b.noErrors(t)
	s.Key = owner
	b.documented(t, s)
}
