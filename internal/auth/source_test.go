package auth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/fault"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// Three replicas (separate Sources, separate memory, one KV bucket) make
// 1,000 authorized calls while the org rotates refresh tokens and ends every
// session after 200 ms. One replica refreshes per expiry; the others reload.
func TestReplicasShareOneRotatingGrantWithoutReplaying(t *testing.T) {
	for _, c := range []struct {
		name       string
		sessionTTL time.Duration // what the sources assume; 1h: they learn of expiry from 401s only
	}{
		{"expiry discovered by 401", time.Hour},
		{"expiry anticipated from issued_at", 200 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			const ttl = 200 * time.Millisecond
			h := newHarness(t, func(o *sfsandbox.Options) {
				o.RotateRefreshTokens = true
				o.AccessTokenTTL = ttl
			})
			h.app.SessionTTL = c.sessionTTL
			replicas := []*Source{h.source(nil), h.source(nil), h.source(nil)}
			h.grant(replicas[0])
			clients := []*http.Client{replicas[0].Client(), replicas[1].Client(), replicas[2].Client()}

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const calls = 1000
			// Pace the calls (one every 2 ms) so the run spans ~10 session expiries.
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			work := make(chan int)
			var failed atomic.Int64
			var firstErr atomic.Value
			var wg sync.WaitGroup
			start := time.Now()
			for range 32 {
				wg.Go(func() {
					for i := range work {
						status, err := restCall(ctx, clients[i%3], h.sf.URL())
						if err != nil || status != http.StatusOK {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, errors.Join(err, errors.New(http.StatusText(status))))
						}
					}
				})
			}
			for i := range calls {
				<-tick.C
				work <- i
			}
			close(work)
			wg.Wait()
			elapsed := time.Since(start)

			if n := failed.Load(); n != 0 {
				t.Fatalf("%d of %d calls failed; first: %v", n, calls, firstErr.Load())
			}
			if n := h.refreshes("invalid_grant"); n != 0 {
				t.Fatalf("invalid_grant refreshes: %v", n)
			}
			refreshCalls := h.sf.TokenCalls("refresh_token")
			// Each token lives 200 ms and is replaced only once it is (nearly)
			// over: at most one refresh per expiry, plus the first one.
			expiries := int(elapsed / (ttl - ttl/10))
			t.Logf("%d calls in %v: %d refresh calls for ~%d expiries", calls, elapsed.Round(time.Millisecond), refreshCalls, expiries)
			if refreshCalls > expiries+3 {
				t.Fatalf("%d refresh calls for %d expiries: replicas refreshed independently", refreshCalls, expiries)
			}
			if refreshCalls < 3 {
				t.Fatalf("only %d refreshes: the run did not exercise expiry", refreshCalls)
			}
			if got := h.refreshes("success"); int(got) != refreshCalls {
				t.Fatalf("success metric %v, token endpoint saw %d refreshes", got, refreshCalls)
			}
			ts := h.stored()
			if !h.sf.RefreshTokenValid(ts.RefreshToken) || ts.Lease != nil || ts.Generation != uint64(refreshCalls)+1 {
				t.Fatalf("stored grant: live=%v lease=%v generation=%d", h.sf.RefreshTokenValid(ts.RefreshToken), ts.Lease, ts.Generation)
			}
			if h.connected() != 1 {
				t.Fatalf("connected gauge = %v", h.connected())
			}
		})
	}
}

