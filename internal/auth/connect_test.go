package auth

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func (h *harness) connector(sources ...*Source) *Connector {
	h.t.Helper()
	c, err := NewConnector(ConnectOptions{OAuth: h.kv.oauth, Sealer: h.sealer, Sources: sources, Logger: h.logger})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// authorize plays the browser: it opens the authorize URL (the sandbox
// auto-approves) and returns the query Salesforce redirects back with.
func authorize(t *testing.T, authURL string) url.Values {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), testRedirect+"?") {
		t.Fatalf("redirected to %q (%v)", resp.Header.Get("Location"), err)
	}
	return loc.Query()
}

func TestConnectFlowStoresTokensAndConsumesStateOnce(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	s := h.source(nil)
	c := h.connector(s)
	if err := NewTenants(h.kv.tenants).SetNeedsReconnect(ctx, "acme", "revoked"); err != nil {
		t.Fatal(err)
	}

	start, err := c.StartURL(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(start)
	q := u.Query()
	want := map[string]string{"response_type": "code", "client_id": testClientID, "redirect_uri": testRedirect,
		"scope": "api refresh_token", "code_challenge_method": "S256"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if u.Path != "/services/oauth2/authorize" || len(q.Get("state")) < 40 || len(q.Get("code_challenge")) != 43 {
		t.Fatalf("authorize url %s", u.Redacted())
	}

	cb := authorize(t, start)
	tenant, err := c.Finish(ctx, cb)
	if err != nil || tenant != "acme" {
		t.Fatalf("Finish = %q, %v", tenant, err)
	}
	if n := h.sf.TokenCalls("authorization_code"); n != 1 {
		t.Fatalf("%d code exchanges, want exactly 1", n)
	}
	ts := h.stored()
	if !h.sf.RefreshTokenValid(ts.RefreshToken) || ts.InstanceURL != h.sf.URL() || !strings.Contains(ts.ID, "/id/") || ts.IssuedAt.IsZero() {
		t.Fatalf("stored %+v", ts)
	}
	st, _, _ := NewTenants(h.kv.tenants).Get(ctx, "acme")
	if st.State != StateConnected || h.connected() != 1 {
		t.Fatalf("state %+v connected %v", st, h.connected())
	}
	if status, err := restCall(ctx, s.Client(), h.sf.URL()); err != nil || status != 200 {
		t.Fatalf("call: %d %v", status, err)
	}

	if _, err := c.Finish(ctx, cb); err == nil || h.sf.TokenCalls("authorization_code") != 1 {
		t.Fatalf("a replayed callback was accepted: %v", err)
	}
}

func TestConnectConcurrentCallbacksWithOneStateExchangeOnce(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	c := h.connector(h.source(nil))
	start, err := c.StartURL(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	cb := authorize(t, start)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := h.connector(h.source(nil)).Finish(ctx, cb); err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || h.sf.TokenCalls("authorization_code") != 1 {
		t.Fatalf("%d callbacks succeeded with %d exchanges, want 1 and 1", ok.Load(), h.sf.TokenCalls("authorization_code"))
	}
}

func TestConnectDeniedAndExpiredAndUnknown(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	c := h.connector(h.source(nil))
	start, _ := c.StartURL(ctx, "acme")
	u, _ := url.Parse(start)
	state := u.Query().Get("state")
	denied := url.Values{"state": {state}, "error": {"access_denied"}, "error_description": {"end-user denied authorization"}}
	tenant, err := c.Finish(ctx, denied)
	if tenant != "acme" || err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("denied: %q %v", tenant, err)
	}
	if _, err := c.Finish(ctx, url.Values{"state": {state}, "code": {"x"}}); err == nil {
		t.Fatal("a state was usable after a denied flow")
	}
	if st, _, _ := NewTenants(h.kv.tenants).Get(ctx, "acme"); st.State == StateConnected {
		t.Fatal("denied flow connected the tenant")
	}

	late, _ := NewConnector(ConnectOptions{OAuth: h.kv.oauth, Sealer: h.sealer, Sources: []*Source{h.source(nil)},
		Now: func() time.Time { return time.Now().Add(DefaultStateTTL + time.Minute) }})
	start, _ = c.StartURL(ctx, "acme")
	if _, err := late.Finish(ctx, authorize(t, start)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired flow: %v", err)
	}

	for _, q := range []url.Values{{}, {"state": {"nope"}, "code": {"x"}}, {"state": {"bad key*"}}} {
		if _, err := c.Finish(ctx, q); err == nil {
			t.Fatalf("Finish(%v) succeeded", q)
		}
	}
	if _, err := c.StartURL(ctx, "globex"); err == nil || !strings.Contains(err.Error(), "globex") {
		t.Fatalf("unknown tenant: %v", err)
	}
	if h.sf.TokenCalls("authorization_code") != 0 {
		t.Fatal("a refused flow called the token endpoint")
	}
}

// The stored PKCE verifier matches the challenge sent to Salesforce and is
// sealed (the verifier never leaves the server in clear).
func TestConnectStateIsSealedAndMatchesChallenge(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	c := h.connector(h.source(nil))
	start, _ := c.StartURL(ctx, "acme")
	u, _ := url.Parse(start)
	state := u.Query().Get("state")
	e, err := h.kv.oauth.Get(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	pt, _, err := h.sealer.Open(stateAAD(state), e.Value())
	if err != nil {
		t.Fatal(err)
	}
	var verifier string
	if i := strings.Index(string(pt), `"verifier":"`); i >= 0 {
		verifier = strings.SplitN(string(pt)[i+12:], `"`, 2)[0]
	}
	if verifier == "" || strings.Contains(string(e.Value()), verifier) {
		t.Fatal("verifier missing or stored in clear")
	}
	if oauth2.S256ChallengeFromVerifier(verifier) != u.Query().Get("code_challenge") {
		t.Fatal("challenge does not match the stored verifier")
	}
}
