package salesforce

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

const testRedirect = "http://127.0.0.1:9/oauth/salesforce/callback"

func testOptions() Options {
	o := DefaultOptions()
	o.RedirectURIs = []string{testRedirect}
	o.AutoApprove = true
	return o
}

func startServer(t *testing.T, mutate func(*Options)) *Server {
	t.Helper()
	o := testOptions()
	if mutate != nil {
		mutate(&o)
	}
	return NewTestServer(t, o)
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

func authorizeURL(s *Server, extra url.Values) string {
	q := url.Values{
		"response_type": {"code"},
		"client_id":     {"fake-client-id"},
		"redirect_uri":  {testRedirect},
		"state":         {"st-123"},
		"scope":         {"api refresh_token"},
	}
	for k, v := range extra {
		q[k] = v
	}
	return s.URL() + "/services/oauth2/authorize?" + q.Encode()
}

// getCode runs the authorize step (auto-approved) and returns the code.
func getCode(t *testing.T, s *Server, extra url.Values) string {
	t.Helper()
	resp, err := noRedirect.Get(authorizeURL(s, extra))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize status = %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Query().Get("state"); got != "st-123" {
		t.Fatalf("state = %q", got)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

type tokenResult struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func postToken(t *testing.T, s *Server, form url.Values, basic bool) tokenResult {
	t.Helper()
	if basic {
		form.Del("client_id")
		form.Del("client_secret")
	} else if form.Get("client_id") == "" {
		form.Set("client_id", "fake-client-id")
		if !form.Has("client_secret") {
			form.Set("client_secret", "fake-client-secret")
		}
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/services/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth("fake-client-id", "fake-client-secret")
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	res := tokenResult{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &res.body); err != nil {
		t.Fatalf("token body not JSON object: %q", raw)
	}
	return res
}

func codeForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

func wantOAuthError(t *testing.T, r tokenResult, code, desc string) {
	t.Helper()
	if r.status != http.StatusBadRequest || r.body["error"] != code || r.body["error_description"] != desc {
		t.Fatalf("got %d %s, want 400 %s/%s", r.status, r.raw, code, desc)
	}
}

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestAuthorizeConsentPage(t *testing.T) {
	s := startServer(t, func(o *Options) { o.AutoApprove = false })
	reqID := func(t *testing.T) string {
		resp, err := noRedirect.Get(authorizeURL(s, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), ">Allow<") || !strings.Contains(string(body), ">Deny<") {
			t.Fatalf("consent page: %d %s", resp.StatusCode, body)
		}
		m := regexp.MustCompile(`name="request_id" value="([^"]+)"`).FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("no request_id in page")
		}
		return m[1]
	}
	decide := func(t *testing.T, id, decision string) *http.Response {
		resp, err := noRedirect.PostForm(s.URL()+"/services/oauth2/authorize", url.Values{"request_id": {id}, "decision": {decision}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	t.Run("allow redirects with code and state", func(t *testing.T) {
		resp := decide(t, reqID(t), "allow")
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != 302 || !strings.HasPrefix(loc.String(), testRedirect+"?") || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st-123" {
			t.Fatalf("got %d %s", resp.StatusCode, loc)
		}
		if r := postToken(t, s, codeForm(loc.Query().Get("code")), false); r.status != 200 {
			t.Fatalf("exchange: %s", r.raw)
		}
	})
	t.Run("deny redirects with access_denied", func(t *testing.T) {
		resp := decide(t, reqID(t), "deny")
		want := testRedirect + "?error=access_denied&error_description=end-user+denied+authorization&state=st-123"
		if resp.StatusCode != 302 || resp.Header.Get("Location") != want {
			t.Fatalf("got %d %q, want %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})
	t.Run("a decision is answered once", func(t *testing.T) {
		id := reqID(t)
		decide(t, id, "allow")
		if resp := decide(t, id, "allow"); resp.StatusCode != 400 {
			t.Fatalf("second decision: %d", resp.StatusCode)
		}
	})
}

func TestAuthorizeRejections(t *testing.T) {
	s := startServer(t, nil)
	cases := []struct {
		name      string
		extra     url.Values
		status    int
		wantError string // error= in the redirect; empty for an error page
	}{
		{"unregistered redirect_uri gets a page, never a redirect", url.Values{"redirect_uri": {"http://evil.example/cb"}}, 400, ""},
		{"redirect_uri must match exactly", url.Values{"redirect_uri": {testRedirect + "/"}}, 400, ""},
		{"unknown client_id gets a page", url.Values{"client_id": {"nope"}}, 400, ""},
		{"response_type must be code", url.Values{"response_type": {"token"}}, 302, "unsupported_response_type"},
		{"scope outside the app's", url.Values{"scope": {"api chatter_api"}}, 302, "invalid_scope"},
		{"unknown challenge method", url.Values{"code_challenge": {"x"}, "code_challenge_method": {"S512"}}, 302, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := noRedirect.Get(authorizeURL(s, c.extra))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			loc := resp.Header.Get("Location")
			if c.wantError == "" {
				if loc != "" {
					t.Fatalf("redirected to %s", loc)
				}
				return
			}
			u, _ := url.Parse(loc)
			if u.Query().Get("error") != c.wantError || u.Query().Get("state") != "st-123" || !strings.HasPrefix(loc, testRedirect) {
				t.Fatalf("redirect %s", loc)
			}
		})
	}
}

func TestCodeExchange(t *testing.T) {
	const verifier = "dBjftJeZ4CVP-mJ92K9x5YZWjX5k1d2YGlQ9wrh1TVQ5LQ0fY8gk"
	pkce := url.Values{"code_challenge": {s256(verifier)}, "code_challenge_method": {"S256"}}
	clock := &fakeClock{t: time.Now()}
	s := startServer(t, func(o *Options) { o.Now = clock.Now })
	cases := []struct {
		name      string
		authorize url.Values
		form      func(code string) url.Values
		basic     bool
		wantErr   [2]string
	}{
		{name: "client credentials in body", form: codeForm},
		{name: "client credentials as basic auth", form: codeForm, basic: true},
		{name: "pkce s256", authorize: pkce, form: func(c string) url.Values {
			f := codeForm(c)
			f.Set("code_verifier", verifier)
			return f
		}},
		{name: "pkce plain when method omitted", authorize: url.Values{"code_challenge": {verifier}}, form: func(c string) url.Values {
			f := codeForm(c)
			f.Set("code_verifier", verifier)
			return f
		}},
		{name: "pkce verifier mismatch", authorize: pkce, form: func(c string) url.Values {
			f := codeForm(c)
			f.Set("code_verifier", verifier+"x")
			return f
		}, wantErr: [2]string{"invalid_grant", "invalid code verifier"}},
		{name: "pkce challenge without verifier", authorize: pkce, form: codeForm, wantErr: [2]string{"invalid_grant", "invalid code verifier"}},
		{name: "pkce s256 challenge sent as plain verifier", authorize: pkce, form: func(c string) url.Values {
			f := codeForm(c)
			f.Set("code_verifier", s256(verifier))
			return f
		}, wantErr: [2]string{"invalid_grant", "invalid code verifier"}},
		{name: "wrong client secret", form: func(c string) url.Values {
			f := codeForm(c)
			f.Set("client_id", "fake-client-id")
			f.Set("client_secret", "wrong")
			return f
		}, wantErr: [2]string{"invalid_client", "invalid client credentials"}},
		{name: "unknown client id", form: func(c string) url.Values {
			f := codeForm(c)
			f.Set("client_id", "other")
			return f
		}, wantErr: [2]string{"invalid_client_id", "client identifier invalid"}},
		{name: "redirect_uri differs from authorize", form: func(c string) url.Values {
			f := codeForm(c)
			f.Set("redirect_uri", "http://127.0.0.1:9/other")
			return f
		}, wantErr: [2]string{"redirect_uri_mismatch", "redirect_uri must match configuration"}},
		{name: "unknown code", form: func(string) url.Values { return codeForm("bm9wZQ==") }, wantErr: [2]string{"invalid_grant", "authentication failure"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code := getCode(t, s, c.authorize)
			r := postToken(t, s, c.form(code), c.basic)
			if c.wantErr[0] != "" {
				wantOAuthError(t, r, c.wantErr[0], c.wantErr[1])
				return
			}
			if r.status != 200 || r.body["access_token"] == "" || r.body["refresh_token"] == nil {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			// Single use: the same code again fails, and so would a retry.
			wantOAuthError(t, postToken(t, s, c.form(code), c.basic), "invalid_grant", "authentication failure")
		})
	}
	t.Run("code expires after 15 minutes", func(t *testing.T) {
		code := getCode(t, s, nil)
		clock.Advance(AuthCodeTTL + time.Second)
		wantOAuthError(t, postToken(t, s, codeForm(code), false), "invalid_grant", "authentication failure")
	})
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestTokenResponseIsSalesforceShaped(t *testing.T) {
	s := startServer(t, nil)
	before := time.Now().UnixMilli()
	r := postToken(t, s, codeForm(getCode(t, s, nil)), false)
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.raw)
	}
	if got := r.header.Get("Content-Type"); got != "application/json;charset=UTF-8" {
		t.Errorf("content-type %q", got)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("cache-control %q", got)
	}
	var keys []string
	for k := range r.body {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"access_token", "id", "instance_url", "issued_at", "refresh_token", "scope", "signature", "token_type"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v (never expires_in)", keys, want)
	}
	issued, ok := r.body["issued_at"].(string)
	if !ok || !regexp.MustCompile(`^\d{13}$`).MatchString(issued) {
		t.Fatalf("issued_at %#v is not epoch ms as a string", r.body["issued_at"])
	}
	var ms int64
	_ = json.Unmarshal([]byte(issued), &ms)
	if ms < before || ms > time.Now().UnixMilli() {
		t.Errorf("issued_at %d not now", ms)
	}
	if r.body["instance_url"] != s.URL() || r.body["token_type"] != "Bearer" || r.body["scope"] != "api refresh_token" {
		t.Errorf("body %s", r.raw)
	}
	id := r.body["id"].(string)
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(s.URL()) + `/id/00D[0-9A-Za-z]{15}/005[0-9A-Za-z]{15}$`).MatchString(id) {
		t.Errorf("id %q", id)
	}
	mac := hmac.New(sha256.New, []byte("fake-client-secret"))
	mac.Write([]byte(id + issued))
	if r.body["signature"] != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		t.Errorf("signature does not verify")
	}
}

func TestRefreshTokenOnlyWithRefreshScope(t *testing.T) {
	s := startServer(t, nil)
	for _, scope := range []string{"api", "api offline_access", "api refresh_token"} {
		r := postToken(t, s, codeForm(getCode(t, s, url.Values{"scope": {scope}})), false)
		_, has := r.body["refresh_token"]
		if has != (scope != "api") {
			t.Errorf("scope %q: refresh_token present=%v", scope, has)
		}
	}
}

func TestRefreshRotation(t *testing.T) {
	s := startServer(t, nil)
	first := postToken(t, s, codeForm(getCode(t, s, nil)), false)
	rt1 := first.body["refresh_token"].(string)

	r2 := postToken(t, s, refreshForm(rt1), false)
	rt2, _ := r2.body["refresh_token"].(string)
	if r2.status != 200 || rt2 == "" || rt2 == rt1 {
		t.Fatalf("rotation: %s", r2.raw)
	}
	if _, ok := r2.body["expires_in"]; ok || r2.body["instance_url"] != s.URL() {
		t.Fatalf("refresh response shape: %s", r2.raw)
	}
	at2 := r2.body["access_token"].(string)
	r3 := postToken(t, s, refreshForm(rt2), true)
	rt3 := r3.body["refresh_token"].(string)
	at3 := r3.body["access_token"].(string)
	if !s.RefreshTokenValid(rt3) || s.RefreshTokenValid(rt2) {
		t.Fatal("only the newest refresh token should live")
	}

	// Replaying rt1 (rotated out) kills the whole chain, the live token included.
	wantOAuthError(t, postToken(t, s, refreshForm(rt1), false), "invalid_grant", "expired access/refresh token")
	wantOAuthError(t, postToken(t, s, refreshForm(rt3), false), "invalid_grant", "expired access/refresh token")
	for _, at := range []string{first.body["access_token"].(string), at2, at3} {
		if st, _ := restGet(t, s, at, "/services/data/v62.0/limits"); st != 401 {
			t.Errorf("access token still works after chain revoked: %d", st)
		}
	}
	if got := s.TokenCalls("refresh_token"); got != 4 {
		t.Errorf("refresh calls = %d, want 4", got)
	}
	if got := s.TokenCalls("authorization_code"); got != 1 {
		t.Errorf("code calls = %d, want 1", got)
	}
}

func TestRefreshWithoutRotation(t *testing.T) {
	s := startServer(t, func(o *Options) { o.RotateRefreshTokens = false })
	rt := postToken(t, s, codeForm(getCode(t, s, nil)), false).body["refresh_token"].(string)
	for i := 0; i < 3; i++ {
		r := postToken(t, s, refreshForm(rt), false)
		if r.status != 200 {
			t.Fatalf("refresh %d: %s", i, r.raw)
		}
		if _, ok := r.body["refresh_token"]; ok {
			t.Fatalf("refresh_token sent without rotation: %s", r.raw)
		}
	}
	s.SetRotateRefreshTokens(true)
	if r := postToken(t, s, refreshForm(rt), false); r.body["refresh_token"] == nil {
		t.Fatalf("rotation knob ignored: %s", r.raw)
	}
}

func TestRFC6749Style(t *testing.T) {
	s := startServer(t, func(o *Options) { o.RFC6749Style = true; o.AccessTokenTTL = 90 * time.Minute })
	r := postToken(t, s, codeForm(getCode(t, s, nil)), false)
	if r.body["expires_in"] != float64(5400) || r.body["issued_at"] != nil || r.body["signature"] != nil || r.body["instance_url"] != nil {
		t.Fatalf("rfc response: %s", r.raw)
	}
	rt := r.body["refresh_token"].(string)
	r2 := postToken(t, s, refreshForm(rt), false)
	if r2.status != 200 || r2.body["refresh_token"] != nil || r2.body["expires_in"] != float64(5400) {
		t.Fatalf("rfc refresh: %s", r2.raw)
	}
	if r3 := postToken(t, s, refreshForm(rt), false); r3.status != 200 {
		t.Fatalf("rfc refresh token must stay valid: %s", r3.raw)
	}
}

func TestRevoke(t *testing.T) {
	s := startServer(t, nil)
	revoke := func(tok string) (int, string) {
		resp, err := http.PostForm(s.URL()+"/services/oauth2/revoke", url.Values{"token": {tok}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	r := postToken(t, s, codeForm(getCode(t, s, nil)), false)
	at, rt := r.body["access_token"].(string), r.body["refresh_token"].(string)
	if st, _ := restGet(t, s, at, "/services/data/v62.0/limits"); st != 200 {
		t.Fatalf("fresh token refused: %d", st)
	}
	if st, body := revoke(rt); st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	wantOAuthError(t, postToken(t, s, refreshForm(rt), false), "invalid_grant", "expired access/refresh token")
	if st, _ := restGet(t, s, at, "/services/data/v62.0/limits"); st != 401 {
		t.Fatalf("access token of a revoked refresh token: %d", st)
	}
	if st, body := revoke("unknown"); st != 400 || !strings.Contains(body, `"error":"invalid_token"`) {
		t.Fatalf("unknown token: %d %s", st, body)
	}
	// Revoking one access token leaves the grant alive.
	at2, rt2 := s.IssueTokens("api refresh_token")
	if st, _ := revoke(at2); st != 200 || s.AccessTokenValid(at2) || !s.RefreshTokenValid(rt2) {
		t.Fatal("access-token revoke")
	}
}

func TestExpiredAccessTokenGets401(t *testing.T) {
	s := startServer(t, func(o *Options) { o.AccessTokenTTL = 200 * time.Millisecond })
	at, rt := s.IssueTokens("")
	if st, _ := restGet(t, s, at, "/services/data/v62.0/limits"); st != 200 {
		t.Fatalf("fresh token refused: %d", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, body := restGet(t, s, at, "/services/data/v62.0/limits")
		if st == 401 {
			if body != `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]` {
				t.Fatalf("401 body %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("token never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !s.RefreshTokenValid(rt) {
		t.Fatal("refresh token died with its session")
	}
	for _, h := range []string{"", "Bearer nope"} {
		req, _ := http.NewRequest("GET", s.URL()+"/services/data/v62.0/limits", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("%q: %d", h, resp.StatusCode)
		}
	}
}

func TestTokenKnobs(t *testing.T) {
	s := startServer(t, nil)
	at, rt := s.IssueTokens("")
	s.ExpireAccessTokens()
	if s.AccessTokenValid(at) || !s.RefreshTokenValid(rt) {
		t.Fatal("ExpireAccessTokens")
	}
	r := postToken(t, s, refreshForm(rt), false)
	at2, rt2 := r.body["access_token"].(string), r.body["refresh_token"].(string)
	s.RevokeAll()
	if s.AccessTokenValid(at2) || s.RefreshTokenValid(rt2) {
		t.Fatal("RevokeAll")
	}
	wantOAuthError(t, postToken(t, s, url.Values{"grant_type": {"password"}}, false), "unsupported_grant_type", "grant type not supported")
	if got := s.TokenCallCounts(); got["password"] != 1 || got["refresh_token"] != 1 {
		t.Fatalf("counts %v", got)
	}
}

func TestSixthApprovalRevokesOldest(t *testing.T) {
	s := startServer(t, nil)
	var rts []string
	for i := 0; i < 6; i++ {
		rts = append(rts, postToken(t, s, codeForm(getCode(t, s, nil)), false).body["refresh_token"].(string))
	}
	if s.RefreshTokenValid(rts[0]) {
		t.Fatal("oldest approval survived the sixth")
	}
	for _, rt := range rts[1:] {
		if !s.RefreshTokenValid(rt) {
			t.Fatal("a recent approval was revoked")
		}
	}
}

// TestXOAuth2Client proves the flow works with golang.org/x/oauth2, which the
// token code uses: PKCE helpers, AuthStyleInParams and the code's "=" padding.
func TestXOAuth2Client(t *testing.T) {
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInParams, oauth2.AuthStyleInHeader} {
		s := startServer(t, nil)
		cfg := &oauth2.Config{
			ClientID: "fake-client-id", ClientSecret: "fake-client-secret", RedirectURL: testRedirect,
			Scopes: []string{"api", "refresh_token"},
			Endpoint: oauth2.Endpoint{AuthURL: s.URL() + "/services/oauth2/authorize",
				TokenURL: s.URL() + "/services/oauth2/token", AuthStyle: style},
		}
		v := oauth2.GenerateVerifier()
		resp, err := noRedirect.Get(cfg.AuthCodeURL("st-123", oauth2.S256ChallengeOption(v)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		if !tok.Expiry.IsZero() || tok.Extra("instance_url") != s.URL() || tok.RefreshToken == "" {
			t.Fatalf("token %+v", tok)
		}
		// A wrong verifier surfaces as a RetrieveError with the Salesforce code.
		resp, _ = noRedirect.Get(cfg.AuthCodeURL("st-123", oauth2.S256ChallengeOption(v)))
		resp.Body.Close()
		loc, _ = url.Parse(resp.Header.Get("Location"))
		_, err = cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.ErrorDescription != "invalid code verifier" {
			t.Fatalf("err %v", err)
		}
	}
}

// restGet calls a REST path with a bearer token and returns status and body.
func restGet(t *testing.T, s *Server, token, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestTokenEndpointFaults(t *testing.T) {
	s := startServer(t, nil)
	rt := postToken(t, s, codeForm(getCode(t, s, nil)), false).body["refresh_token"].(string)

	s.FailNextToken(FaultUnavailable)
	req, _ := http.NewRequest("POST", s.URL()+"/services/oauth2/token", strings.NewReader(refreshForm(rt).Encode()+"&client_id=fake-client-id&client_secret=fake-client-secret"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || !s.RefreshTokenValid(rt) {
		t.Fatalf("503 fault: %d, token still valid: %v", resp.StatusCode, s.RefreshTokenValid(rt))
	}

	// Commit then reset: the refresh rotated server-side but the client never saw
	// the new token; its retry with the old one is a replay and kills the grant.
	s.FailNextToken(FaultCommitThenReset)
	req, _ = http.NewRequest("POST", s.URL()+"/services/oauth2/token", strings.NewReader(refreshForm(rt).Encode()+"&client_id=fake-client-id&client_secret=fake-client-secret"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("reset answered %d", resp.StatusCode)
	}
	if s.RefreshTokenValid(rt) {
		t.Fatal("refresh was not applied")
	}
	wantOAuthError(t, postToken(t, s, refreshForm(rt), false), "invalid_grant", "expired access/refresh token")
	if got := s.TokenCalls("refresh_token"); got != 3 {
		t.Fatalf("refresh calls %d, want 3", got)
	}
}

func TestIntrospectAndIdentity(t *testing.T) {
	s := startServer(t, func(o *Options) { o.AccessTokenTTL = time.Hour })
	at, rt := s.IssueTokens("")
	introspect := func(tok string) map[string]any {
		resp, err := http.PostForm(s.URL()+"/services/oauth2/introspect", url.Values{"token": {tok}, "client_id": {"fake-client-id"}, "client_secret": {"fake-client-secret"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	if got := introspect(at); got["active"] != true || got["token_type"] != "access_token" || got["exp"] == nil {
		t.Fatalf("access: %v", got)
	}
	if got := introspect(rt); got["active"] != true || got["token_type"] != "refresh_token" {
		t.Fatalf("refresh: %v", got)
	}
	if got := introspect("nope"); got["active"] != false || len(got) != 1 {
		t.Fatalf("unknown: %v", got)
	}
	st, body := restGet(t, s, at, "/id/"+s.OrgID()+"/"+s.UserID())
	if st != 200 || !strings.Contains(body, `"organization_id":"`+s.OrgID()+`"`) {
		t.Fatalf("identity: %d %s", st, body)
	}
}

func TestBasicAuthWithSpecialCharacters(t *testing.T) {
	const secret = "fake+secret/with=chars&more"
	s := startServer(t, func(o *Options) { o.ClientSecret = secret })
	for _, escaped := range []bool{true, false} {
		_, rt := s.IssueTokens("")
		req, _ := http.NewRequest("POST", s.URL()+"/services/oauth2/token", strings.NewReader(refreshForm(rt).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if escaped {
			req.SetBasicAuth("fake-client-id", url.QueryEscape(secret))
		} else {
			req.SetBasicAuth("fake-client-id", secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("escaped=%v: %d", escaped, resp.StatusCode)
		}
	}
}
