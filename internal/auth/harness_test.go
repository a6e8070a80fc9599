package auth

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/countersign/countersign/internal/metrics"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

const (
	testClientID     = "fake-client-id"
	testClientSecret = "fake-client-secret"
	testRedirect     = "http://localhost:8080/oauth/salesforce/callback"
	testRESTPath     = "/services/data/v62.0/query?q=SELECT+Id+FROM+OneSpan_Transaction__c+LIMIT+1"
)

// harness is one org (the sandbox) and the shared KV of a deployment; each
// source() is a replica with its own memory.
type harness struct {
	t      *testing.T
	kv     *testKV
	sf     *sfsandbox.Server
	sealer *Sealer
	m      *metrics.Metrics
	logger *slog.Logger
	app    SalesforceApp
}

func newHarness(t *testing.T, tweak func(*sfsandbox.Options)) *harness {
	t.Helper()
	o := sfsandbox.DefaultOptions()
	o.ClientID, o.ClientSecret = testClientID, testClientSecret
	o.RedirectURIs = []string{testRedirect}
	o.AutoApprove = true
	if tweak != nil {
		tweak(&o)
	}
	sf := sfsandbox.NewTestServer(t, o)
	h := &harness{
		t:      t,
		kv:     newTestKV(t),
		sf:     sf,
		sealer: newSealer(t),
		m:      metrics.New(prometheus.NewRegistry()),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		app: SalesforceApp{LoginURL: sf.URL(), ClientID: testClientID, ClientSecret: testClientSecret,
			RedirectURL: testRedirect, SessionTTL: time.Hour},
	}
	h.m.InitTenant("acme", nil)
	return h
}

func (h *harness) source(tweak func(*Options)) *Source {
	h.t.Helper()
	o := Options{Tenant: "acme", App: h.app, Sealer: h.sealer, Tokens: h.kv.tokens, Tenants: h.kv.tenants,
		Metrics: h.m, Logger: h.logger, LeaseTTL: 5 * time.Second, PollInterval: 5 * time.Millisecond}
	if tweak != nil {
		tweak(&o)
	}
	s, err := NewSource(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// grant mints a grant at the sandbox and imports its refresh token.
func (h *harness) grant(s *Source) (refresh string) {
	h.t.Helper()
	_, refresh = h.sf.IssueTokens("api refresh_token")
	if err := s.Import(context.Background(), refresh, ""); err != nil {
		h.t.Fatal(err)
	}
	return refresh
}

func (h *harness) refreshes(outcome string) float64 {
	return testutil.ToFloat64(h.m.TokenRefreshes.WithLabelValues("acme", outcome))
}

func (h *harness) connected() float64 {
	return testutil.ToFloat64(h.m.TenantConnected.WithLabelValues("acme"))
}

func (h *harness) stored() *TokenSet {
	h.t.Helper()
	ts, _, err := NewStore(h.kv.tokens, h.sealer).Load(context.Background(), "acme")
	if err != nil {
		h.t.Fatal(err)
	}
	return ts
}

// restCall performs one authorized REST call through the source's client.
func restCall(ctx context.Context, c *http.Client, base string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+testRESTPath, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// recorder is a base transport that records what reaches the server.
type recorder struct {
	mu      sync.Mutex
	calls   int
	auths   []string
	bodies  [][]byte
	statuss []int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.auths = append(r.auths, req.Header.Get("Authorization"))
	r.bodies = append(r.bodies, body)
	if resp != nil {
		r.statuss = append(r.statuss, resp.StatusCode)
	}
	return resp, err
}