// A restarted replica picks up the rotated refresh token from KV: the
// bootstrap token in its config is dead and must not be replayed.
func TestRestartedSourceUsesRotatedTokenFromKV(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, func(o *sfsandbox.Options) { o.RotateRefreshTokens = true })
	_, bootstrap := h.sf.IssueTokens("api refresh_token")
	h.app.BootstrapRefreshToken = bootstrap
	first := h.source(nil)
	if _, _, err := first.Token(ctx); err != nil {
		t.Fatal(err)
	}
	rotated := h.stored().RefreshToken
	if rotated == bootstrap || h.sf.RefreshTokenValid(bootstrap) || !h.sf.RefreshTokenValid(rotated) {
		t.Fatal("the bootstrap token was not rotated")
	}
	h.sf.ExpireAccessTokens()

	restarted := h.source(nil) // same config, bootstrap token included
	status, err := restCall(ctx, restarted.Client(), h.sf.URL())
	if err != nil || status != http.StatusOK {
		t.Fatalf("call after restart: %d %v", status, err)
	}
	if h.refreshes("invalid_grant") != 0 || h.sf.TokenCalls("refresh_token") != 2 {
		t.Fatalf("invalid_grant=%v refresh calls=%d", h.refreshes("invalid_grant"), h.sf.TokenCalls("refresh_token"))
	}
	if !h.sf.RefreshTokenValid(h.stored().RefreshToken) {
		t.Fatal("grant died")
	}
}

func TestRevokedGrantMarksTenantNeedsReconnect(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	s := h.source(nil)
	h.grant(s)
	if status, err := restCall(ctx, s.Client(), h.sf.URL()); err != nil || status != 200 {
		t.Fatalf("first call: %d %v", status, err)
	}
	h.sf.RevokeAll() // the org admin revokes the app

	_, err := restCall(ctx, s.Client(), h.sf.URL())
	if !fault.Is(err, fault.Reconnect) {
		t.Fatalf("error class %v (%v), want reconnect", fault.ClassOf(err), err)
	}
	if !strings.Contains(err.Error(), "acme") || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("error does not say which tenant and why: %v", err)
	}
	st, _, err := NewTenants(h.kv.tenants).Get(ctx, "acme")
	if err != nil || st.State != StateNeedsReconnect || !strings.Contains(st.Reason, "invalid_grant") {
		t.Fatalf("tenant state %+v %v", st, err)
	}
	if h.connected() != 0 || h.refreshes("invalid_grant") != 1 {
		t.Fatalf("connected=%v invalid_grant=%v", h.connected(), h.refreshes("invalid_grant"))
	}
	// Other replicas, and later calls, do not hammer the token endpoint.
	calls := h.sf.TokenCalls("refresh_token")
	if _, _, err := h.source(nil).Token(ctx); !fault.Is(err, fault.Reconnect) {
		t.Fatalf("another replica: %v", err)
	}
	if h.sf.TokenCalls("refresh_token") != calls {
		t.Fatal("a dead grant was refreshed again")
	}
	// A new grant (import) clears needs_reconnect.
	h.grant(s)
	if st, _, _ := NewTenants(h.kv.tenants).Get(ctx, "acme"); st.State != StateConnected || h.connected() != 1 {
		t.Fatalf("after import: %+v connected=%v", st, h.connected())
	}
	if status, err := restCall(ctx, s.Client(), h.sf.URL()); err != nil || status != 200 {
		t.Fatalf("call after import: %d %v", status, err)
	}
}

// An RFC 6749 provider (like Canvas LMS): expires_in, no issued_at, no
// instance_url, no rotation. The source refreshes before expiry and keeps the
// refresh token.
func TestRFC6749ProviderWorks(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, func(o *sfsandbox.Options) {
		o.RFC6749Style = true
		o.AccessTokenTTL = time.Second
	})
	h.app.InstanceURL = h.sf.URL() // no instance_url in the answers
	s := h.source(nil)
	refresh := h.grant(s)
	access, instance, err := s.Token(ctx)
	if err != nil || instance != h.sf.URL() {
		t.Fatalf("Token: %q %v", instance, err)
	}
	ts := h.stored()
	if ts.RefreshToken != refresh || ts.Expiry.After(time.Now().Add(1500*time.Millisecond)) {
		t.Fatalf("refresh token kept=%v expiry in %v", ts.RefreshToken == refresh, time.Until(ts.Expiry))
	}
	eventually(t, 5*time.Second, func() bool { return !ts.usable(time.Now(), s.margin) }, "the token to near its expires_in")
	next, _, err := s.Token(ctx)
	if err != nil || next == access {
		t.Fatalf("no proactive refresh: same=%v %v", next == access, err)
	}
	if status, err := restCall(ctx, s.Client(), h.sf.URL()); err != nil || status != 200 {
		t.Fatalf("call: %d %v", status, err)
	}
	if h.sf.TokenCalls("refresh_token") != 2 || h.stored().RefreshToken != refresh || h.refreshes("success") != 2 {
		t.Fatalf("refresh calls %d, refresh token kept %v", h.sf.TokenCalls("refresh_token"), h.stored().RefreshToken == refresh)
	}
}

