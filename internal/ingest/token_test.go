package ingest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
)

const (
	acmeClient   = "fake-oss-acme"
	acmeSecret   = "fake-client-secret-acme-0001"
	otherClient  = "fake-oss-other"
	otherSecret  = "fake-client-secret-other-0001"
	rotatedAcme  = "fake-client-secret-acme-0002"
	secretWithPc = "fake+secret/with:odd%chars"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func secretKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// withTokens turns the OAuth2 option on for acme and other, with tokens signed
// by keys (first signs) on clk.
func withTokens(t *testing.T, clk *testClock, keys ...string) rigOption {
	t.Helper()
	tokens, err := auth.NewCallbackTokensFromConfig(keys, 0, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *Options, _ *config.Server) {
		o.Tenants["acme"].CallbackClients = []config.CallbackClient{
			{ClientID: acmeClient, ClientSecret: acmeSecret},
			{ClientID: acmeClient, ClientSecret: rotatedAcme},
			{ClientID: "fake-odd", ClientSecret: secretWithPc},
		}
		o.Tenants["other"].CallbackClients = []config.CallbackClient{{ClientID: otherClient, ClientSecret: otherSecret}}
		o.CallbackTokens = tokens
		o.Now = clk.now
	}
}

type tokenCall struct {
	basicID, basicSecret string // HTTP Basic when basicID is set
	rawAuth              string // a literal Authorization header
	form                 url.Values
	json                 string
	query                string
}

type tokenResult struct {
	status int
	header http.Header
	body   string
	answer tokenAnswer
	err    oauthError
}

func (r *rig) token(t *testing.T, c tokenCall) tokenResult {
	t.Helper()
	var body io.Reader
	ct := ""
	switch {
	case c.json != "":
		body, ct = strings.NewReader(c.json), "application/json"
	case c.form != nil:
		body, ct = strings.NewReader(c.form.Encode()), "application/x-www-form-urlencoded"
	}
	u := r.url + TokenPath
	if c.query != "" {
		u += "?" + c.query
	}
	req, _ := http.NewRequest(http.MethodPost, u, body)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if c.basicID != "" {
		req.SetBasicAuth(c.basicID, c.basicSecret)
	}
	if c.rawAuth != "" {
		req.Header.Set("Authorization", c.rawAuth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	res := tokenResult{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &res.answer); err != nil {
			t.Fatalf("token answer %s: %v", b, err)
		}
	} else {
		_ = json.Unmarshal(b, &res.err)
	}
	return res
}

// fetch gets a token the way a conforming client does and fails otherwise.
func (r *rig) fetch(t *testing.T, id, secret string) string {
	t.Helper()
	res := r.token(t, tokenCall{basicID: id, basicSecret: secret, form: url.Values{"grant_type": {"client_credentials"}}})
	if res.status != 200 || res.answer.AccessToken == "" {
		t.Fatalf("token for %s: %d %s", id, res.status, res.body)
	}
	return res.answer.AccessToken
}

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func TestTokenEndpointIssuesForClientCredentialsHoweverTheySent(t *testing.T) {
	clk := &testClock{t: time.Now()}
	r := newRig(t, withTokens(t, clk, secretKey(t)))
	grant := form("grant_type", "client_credentials")
	cases := []struct {
		name string
		call tokenCall
	}{
		{"basic", tokenCall{basicID: acmeClient, basicSecret: acmeSecret, form: grant}},
		{"basic with the rotated secret", tokenCall{basicID: acmeClient, basicSecret: rotatedAcme, form: grant}},
		{"basic with scope", tokenCall{basicID: acmeClient, basicSecret: acmeSecret, form: form("grant_type", "client_credentials", "scope", "callbacks")}},
		{"basic, form-encoded per RFC 6749 2.3.1", tokenCall{basicID: "fake-odd", basicSecret: url.QueryEscape(secretWithPc), form: grant}},
		{"basic, raw", tokenCall{basicID: "fake-odd", basicSecret: secretWithPc, form: grant}},
		{"form fields", tokenCall{form: form("grant_type", "client_credentials", "client_id", acmeClient, "client_secret", acmeSecret)}},
		{"json fields", tokenCall{json: `{"grant_type":"client_credentials","client_id":"` + acmeClient + `","client_secret":"` + acmeSecret + `"}`}},
		{"query fields", tokenCall{query: form("grant_type", "client_credentials", "client_id", acmeClient, "client_secret", acmeSecret).Encode()}},
		{"no grant_type", tokenCall{basicID: acmeClient, basicSecret: acmeSecret}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := r.token(t, tc.call)
			if res.status != 200 {
				t.Fatalf("got %d %s", res.status, res.body)
			}
			a := res.answer
			if a.TokenType != "Bearer" || a.ExpiresIn != int64(auth.DefaultCallbackTokenTTL/time.Second) || strings.Count(a.AccessToken, ".") != 2 {
				t.Errorf("answer %s", res.body)
			}
			if res.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
				t.Errorf("headers %v", res.header)
			}
			if want := tc.call.form.Get("scope"); a.Scope != want {
				t.Errorf("scope %q, want %q", a.Scope, want)
			}
		})
	}
}

