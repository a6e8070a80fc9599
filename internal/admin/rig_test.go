package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/ingest"
	"github.com/countersign/countersign/internal/logging"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/queue"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

const (
	testAdminToken   = "fake-admin-token-0123456789"
	testClientSecret = "fake-client-secret-for-admin-tests"
	testSealKey      = "Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE="
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rig is one listener (admin routes on a real HTTP server, embedded NATS)
// and one emulated Salesforce org for tenant acme; tenant globex exists in
// config only.
type rig struct {
	t      *testing.T
	base   string
	cfg    *config.Config
	q      *queue.Queue
	sf     *sfsandbox.Server
	sealer *auth.Sealer
	logs   *syncBuffer
	m      *metrics.Metrics
}

func newRig(t *testing.T, tweak func(*sfsandbox.Options)) *rig {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()

	o := sfsandbox.DefaultOptions()
	o.ClientSecret = testClientSecret
	o.RedirectURIs = []string{auth.CallbackURL(base)}
	o.AutoApprove = true
	if tweak != nil {
		tweak(&o)
	}
	sf := sfsandbox.NewTestServer(t, o)

	def := config.Default()
	cfg := &def
	cfg.Server.PublicURL = base
	cfg.NATS.StoreDir = t.TempDir()
	cfg.NATS.SyncAlways = false
	cfg.Secrets.Keys = []string{testSealKey}
	cfg.Admin.Tokens = []string{"fake-other-admin-token-abcdef", testAdminToken}
	cfg.Tenants = map[string]*config.Tenant{}
	for _, id := range []string{"acme", "globex"} {
		cfg.Tenants[id] = &config.Tenant{Salesforce: config.Salesforce{LoginURL: sf.URL(), ClientID: o.ClientID,
			ClientSecret: o.ClientSecret, APIVersion: "v62.0", SessionTTL: config.Duration(time.Hour)}}
	}

	r := &rig{t: t, base: base, cfg: cfg, sf: sf, logs: &syncBuffer{}}
	// No secrets list: the test proves the code never logs them, not that
	// the redactor catches them.
	log := logging.New(r.logs, logging.Text, slog.LevelDebug, nil)
	r.q, err = queue.Open(t.Context(), queue.Options{NATS: cfg.NATS, Queue: cfg.Queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.q.Close)
	r.m = metrics.New(prometheus.NewRegistry())
	r.sealer, err = auth.NewSealer(cfg.Secrets.Keys)
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]*auth.Source{}
	var list []*auth.Source
	for _, id := range cfg.TenantIDs() {
		src, err := auth.NewSource(auth.Options{Tenant: id, App: auth.AppFromConfig(cfg.Tenants[id].Salesforce, base),
			Sealer: r.sealer, Tokens: r.q.Tokens(), Tenants: r.q.Tenants(), Metrics: r.m, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		sources[id] = src
		list = append(list, src)
	}
	conn, err := auth.NewConnector(auth.ConnectOptions{OAuth: r.q.OAuth(), Sealer: r.sealer, Sources: list, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Config: cfg, Queue: r.q, Sources: sources, Connector: conn,
		States: auth.NewTenants(r.q.Tenants()), Metrics: r.m, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e, err := ingest.NewEcho(cfg.Server)
	if err != nil {
		t.Fatal(err)
	}
	a.Register(e)
	srv := httptest.NewUnstartedServer(e)
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return r
}

// api calls the admin API with token ("" for none) and returns status and body.
func (r *rig) api(method, path, token string, body any) (int, []byte) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.base+APIPrefix+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (r *rig) tenant(id string) Tenant {
	r.t.Helper()
	code, body := r.api(http.MethodGet, "/tenants/"+id, testAdminToken, nil)
	if code != http.StatusOK {
		r.t.Fatalf("GET tenant %s: %d %s", id, code, body)
	}
	var t Tenant
	if err := json.Unmarshal(body, &t); err != nil {
		r.t.Fatal(err)
	}
	return t
}

// mint asks for a connect link as `listener connect` does.
func (r *rig) mint(id string) TicketAnswer {
	r.t.Helper()
	code, body := r.api(http.MethodPost, "/tenants/"+id+"/connect", testAdminToken, nil)
	if code != http.StatusCreated {
		r.t.Fatalf("mint: %d %s", code, body)
	}
	var a TicketAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		r.t.Fatal(err)
	}
	return a
}

func (r *rig) stored(id string) *auth.TokenSet {
	r.t.Helper()
	ts, _, err := auth.NewStore(r.q.Tokens(), r.sealer).Load(r.t.Context(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return ts
}

// get fetches u with c and returns the final status, URL and body.
func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// browser follows every redirect, as a browser does.
func browser() *http.Client { return &http.Client{Timeout: 10 * time.Second} }

// stopAt is a browser that stops before requesting a URL on path (to keep
// the Salesforce redirect back to the callback in hand).
func stopAt(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == path {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

func noFollow() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s misses %q:\n%s", what, w, body)
		}
	}
}