func TestInvalidSessionRefreshesOnceAndReplaysOnce(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	rec := &recorder{}
	s := h.source(func(o *Options) { o.Transport = rec })
	h.grant(s)
	if _, _, err := s.Token(ctx); err != nil {
		t.Fatal(err)
	}
	h.sf.ExpireAccessTokens()
	before := h.sf.TokenCalls("refresh_token")

	body := `{"Status__c":"COMPLETED"}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, h.sf.URL()+"/services/data/v62.0/sobjects/OneSpan_Transaction__c/Package_Id__c/p1", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Custom", "kept")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("replayed upsert answered %d, want 201", resp.StatusCode)
	}
	if got := h.sf.TokenCalls("refresh_token") - before; got != 1 {
		t.Fatalf("%d refreshes, want 1", got)
	}
	if rec.calls != 2 || rec.statuss[0] != http.StatusUnauthorized || rec.auths[0] == rec.auths[1] {
		t.Fatalf("attempts %d statuses %v, want a 401 then one replay with a new token", rec.calls, rec.statuss)
	}
	for i, b := range rec.bodies {
		if string(b) != body {
			t.Fatalf("attempt %d body %q", i, b)
		}
	}
	if req.Header.Get("Authorization") != "" {
		t.Fatal("the caller's request was modified")
	}
}

func TestInvalidSessionWithUnreplayableBodyIsRetryable(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	rec := &recorder{}
	s := h.source(func(o *Options) { o.Transport = rec })
	h.grant(s)
	if _, _, err := s.Token(ctx); err != nil {
		t.Fatal(err)
	}
	h.sf.ExpireAccessTokens()
	before := h.sf.TokenCalls("refresh_token")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.sf.URL()+"/services/data/v62.0/sobjects/ContentVersion",
		io.NopCloser(bytes.NewReader([]byte("streamed pdf")))) // a stream: no GetBody
	_, err := s.Client().Do(req)
	if !fault.Is(err, fault.Retryable) || !strings.Contains(err.Error(), "retried from its source") {
		t.Fatalf("err = %v (class %v)", err, fault.ClassOf(err))
	}
	if rec.calls != 1 || h.sf.TokenCalls("refresh_token")-before != 1 {
		t.Fatalf("attempts %d refreshes %d", rec.calls, h.sf.TokenCalls("refresh_token")-before)
	}
	// The retry from the source finds a good token without another refresh.
	if status, err := restCall(ctx, s.Client(), h.sf.URL()); err != nil || status != 200 || h.sf.TokenCalls("refresh_token")-before != 1 {
		t.Fatalf("retry: %d %v", status, err)
	}
}

// Invalidate refreshes only when the stored token is still the rejected one.
func TestInvalidateAfterAnotherReplicaRefreshedOnlyReloads(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	a, b := h.source(nil), h.source(nil)
	h.grant(a)
	t1, _, err := a.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if t, _, _ := b.Token(ctx); t != t1 {
		panic("replicas disagree")
	}
	h.sf.ExpireAccessTokens()
	if err := b.Invalidate(ctx, t1); err != nil {
		t.Fatal(err)
	}
	calls := h.sf.TokenCalls("refresh_token")
	if err := a.Invalidate(ctx, t1); err != nil {
		t.Fatal(err)
	}
	t2, _, _ := a.Token(ctx)
	if h.sf.TokenCalls("refresh_token") != calls || t2 == t1 || !h.sf.AccessTokenValid(t2) {
		t.Fatalf("second invalidate refreshed again (%d -> %d) or kept the old token", calls, h.sf.TokenCalls("refresh_token"))
	}
}

// A replica that crashed holding the lease blocks the others only until the
// lease expires.
func TestCrashedLeaseHolderDoesNotBlockForever(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	s := h.source(func(o *Options) { o.LeaseTTL = time.Second })
	h.grant(s)
	store := NewStore(h.kv.tokens, h.sealer)
	ts, rev, err := store.Load(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(300 * time.Millisecond)
	ts.Lease = &Lease{Holder: "crashed", Until: until}
	if _, err := store.Save(ctx, "acme", ts, rev); err != nil {
		t.Fatal(err)
	}
	access, _, err := s.Token(ctx)
	if err != nil || access == "" {
		t.Fatal(err)
	}
	if time.Now().Before(until) {
		t.Fatal("refreshed while another replica held the lease")
	}
	if h.sf.TokenCalls("refresh_token") != 1 || h.stored().Lease != nil {
		t.Fatalf("refresh calls %d lease %v", h.sf.TokenCalls("refresh_token"), h.stored().Lease)
	}
}

func TestBootstrapTokenIsUsedOnceAndNotAfterDisconnect(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, func(o *sfsandbox.Options) { o.RotateRefreshTokens = false })
	if _, _, err := h.source(nil).Token(ctx); !fault.Is(err, fault.Reconnect) {
		t.Fatalf("no grant at all: %v", err)
	}
	_, bootstrap := h.sf.IssueTokens("api refresh_token")
	h.app.BootstrapRefreshToken = bootstrap
	s := h.source(nil)
	if _, _, err := s.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if h.sf.RefreshTokenValid(bootstrap) {
		t.Fatal("disconnect did not revoke at salesforce")
	}
	if _, _, err := NewStore(h.kv.tokens, h.sealer).Load(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tokens still stored: %v", err)
	}
	st, _, _ := NewTenants(h.kv.tenants).Get(ctx, "acme")
	if st.State != StateDisconnected || h.connected() != 0 {
		t.Fatalf("state %+v connected %v", st, h.connected())
	}
	calls := h.sf.TokenCalls("refresh_token")
	if _, _, err := h.source(nil).Token(ctx); !fault.Is(err, fault.Reconnect) || h.sf.TokenCalls("refresh_token") != calls {
		t.Fatalf("bootstrap reused after disconnect: %v", err)
	}
}

// flakyTransport fails every request while down is set, like an unreachable
// token endpoint.
type flakyTransport struct {
	down  atomic.Bool
	tries atomic.Int64
}

func (f *flakyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.tries.Add(1)
	if f.down.Load() {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("dial tcp: connection refused")
	}
	return http.DefaultTransport.RoundTrip(req)
}

func TestUnreachableTokenEndpointIsRetryableAndReleasesTheLease(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	ft := &flakyTransport{}
	s := h.source(func(o *Options) { o.HTTPClient = &http.Client{Transport: ft} })
	h.grant(s)
	ft.down.Store(true)
	_, _, err := s.Token(ctx)
	if !fault.Is(err, fault.Retryable) || !strings.Contains(err.Error(), "acme") {
		t.Fatalf("err = %v (class %v)", err, fault.ClassOf(err))
	}
	if _, _, err := s.Token(ctx); err == nil || ft.tries.Load() != 1 {
		t.Fatalf("a second caller right after the failure hit the endpoint again (%d tries)", ft.tries.Load())
	}
	if h.refreshes("error") != 1 || h.refreshes("invalid_grant") != 0 || h.stored().Lease != nil {
		t.Fatalf("error=%v invalid_grant=%v lease=%v", h.refreshes("error"), h.refreshes("invalid_grant"), h.stored().Lease)
	}
	if st, _, _ := NewTenants(h.kv.tenants).Get(ctx, "acme"); st.State == StateNeedsReconnect {
		t.Fatal("a transient failure asked for a reconnect")
	}
	// Another replica is not blocked by the failed one.
	other := h.source(nil)
	if _, _, err := other.Token(ctx); err != nil {
		t.Fatal(err)
	}
	ft.down.Store(false)
	eventually(t, 5*time.Second, func() bool { _, _, err := s.Token(ctx); return err == nil }, "recovery after the cooldown")
}

// A replica whose clock runs ahead does not take a live lease over at once.
func TestLeaseIsRespectedDespiteClockSkew(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	const leaseTTL = time.Second
	skewed := h.source(func(o *Options) {
		o.LeaseTTL = leaseTTL
		o.Now = func() time.Time { return time.Now().Add(1500 * time.Millisecond) }
	})
	h.grant(skewed)
	store := NewStore(h.kv.tokens, h.sealer)
	ts, rev, _ := store.Load(ctx, "acme")
	start := time.Now()
	ts.Lease = &Lease{Holder: "busy", Until: start.Add(leaseTTL)} // by the holder's (true) clock
	if _, err := store.Save(ctx, "acme", ts, rev); err != nil {
		t.Fatal(err)
	}
	if _, _, err := skewed.Token(ctx); err != nil {
		t.Fatal(err)
	}
	// By its own clock the lease was over on arrival; it must still have
	// waited past the time the holder's token call is bounded by (TTL/2).
	if waited := time.Since(start); waited < leaseTTL/2-50*time.Millisecond {
		t.Fatalf("took the lease over after %v", waited)
	}
}

// gateTransport holds token-endpoint requests until released and records the
// refresh tokens it sees answered.
type gateTransport struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	issued  []string
}

func (g *gateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/token") {
		g.entered <- struct{}{}
		<-g.release
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/token") {
		return resp, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if i := strings.Index(string(b), `"refresh_token":"`); i >= 0 {
		g.mu.Lock()
		g.issued = append(g.issued, strings.SplitN(string(b)[i+17:], `"`, 2)[0])
		g.mu.Unlock()
	}
	return resp, nil
}