func TestTokenEndpointRefusesLikeRFC6749(t *testing.T) {
	clk := &testClock{t: time.Now()}
	r := newRig(t, withTokens(t, clk, secretKey(t)))
	grant := form("grant_type", "client_credentials")
	cases := []struct {
		name      string
		call      tokenCall
		status    int
		err       string
		challenge bool
	}{
		{"wrong secret, basic", tokenCall{basicID: acmeClient, basicSecret: acmeSecret + "x", form: grant}, 401, "invalid_client", true},
		{"unknown client, basic", tokenCall{basicID: "fake-nobody", basicSecret: acmeSecret, form: grant}, 401, "invalid_client", true},
		{"other client's secret", tokenCall{basicID: acmeClient, basicSecret: otherSecret, form: grant}, 401, "invalid_client", true},
		{"wrong secret, form", tokenCall{form: form("grant_type", "client_credentials", "client_id", acmeClient, "client_secret", "fake-wrong-secret-000")}, 401, "invalid_client", false},
		{"no credentials", tokenCall{form: grant}, 401, "invalid_client", true},
		{"callback key is not a client", tokenCall{rawAuth: "Basic " + keyNew, form: grant}, 401, "invalid_client", true},
		{"wrong grant type", tokenCall{basicID: acmeClient, basicSecret: acmeSecret, form: form("grant_type", "password", "username", "u", "password", "p")}, 400, "unsupported_grant_type", false},
		{"authorization code grant", tokenCall{form: form("grant_type", "authorization_code", "client_id", acmeClient, "client_secret", acmeSecret, "code", "c")}, 400, "unsupported_grant_type", false},
		{"malformed json", tokenCall{json: `{"grant_type":`}, 400, "invalid_request", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := r.token(t, tc.call)
			if res.status != tc.status || res.err.Error != tc.err {
				t.Fatalf("got %d %s, want %d %s", res.status, res.body, tc.status, tc.err)
			}
			if got := res.header.Get("WWW-Authenticate") != ""; got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want one: %v", res.header.Get("WWW-Authenticate"), tc.challenge)
			}
			if res.header.Get("Cache-Control") != "no-store" {
				t.Error("error answer without Cache-Control: no-store")
			}
		})
	}
	if resp, err := http.Get(r.url + TokenPath); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %v %v", TokenPath, resp.StatusCode, err)
	}
}

func TestTokenEndpointLimitsAddressesGuessingSecrets(t *testing.T) {
	clk := &testClock{t: time.Now()}
	r := newRig(t, withTokens(t, clk, secretKey(t)), func(o *Options, _ *config.Server) { o.MaxAuthFailures = 3 })
	for i := range 3 {
		if res := r.token(t, tokenCall{basicID: acmeClient, basicSecret: "fake-guess", form: form("grant_type", "client_credentials")}); res.status != 401 {
			t.Fatalf("guess %d: %d", i, res.status)
		}
	}
	res := r.token(t, tokenCall{basicID: acmeClient, basicSecret: acmeSecret, form: form("grant_type", "client_credentials")})
	if res.status != 429 || res.header.Get("Retry-After") == "" {
		t.Fatalf("after 3 bad secrets got %d %s", res.status, res.body)
	}
}

