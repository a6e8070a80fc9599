package admin

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/ingest"
)

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// page is a browser without JavaScript: a cookie jar, redirects not
// followed (so each answer can be checked).
type pageClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (r *opsRig) browser() *pageClient {
	jar, _ := cookiejar.New(nil)
	hc := r.client()
	hc.Jar = jar
	return &pageClient{t: r.t, base: r.base, hc: hc}
}

func (p *pageClient) do(method, path string, form url.Values) (*http.Response, string) {
	p.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, p.base+path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (p *pageClient) get(path string) (*http.Response, string) {
	return p.do(http.MethodGet, path, nil)
}

func (p *pageClient) post(path string, form url.Values) (*http.Response, string) {
	return p.do(http.MethodPost, path, form)
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in:\n%s", page)
	}
	return m[1]
}

// signIn signs the browser in and returns the session's CSRF token.
func (p *pageClient) signIn(token string) (*http.Response, string) {
	p.t.Helper()
	_, form := p.get(consolePrefix + "/login")
	return p.post(consolePrefix+"/login", url.Values{"csrf": {csrfOf(p.t, form)}, "token": {token}, "next": {"/admin/"}})
}

func (p *pageClient) session() string {
	p.t.Helper()
	resp, body := p.signIn(testAdminToken)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/" {
		p.t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	_, page := p.get(consolePrefix + "/")
	return csrfOf(p.t, page)
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestPageSignInSessionAcrossReplicasAndSignOut(t *testing.T) {
	r := newOpsRig(t, opsOptions{})
	b := r.browser()

	resp, _ := b.get(consolePrefix + "/events?tenant=acme")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/login?next=%2Fadmin%2Fevents%3Ftenant%3Dacme" {
		t.Fatalf("without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := b.get(consolePrefix + "/login")
	mustContain(t, "sign-in page", page, "<h1>Sign in</h1>", `<label for="token">Admin token</label>`, `src="/admin/assets/htmx.min.js"`)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}

	// A wrong token: 401 and the form again, counted like an API failure.
	if resp, page := b.signIn("fake-wrong-admin-token"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "not valid") ||
		cookieNamed(resp, SessionCookie) != nil {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	// A sign-in form not from this browser's page: 403.
	if resp, _ := b.post(consolePrefix+"/login", url.Values{"csrf": {"fake-forged"}, "token": {testAdminToken}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged sign-in: %d", resp.StatusCode)
	}

	resp, _ = b.signIn(testAdminToken)
	ck := cookieNamed(resp, SessionCookie)
	if resp.StatusCode != http.StatusSeeOther || ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure ||
		ck.Path != "/" || ck.MaxAge != int((12*time.Hour).Seconds()) {
		t.Fatalf("sign in: %d cookie %+v", resp.StatusCode, ck)
	}
	resp, page = b.get(consolePrefix + "/")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("overview: %d", resp.StatusCode)
	}
	mustContain(t, "overview", page, "<h1>Tenants and queues</h1>", `href="/admin/tenants/acme"`, "Connected", "Sign out")
	kv, err := r.q.JetStream().KeyValue(t.Context(), SessionBucket)
	if err != nil {
		t.Fatalf("sessions bucket: %v", err)
	}
	keys, _ := kv.Keys(t.Context())
	if len(keys) != 1 || strings.Contains(keys[0], ck.Value) {
		t.Fatalf("stored session keys %v: one, not the cookie itself", keys)
	}

	// Another replica (its own admin on the same NATS) knows the session.
	other := r.newAdmin()
	e, err := ingest.NewEcho(r.cfg.Server)
	if err != nil {
		t.Fatal(err)
	}
	other.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+consolePrefix+"/tenants/acme", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: ck.Value})
	res, err := r.client().Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("second replica: %v %v", res, err)
	}
	res.Body.Close()

	// Sign out ends the session everywhere.
	csrf := csrfOf(t, page)
	if resp, _ := b.post(consolePrefix+"/logout", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	if resp, _ := b.get(consolePrefix + "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after sign out: %d", resp.StatusCode)
	}
	res, err = r.client().Do(req)
	if err != nil || res.StatusCode != http.StatusSeeOther {
		t.Fatalf("second replica after sign out: %v %v", res, err)
	}
	res.Body.Close()

	// Signing in again replaces the session id: the earlier one is dead.
	resp, _ = b.signIn(testAdminToken)
	first := cookieNamed(resp, SessionCookie)
	again := r.browser()
	_, form := again.get(consolePrefix + "/login")
	base, _ := url.Parse(r.base)
	again.hc.Jar.SetCookies(base, []*http.Cookie{{Name: SessionCookie, Value: first.Value, Path: "/"}})
	resp, _ = again.post(consolePrefix+"/login", url.Values{"csrf": {csrfOf(t, form)}, "token": {testAdminToken}})
	if second := cookieNamed(resp, SessionCookie); second == nil || second.Value == first.Value {
		t.Fatal("a second sign-in kept the session id")
	}
	if _, err := r.admin.console.sessions.lookup(t.Context(), first.Value); err != errNoSession {
		t.Fatalf("the earlier session still opens: %v", err)
	}
}

