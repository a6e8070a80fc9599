package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/sfpush"
)

// Every refusal has one body whatever was wrong: no token, a wrong token, a
// wrong scheme, a tenant that exists or not.
func TestAPIRefusesWithoutTheAdminTokenAlike(t *testing.T) {
	r := newRig(t, nil)
	cases := []struct{ path, token string }{
		{"/tenants", ""},
		{"/tenants", "fake-wrong-admin-token"},
		{"/tenants/acme", "fake-wrong-admin-token"},
		{"/tenants/nobody", "fake-wrong-admin-token"},
		{"/tenants/acme", testAdminToken + "x"},
		{"/tenants/acme", testAdminToken[:len(testAdminToken)-1]},
	}
	for _, c := range cases {
		code, body := r.api(http.MethodGet, c.path, c.token, nil)
		if code != http.StatusUnauthorized || string(body) != "{\"error\":\"unauthorized\"}\n" {
			t.Errorf("GET %s with %q: %d %s", c.path, c.token, code, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, r.base+APIPrefix+"/tenants/acme/disconnect", nil)
	req.Header.Set("Authorization", "Basic "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("basic scheme: %d", resp.StatusCode)
	}
	// Either configured token works; an unknown tenant is then a 404.
	for _, tok := range r.cfg.Admin.Tokens {
		if code, body := r.api(http.MethodGet, "/tenants", tok, nil); code != http.StatusOK {
			t.Errorf("token %d: %d %s", len(tok), code, body)
		}
	}
	if code, body := r.api(http.MethodGet, "/tenants/nobody", testAdminToken, nil); code != http.StatusNotFound ||
		!strings.Contains(string(body), `"error":"tenant nobody: not configured"`) {
		t.Errorf("unknown tenant: %d %s", code, body)
	}
}

func TestAPIAnswers429AfterRepeatedFailures(t *testing.T) {
	r := newRig(t, nil)
	for i := range 10 {
		if code, _ := r.api(http.MethodGet, "/tenants", "fake-guess-"+string(rune('a'+i)), nil); code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, code)
		}
	}
	code, body := r.api(http.MethodGet, "/tenants", testAdminToken, nil)
	if code != http.StatusTooManyRequests || !strings.Contains(string(body), "too many failed attempts") {
		t.Fatalf("after 10 failures: %d %s", code, body)
	}
	// The connect links of the same address are refused too.
	resp, _ := get(t, noFollow(), r.base+startPath+"?tenant=acme&ticket=x")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("start while blocked: %d", resp.StatusCode)
	}
}

func TestTokensImportThenStatusThenDisconnectRevokes(t *testing.T) {
	r := newRig(t, nil)
	_, refresh := r.sf.IssueTokens("api refresh_token")

	code, body := r.api(http.MethodPost, "/tenants/acme/tokens", testAdminToken, TokensRequest{RefreshToken: refresh, InstanceURL: r.sf.URL()})
	if code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}
	if strings.Contains(string(body), refresh) {
		t.Fatal("the import answer echoed the refresh token")
	}
	var imp TokensAnswer
	_ = json.Unmarshal(body, &imp)
	if !imp.Verified || imp.Tenant.State != auth.StateConnected || imp.Tenant.Grant.LastRefresh == nil || imp.Tenant.Grant.InstanceURL != r.sf.URL() {
		t.Fatalf("import answer: %s", body)
	}

	code, body = r.api(http.MethodGet, "/tenants", testAdminToken, nil)
	var list TenantList
	if err := json.Unmarshal(body, &list); err != nil || code != http.StatusOK || len(list.Tenants) != 2 {
		t.Fatalf("list: %d %s", code, body)
	}
	if a, g := list.Tenants[0], list.Tenants[1]; a.ID != "acme" || a.State != auth.StateConnected || *a.Grant.TokenAgeSeconds > 5 ||
		g.ID != "globex" || g.State != StateNeverConnected {
		t.Fatalf("list: %s", body)
	}
	for _, secret := range []string{refresh, r.stored("acme").RefreshToken, r.stored("acme").AccessToken, testClientSecret} {
		if strings.Contains(string(body), secret) {
			t.Fatal("the tenant list shows a secret")
		}
	}

	live := r.stored("acme").RefreshToken // rotated by the verifying refresh
	code, body = r.api(http.MethodPost, "/tenants/acme/disconnect", testAdminToken, nil)
	var disc DisconnectAnswer
	_ = json.Unmarshal(body, &disc)
	if code != http.StatusOK || disc.Tenant.State != auth.StateDisconnected || disc.Tenant.Grant.Stored || disc.Warning != "" {
		t.Fatalf("disconnect: %d %s", code, body)
	}
	if r.sf.RefreshTokenValid(live) {
		t.Fatal("disconnect did not revoke the grant at salesforce")
	}
}