func TestCallbackWithBearerToken(t *testing.T) {
	clk := &testClock{t: time.Now()}
	key := secretKey(t)
	r := newRig(t, withTokens(t, clk, key))
	acmeToken := r.fetch(t, acmeClient, acmeSecret)
	otherToken := r.fetch(t, otherClient, otherSecret)
	parts := strings.Split(acmeToken, ".")
	tamperedPayload := func() string {
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		p := strings.Replace(string(raw), `"tenant":"acme"`, `"tenant":"other"`, 1)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(p)) + "." + parts[2]
	}()
	sig := []byte(parts[2])
	if sig[3] == 'A' {
		sig[3] = 'B'
	} else {
		sig[3] = 'A'
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)
	foreignKey, err := auth.NewCallbackTokensFromConfig([]string{secretKey(t)}, 0, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	forged, _, _ := foreignKey.Issue("acme", acmeClient)

	ok := func(tenant, auth, pkg string) call {
		return call{tenant, auth, jsonCT, payload("PACKAGE_COMPLETE", pkg), ""}
	}
	cases := []struct {
		name   string
		call   call
		status int
	}{
		{"fresh token", ok("acme", "Bearer "+acmeToken, "b1"), 200},
		{"other tenant's own token", ok("other", "Bearer "+otherToken, "b2"), 200},
		{"basic key still works", ok("acme", "Basic "+keyNew, "b3"), 200},
		{"scheme in lower case", ok("acme", "bearer "+acmeToken, "b3b"), 200},
		{"acme's token on other's URL", ok("other", "Bearer "+acmeToken, "b4"), 401},
		{"token on an unknown tenant", ok("nobody", "Bearer "+acmeToken, "b5"), 401},
		{"tampered payload", ok("other", "Bearer "+tamperedPayload, "b6"), 401},
		{"tampered signature", ok("acme", "Bearer "+tamperedSig, "b7"), 401},
		{"signed by a key not configured", ok("acme", "Bearer "+forged, "b8"), 401},
		{"garbage", ok("acme", "Bearer fake-garbage-token", "b9"), 401},
		{"client secret as a bearer", ok("acme", "Bearer "+acmeSecret, "b10"), 401},
		{"token sent as basic", ok("acme", "Basic "+acmeToken, "b11"), 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := r.streamMsgs(t)
			resp, body := r.post(t, tc.call)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			stored := r.streamMsgs(t) == before+1
			if stored != (tc.status == 200) {
				t.Errorf("stored = %v", stored)
			}
			if tc.status == 401 && body != `{"error":"unauthorized"}`+"\n" {
				t.Errorf("401 body %q differs from a bad key's", body)
			}
			if tc.status == 401 && strings.HasPrefix(tc.call.auth, "Bearer ") &&
				!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("bearer refusal challenge %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	if got := testutil.ToFloat64(r.metrics.CallbacksReceived.WithLabelValues("acme", "none", "unauthorized")); got != 5 {
		t.Errorf("acme unauthorized = %v, want 5", got)
	}

	// The same token, once expired, is refused like a bad key.
	clk.add(auth.DefaultCallbackTokenTTL + time.Minute)
	if resp, body := r.post(t, ok("acme", "Bearer "+acmeToken, "b12")); resp.StatusCode != 401 || body != `{"error":"unauthorized"}`+"\n" {
		t.Fatalf("expired token: %d %s", resp.StatusCode, body)
	}
	fresh := r.fetch(t, acmeClient, acmeSecret)
	if resp, body := r.post(t, ok("acme", "Bearer "+fresh, "b13")); resp.StatusCode != 200 {
		t.Fatalf("token fetched after expiry: %d %s", resp.StatusCode, body)
	}
}

func TestBadBearerTokensCountTowardTheLimit(t *testing.T) {
	clk := &testClock{t: time.Now()}
	r := newRig(t, withTokens(t, clk, secretKey(t)), func(o *Options, _ *config.Server) { o.MaxAuthFailures = 3 })
	good := r.fetch(t, acmeClient, acmeSecret)
	for i := range 3 {
		if resp, _ := r.post(t, call{"acme", "Bearer fake-garbage", jsonCT, payload("PACKAGE_COMPLETE", "p"), ""}); resp.StatusCode != 401 {
			t.Fatalf("attempt %d: %d", i, resp.StatusCode)
		}
	}
	if resp, _ := r.post(t, call{"acme", "Bearer " + good, jsonCT, payload("PACKAGE_COMPLETE", "p"), ""}); resp.StatusCode != 429 {
		t.Fatalf("blocked address got %d", resp.StatusCode)
	}
	if got := testutil.ToFloat64(r.metrics.CallbacksReceived.WithLabelValues("acme", "none", "rate_limited")); got != 1 {
		t.Errorf("rate_limited = %v", got)
	}
}

func TestBearerTokenSurvivesSecretKeyRotation(t *testing.T) {
	clk := &testClock{t: time.Now()}
	oldKey, newKey := secretKey(t), secretKey(t)
	before := newRig(t, withTokens(t, clk, oldKey))
	token := before.fetch(t, acmeClient, acmeSecret)

	// Another replica, restarted after secrets.keys gained a new first key.
	after := newRig(t, withTokens(t, clk, newKey, oldKey))
	if resp, body := after.post(t, call{"acme", "Bearer " + token, jsonCT, payload("PACKAGE_COMPLETE", "r1"), ""}); resp.StatusCode != 200 {
		t.Fatalf("token of the old first key refused after rotation: %d %s", resp.StatusCode, body)
	}
	if after.streamMsgs(t) != 1 {
		t.Fatal("callback not stored")
	}
	// And the old replica does not accept what the new key signed.
	newToken := after.fetch(t, acmeClient, acmeSecret)
	if resp, _ := before.post(t, call{"acme", "Bearer " + newToken, jsonCT, payload("PACKAGE_COMPLETE", "r2"), ""}); resp.StatusCode != 401 {
		t.Fatalf("replica without the new key accepted its token: %d", resp.StatusCode)
	}
}

func TestTokenFlowLogsNoSecretOrToken(t *testing.T) {
	clk := &testClock{t: time.Now()}
	r := newRig(t, withTokens(t, clk, secretKey(t)))
	token := r.fetch(t, acmeClient, acmeSecret)
	r.post(t, call{"acme", "Bearer " + token, jsonCT, payload("PACKAGE_COMPLETE", "l1"), ""})
	r.post(t, call{"other", "Bearer " + token, jsonCT, payload("PACKAGE_COMPLETE", "l2"), ""})
	r.token(t, tokenCall{basicID: acmeClient, basicSecret: rotatedAcme + "x", form: form("grant_type", "client_credentials")})
	// A secret typed into the client id field must not be logged either.
	r.token(t, tokenCall{form: form("grant_type", "client_credentials", "client_id", otherSecret, "client_secret", acmeSecret)})
	r.token(t, tokenCall{basicID: acmeClient, basicSecret: acmeSecret, form: form("grant_type", "password", "password", "fake-user-password")})
	out := r.logs.String()
	for _, want := range []string{"oauth2 token issued", "callback stored", "oauth2 token of another tenant", "oauth2 token refused: bad client credentials", "unsupported grant type"} {
		if !strings.Contains(out, want) {
			t.Errorf("log misses %q:\n%s", want, out)
		}
	}
	parts := strings.Split(token, ".")
	for _, s := range []string{acmeSecret, rotatedAcme, otherSecret, "fake-user-password", token, parts[2]} {
		if strings.Contains(out, s) {
			t.Errorf("log contains a secret or token %q:\n%s", s, out)
		}
	}
}