// Disconnect while another replica is refreshing: it waits for the refresh
// and revokes the rotated (live) token, not the rotated-out one.
func TestDisconnectDuringAnotherReplicasRefreshRevokesTheLiveToken(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, func(o *sfsandbox.Options) { o.RotateRefreshTokens = true })
	gate := &gateTransport{entered: make(chan struct{}, 1), release: make(chan struct{})}
	a := h.source(func(o *Options) { o.HTTPClient = &http.Client{Transport: gate} })
	first := h.grant(a)
	refreshed := make(chan error, 1)
	go func() { _, _, err := a.Token(ctx); refreshed <- err }()
	<-gate.entered // a holds the lease and is at the token endpoint

	waiting := make(chan struct{})
	var once sync.Once
	b := h.source(func(o *Options) {
		o.Now = func() time.Time { once.Do(func() { close(waiting) }); return time.Now() }
	})
	disconnected := make(chan error, 1)
	go func() { disconnected <- b.Disconnect(ctx) }()
	<-waiting // b has read the leased record
	close(gate.release)
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	if err := <-disconnected; err != nil {
		t.Fatal(err)
	}
	gate.mu.Lock()
	defer gate.mu.Unlock()
	if len(gate.issued) != 1 {
		t.Fatalf("%d refresh tokens issued", len(gate.issued))
	}
	if h.sf.RefreshTokenValid(gate.issued[0]) || h.sf.RefreshTokenValid(first) {
		t.Fatal("a refresh token is still live at salesforce after disconnect")
	}
	if _, _, err := NewStore(h.kv.tokens, h.sealer).Load(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tokens still stored: %v", err)
	}
}
