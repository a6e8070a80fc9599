package admin

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/auth"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// The whole flow as an operator lives it: `listener connect` mints a link,
// a browser opens it, follows our 302 to Salesforce's authorize page (which
// approves by itself here), follows Salesforce's 302 back to our callback,
// and the page and the API say connected.
func TestConnectLinkConnectsTheTenantThroughRealRedirects(t *testing.T) {
	r := newRig(t, nil)
	before := r.tenant("acme")
	if before.State != StateNeverConnected || before.Grant.Stored {
		t.Fatalf("before: %+v", before)
	}
	link := r.mint("acme")
	if !strings.HasPrefix(link.URL, r.base+"/oauth/salesforce/start?") || time.Until(link.ExpiresAt) > 10*time.Minute+time.Second ||
		time.Until(link.ExpiresAt) < 9*time.Minute {
		t.Fatalf("link %+v", link)
	}
	resp, body := get(t, browser(), link.URL)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != callbackPath {
		t.Fatalf("landed on %s with %d:\n%s", resp.Request.URL.Path, resp.StatusCode, body)
	}
	mustContain(t, "result page", body, "Tenant acme is connected to Salesforce", r.sf.URL(), `<html lang="en">`)
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q", got)
	}
	if n := r.sf.TokenCalls("authorization_code"); n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}

	after := r.tenant("acme")
	if after.State != auth.StateConnected || !after.Grant.Usable || after.Grant.InstanceURL != r.sf.URL() ||
		after.Grant.ConnectedAt == nil || after.Grant.TokenAgeSeconds == nil || after.LastConnect == nil || !after.LastConnect.Connected {
		t.Fatalf("after: %+v", after)
	}
	if !r.sf.RefreshTokenValid(r.stored("acme").RefreshToken) {
		t.Fatal("stored refresh token is not live at salesforce")
	}
	if other := r.tenant("globex"); other.State != StateNeverConnected || other.Grant.Stored {
		t.Fatalf("globex changed: %+v", other)
	}
}

var requestID = regexp.MustCompile(`name="request_id" value="([^"]+)"`)

// consent opens link in a browser up to Salesforce's consent page and submits
// decision there; it returns the page the browser ends on.
func consent(t *testing.T, r *rig, link, decision string) (*http.Response, string) {
	t.Helper()
	resp, body := get(t, browser(), link)
	m := requestID.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Allow Access?") || m == nil {
		t.Fatalf("consent page: %d\n%s", resp.StatusCode, body)
	}
	resp, err := browser().PostForm(r.sf.URL()+"/services/oauth2/authorize", url.Values{"request_id": {m[1]}, "decision": {decision}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestConnectWithConsentPageAllowAndDeny(t *testing.T) {
	r := newRig(t, func(o *sfsandbox.Options) { o.AutoApprove = false })

	resp, body := consent(t, r, r.mint("acme").URL, "deny")
	if resp.StatusCode != http.StatusForbidden || resp.Request.URL.Path != callbackPath {
		t.Fatalf("deny: %d at %s\n%s", resp.StatusCode, resp.Request.URL.Path, body)
	}
	mustContain(t, "denied page", body, "not granted", "listener connect --tenant acme")
	denied := r.tenant("acme")
	if denied.State != StateNeverConnected || denied.Grant.Stored || denied.LastConnect == nil ||
		denied.LastConnect.Connected || !strings.Contains(denied.LastConnect.Error, "denied") {
		t.Fatalf("after deny: %+v %+v", denied, denied.LastConnect)
	}
	if r.sf.TokenCalls("authorization_code") != 0 {
		t.Fatal("a denied flow called the token endpoint")
	}

	resp, body = consent(t, r, r.mint("acme").URL, "allow")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("allow: %d\n%s", resp.StatusCode, body)
	}
	mustContain(t, "allow page", body, "Tenant acme is connected to Salesforce")
	if got := r.tenant("acme"); got.State != auth.StateConnected || !got.LastConnect.Connected {
		t.Fatalf("after allow: %+v", got)
	}
}

// A callback can be used once; one that matches no flow in progress gets a
// clear page and changes nothing.
func TestCallbackReplayedOrForeignStateIsRefused(t *testing.T) {
	r := newRig(t, nil)
	resp, _ := get(t, stopAt(callbackPath), r.mint("acme").URL)
	cb := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(cb, r.base+callbackPath+"?") {
		t.Fatalf("salesforce answered %d to %q", resp.StatusCode, cb)
	}
	resp, body := get(t, browser(), cb)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first callback: %d\n%s", resp.StatusCode, body)
	}
	resp, body = get(t, browser(), cb)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d\n%s", resp.StatusCode, body)
	}
	mustContain(t, "replay page", body, "cannot be used", "already used")
	for _, q := range []string{"?state=not-a-flow&code=abc", "?code=abc", "", "?state=x*y&error=access_denied"} {
		resp, body := get(t, browser(), r.base+callbackPath+q)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "cannot be used") {
			t.Errorf("callback%s: %d\n%s", q, resp.StatusCode, body)
		}
	}
	if n := r.sf.TokenCalls("authorization_code"); n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
	if got := r.tenant("acme"); got.State != auth.StateConnected {
		t.Fatalf("a refused callback changed the tenant: %+v", got)
	}
}

// A code exchange that fails at Salesforce gives an error page, stores
// nothing and says so to the API.
func TestCallbackTokenErrorStoresNothing(t *testing.T) {
	r := newRig(t, nil)
	r.sf.FailNextToken(sfsandbox.FaultServerError)
	resp, body := get(t, browser(), r.mint("acme").URL)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("%d\n%s", resp.StatusCode, body)
	}
	mustContain(t, "token error page", body, "could not be completed", "server_error")
	if got := r.tenant("acme"); got.Grant.Stored || got.State == auth.StateConnected || got.LastConnect.Connected {
		t.Fatalf("after a failed exchange: %+v", got)
	}
}

func TestStartNeedsAnOperatorOrAnUnusedTicket(t *testing.T) {
	r := newRig(t, nil)
	link := r.mint("acme")
	resp, _ := get(t, noFollow(), link.URL)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), r.sf.URL()+"/services/oauth2/authorize?") {
		t.Fatalf("first use: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, reused := get(t, noFollow(), link.URL)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reused ticket: %d", resp.StatusCode)
	}
	mustContain(t, "reused ticket page", reused, "cannot be used")

	// A ticket for acme opens nothing for globex, and says nothing more than
	// a made-up ticket does.
	u, _ := url.Parse(r.mint("acme").URL)
	q := u.Query()
	q.Set("tenant", "globex")
	u.RawQuery = q.Encode()
	resp, foreign := get(t, noFollow(), u.String())
	if resp.StatusCode != http.StatusUnauthorized || foreign != reused {
		t.Fatalf("foreign ticket: %d\n%s", resp.StatusCode, foreign)
	}
	for _, q := range []string{"?tenant=acme", "?tenant=acme&ticket=" + strings.Repeat("A", 43), "?tenant=nobody&ticket=short"} {
		resp, body := get(t, noFollow(), r.base+startPath+q)
		if resp.StatusCode != http.StatusUnauthorized || body != reused {
			t.Errorf("start%s: %d\n%s", q, resp.StatusCode, body)
		}
	}

	// An operator's bearer token is enough; a wrong one is not.
	for token, want := range map[string]int{testAdminToken: http.StatusFound, "fake-wrong-admin-token": http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodGet, r.base+startPath+"?tenant=acme", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := noFollow().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("bearer start: %d, want %d", resp.StatusCode, want)
		}
	}
}