// Every state-changing form needs the session and its CSRF token: without
// either the answer is 403 and nothing changes.
func TestPagePostsWithoutSessionOrCSRFAreRefused(t *testing.T) {
	r := newOpsRig(t, opsOptions{})
	b := r.browser()
	csrf := b.session()
	anon := r.browser()
	posts := []struct {
		path string
		form url.Values
	}{
		{"/admin/tenants/acme/disconnect", url.Values{}},
		{"/admin/tenants/acme/reconcile", url.Values{"since": {"1h"}}},
		{"/admin/replay/preview", url.Values{"tenant": {"acme"}}},
		{"/admin/replay", url.Values{"tenant": {"acme"}}},
		{"/admin/purge/preview", url.Values{"tenant": {"acme"}}},
		{"/admin/purge", url.Values{"tenant": {"acme"}}},
		{"/admin/logout", url.Values{}},
	}
	for _, p := range posts {
		t.Run(p.path, func(t *testing.T) {
			cases := []struct {
				name   string
				client *pageClient
				token  string
			}{
				{"no session", anon, ""},
				{"no session, a token", anon, csrf},
				{"no token", b, ""},
				{"wrong token", b, "fake-csrf-token"},
				{"another session's token", b, r.browser().session()},
			}
			for _, c := range cases {
				form := url.Values{}
				for k, v := range p.form {
					form[k] = v
				}
				if c.token != "" {
					form.Set("csrf", c.token)
				}
				resp, page := c.client.post(p.path, form)
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Nothing was changed") {
					t.Errorf("%s: %d", c.name, resp.StatusCode)
				}
			}
		})
	}
	if st := r.admin.tenantViewMust(t, "acme"); st.State != auth.StateConnected {
		t.Fatalf("a refused disconnect changed the tenant: %s", st.State)
	}
	// The session's token in the header (htmx) is accepted.
	req, _ := http.NewRequest(http.MethodPost, r.base+"/admin/replay/preview", strings.NewReader("tenant=acme"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-CSRF-Token", csrf)
	resp, err := b.hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token in header: %v %v", resp, err)
	}
	resp.Body.Close()
}

func (a *Admin) tenantViewMust(t *testing.T, id string) Tenant {
	t.Helper()
	v, err := a.tenantView(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSessionCookieIsSecureOverHTTPS(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    opsOptions
	}{
		{"public url is https", opsOptions{publicURL: "https://listener.example.com"}},
		{"request over TLS", opsOptions{tls: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newOpsRig(t, tc.o)
			resp, _ := r.browser().signIn(testAdminToken)
			ck := cookieNamed(resp, SessionCookie)
			if ck == nil || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
				t.Fatalf("cookie %+v", ck)
			}
		})
	}
}

func TestSessionExpiresIdleAndAbsolute(t *testing.T) {
	r := newOpsRig(t, opsOptions{})
	now := time.Now()
	s := &sessions{js: r.q.JetStream(), idle: time.Hour, maxAge: 3 * time.Hour, now: func() time.Time { return now }}
	ctx := context.Background()
	idle, err := s.create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	busy, _ := s.create(ctx)
	now = now.Add(50 * time.Minute)
	if _, err := s.lookup(ctx, busy.ID); err != nil {
		t.Fatal(err)
	}
	now = now.Add(20 * time.Minute) // 70 min: idle is past its hour, busy was seen 20 min ago
	if _, err := s.lookup(ctx, idle.ID); err != errNoSession {
		t.Fatalf("idle session: %v", err)
	}
	for range 3 { // seen every 50 minutes, until the absolute limit
		if _, err := s.lookup(ctx, busy.ID); err != nil {
			t.Fatalf("busy session at %s: %v", now.Sub(busy.Created), err)
		}
		now = now.Add(50 * time.Minute)
	}
	if _, err := s.lookup(ctx, busy.ID); err != errNoSession {
		t.Fatalf("session past its maximum age: %v", err)
	}
	if _, err := s.lookup(ctx, "not-a-session"); err != errNoSession {
		t.Fatalf("malformed id: %v", err)
	}
}