// A refresh token Salesforce does not know is stored, tried, and reported:
// the tenant then needs a reconnect, with the reason.
func TestTokensImportOfADeadTokenSaysSo(t *testing.T) {
	r := newRig(t, nil)
	code, body := r.api(http.MethodPost, "/tenants/acme/tokens", testAdminToken, TokensRequest{RefreshToken: "5Aep861fakefakefakefakefakefake", InstanceURL: r.sf.URL()})
	var imp TokensAnswer
	_ = json.Unmarshal(body, &imp)
	if code != http.StatusOK || imp.Verified || !strings.Contains(imp.VerifyError, "invalid_grant") ||
		imp.Tenant.State != auth.StateNeedsReconnect || !strings.Contains(imp.Tenant.Reason, "invalid_grant") {
		t.Fatalf("%d %s", code, body)
	}
	for _, bad := range []any{TokensRequest{}, TokensRequest{RefreshToken: "x", InstanceURL: "ftp://x"}, "not an object"} {
		if code, body := r.api(http.MethodPost, "/tenants/acme/tokens", testAdminToken, bad); code != http.StatusBadRequest {
			t.Errorf("%v: %d %s", bad, code, body)
		}
	}
}

// Pending counts what waits on deliver-<tenant>; dead letters what sits in
// DEADLETTER for the tenant; neither counts another tenant's messages.
func TestTenantShowsPendingAndDeadLetters(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	js := r.q.JetStream()
	if got := r.tenant("acme"); got.PendingMessages != 0 || got.DeadLetters != 0 {
		t.Fatalf("empty: %+v", got)
	}
	for _, subj := range []string{"callbacks.acme.PACKAGE_COMPLETE", "callbacks.acme.PACKAGE_ACTIVATE", "callbacks.globex.PACKAGE_COMPLETE",
		"deadletter.acme.PACKAGE_COMPLETE", "deadletter.globex.PACKAGE_COMPLETE"} {
		if _, err := js.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.tenant("acme"); got.PendingMessages != 0 || got.DeadLetters != 1 {
		t.Fatalf("before the consumer exists: %+v", got)
	}
	cons, err := sfpush.EnsureConsumer(ctx, js, "acme", r.cfg.Worker)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.tenant("acme"); got.PendingMessages != 2 {
		t.Fatalf("pending %d, want 2", got.PendingMessages)
	}
	// A message handed out but not acked is still pending.
	msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(r.cfg.Worker.AckWait.D()))
	if err != nil {
		t.Fatal(err)
	}
	for range msgs.Messages() {
	}
	if got := r.tenant("acme"); got.PendingMessages != 2 {
		t.Fatalf("pending %d with one unacked, want 2", got.PendingMessages)
	}
	r.m.SalesforceAPIUsage.WithLabelValues("acme").Set(0.25)
	if got := r.tenant("acme"); got.APIUsageRatio == nil || *got.APIUsageRatio != 0.25 {
		t.Fatalf("api usage %v", got.APIUsageRatio)
	}
}

// Nothing secret reaches the logs along the whole connect, import and
// disconnect path, even without the redacting handler's help.
func TestLogsHoldNoTokenCodeTicketOrSecret(t *testing.T) {
	r := newRig(t, nil)
	link := r.mint("acme")
	ticket, _ := url.Parse(link.URL)
	resp, _ := get(t, stopAt(callbackPath), link.URL)
	cb, _ := url.Parse(resp.Header.Get("Location"))
	if resp, body := get(t, browser(), cb.String()); resp.StatusCode != http.StatusOK {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	get(t, browser(), cb.String()) // replayed: an error path that logs
	connected := r.stored("acme")

	_, imported := r.sf.IssueTokens("api refresh_token")
	if code, body := r.api(http.MethodPost, "/tenants/acme/tokens", testAdminToken, TokensRequest{RefreshToken: imported}); code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}
	afterImport := r.stored("acme")
	r.api(http.MethodGet, "/tenants", "fake-wrong-admin-token", nil)
	if code, body := r.api(http.MethodPost, "/tenants/acme/disconnect", testAdminToken, nil); code != http.StatusOK {
		t.Fatalf("disconnect: %d %s", code, body)
	}

	logs := r.logs.String()
	if !strings.Contains(logs, "salesforce connect flow finished") || !strings.Contains(logs, "admin request refused") {
		t.Fatalf("the flow was not logged:\n%s", logs)
	}
	secrets := map[string]string{
		"admin token": testAdminToken, "client secret": testClientSecret, "wrong token": "fake-wrong-admin-token",
		"ticket": ticket.Query().Get("ticket"), "code": cb.Query().Get("code"), "state": cb.Query().Get("state"),
		"connected refresh token": connected.RefreshToken, "connected access token": connected.AccessToken,
		"imported refresh token": imported, "rotated refresh token": afterImport.RefreshToken, "access token": afterImport.AccessToken,
	}
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("%s is empty: the test would prove nothing", what)
		}
		if strings.Contains(logs, s) || strings.Contains(logs, url.QueryEscape(s)) {
			t.Errorf("the logs contain the %s", what)
		}
	}
}

// Unknown admin paths are refused before routing says anything.
func TestAPIUnknownPathNeedsTheTokenToo(t *testing.T) {
	r := newRig(t, nil)
	if code, body := r.api(http.MethodGet, "/nothing-here", "", nil); code != http.StatusUnauthorized {
		t.Errorf("without token: %d %s", code, body)
	}
	if code, body := r.api(http.MethodGet, "/nothing-here", testAdminToken, nil); code != http.StatusNotFound || !strings.Contains(string(body), `"error"`) {
		t.Errorf("with token: %d %s", code, body)
	}
}