// The page's Connect button is the OAuth start route: it accepts the
// session (through the Authenticator's hook) and redirects to Salesforce.
func TestConnectStartAcceptsThePageSession(t *testing.T) {
	r := newOpsRig(t, opsOptions{})
	b := r.browser()
	if resp, _ := b.get(connectHref("acme")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without session: %d", resp.StatusCode)
	}
	b.session()
	_, page := b.get(consolePrefix + "/tenants/acme")
	mustContain(t, "tenant page", page, `href="/oauth/salesforce/start?tenant=acme"`, "Reconnect tenant acme to Salesforce")
	resp, _ := b.get(connectHref("acme"))
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), r.sf.URL()) || loc.Query().Get("code_challenge") == "" {
		t.Fatalf("start with session: %d %s", resp.StatusCode, loc)
	}
	// Following it through the emulator's consent connects the tenant again.
	cb := stopAt(callbackPath)
	cb.Jar = b.hc.Jar
	res, err := cb.Get(loc.String())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res, page := get(t, browser(), res.Header.Get("Location")); res.StatusCode != http.StatusOK || !strings.Contains(page, "is connected") {
		t.Fatalf("callback: %d %s", res.StatusCode, page)
	}
}

// The page works without JavaScript: search, a story, a replay with its
// confirmation, a purge.
func TestPageFormsWorkWithoutJavaScript(t *testing.T) {
	r := newOpsRig(t, opsOptions{})
	r.breakEvents()
	r.start()
	r.activate("pkg-page")
	r.eventually(15*time.Second, "2 dead letters", func() bool { return r.deadLetterCount() == 2 })
	r.stop()
	r.fixEvents()
	r.start()
	b := r.browser()
	csrf := b.session()

	_, page := b.get("/admin/deadletters?tenant=acme")
	mustContain(t, "dead letters", page, "PACKAGE_CREATE", "PACKAGE_ACTIVATE", "pkg-page", "permanent", "Replay every dead letter matching")
	_, page = b.get("/admin/packages?tenant=acme&package=pkg-page")
	mustContain(t, "package story", page, "2 Dead-lettered", "PACKAGE_ACTIVATE was dead-lettered")

	// Replay every dead letter: a dry run first shows the count.
	form := url.Values{"csrf": {csrf}, "tenant": {"acme"}, "source": {"deadletters"}, "package": {"pkg-page"}}
	resp, page := b.post("/admin/replay/preview", form)
	if resp.StatusCode != http.StatusOK || r.deadLetterCount() != 2 {
		t.Fatalf("preview: %d", resp.StatusCode)
	}
	mustContain(t, "confirmation", page, "2 events will be replayed", "Replay 2 events", `name="package" value="pkg-page"`)
	resp, page = b.post("/admin/replay", url.Values{"csrf": {csrfOf(t, page)}, "tenant": {"acme"}, "source": {"deadletters"}, "package": {"pkg-page"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "2 events replayed") {
		t.Fatalf("replay: %d %s", resp.StatusCode, page)
	}
	r.eventually(15*time.Second, "pkg-page SENT", func() bool { return r.status("pkg-page") == "SENT" })
	r.eventually(10*time.Second, "the story says delivered", func() bool {
		_, page = b.get("/admin/packages?tenant=acme&package=pkg-page")
		return strings.Contains(page, "<strong>SENT</strong>") && strings.Contains(page, "2 Delivered")
	})
	_, page = b.get("/admin/events?tenant=acme&source=replay&outcome=delivered")
	mustContain(t, "event search", page, "2 events", "PACKAGE_ACTIVATE", "replay")
	if resp, _ := b.get("/admin/events?tenant=acme&from=garbage"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad search: %d", resp.StatusCode)
	}
	if resp, _ := b.get("/admin/events?tenant=nobody"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown tenant: %d", resp.StatusCode)
	}

	// Purge: nothing left matches, and the confirmation says so.
	resp, page = b.post("/admin/purge/preview", url.Values{"csrf": {csrf}, "tenant": {"acme"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Nothing matches") {
		t.Fatalf("purge preview: %d %s", resp.StatusCode, page)
	}

	// The tenant page: reconcile now; disconnect with its confirmation.
	resp, page = b.post("/admin/tenants/acme/reconcile", url.Values{"csrf": {csrf}, "since": {"1h"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Tenant acme reconciled") {
		t.Fatalf("reconcile: %d %s", resp.StatusCode, page)
	}
	_, page = b.get("/admin/tenants/acme/disconnect")
	mustContain(t, "disconnect confirmation", page, "Disconnect tenant acme?")
	if resp, page := b.post("/admin/tenants/acme/disconnect", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusOK ||
		!strings.Contains(page, "is disconnected") {
		t.Fatalf("disconnect: %d %s", resp.StatusCode, page)
	}
	_, page = b.get("/admin/")
	mustContain(t, "overview after disconnect", page, "Tenant acme: Disconnected.", "Connect tenant acme to Salesforce")
}
