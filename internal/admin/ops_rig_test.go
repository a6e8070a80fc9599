package admin

import (
	"context"
	"encoding/json"
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
	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/ingest"
	"github.com/countersign/countersign/internal/logging"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/reconcile"
	"github.com/countersign/countersign/internal/replay"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

// opsRig is one whole listener on loopback: ingest, worker with its
// delivery history, reconciler and the admin routes on one HTTP server,
// an embedded NATS, and emulated OneSpan and Salesforce for tenant acme
// (connected). OneSpan sends its callbacks to the ingest route.
type opsRig struct {
	t     *testing.T
	base  string
	cfg   *config.Config
	q     *queue.Queue
	m     *metrics.Metrics
	sf    *sfsandbox.Server
	os    *ossandbox.Server
	tc    *config.Tenant
	admin *Admin
	logs  *syncBuffer
	log   *slog.Logger
	rec   *history.Recorder
	store *history.Store
	srcs  map[string]*auth.Source
	conn  *auth.Connector

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
	tenant sfpush.Tenant
}

type opsOptions struct {
	publicURL string // default the server's http URL
	tls       bool
}

func newOpsRig(t *testing.T, o opsOptions) *opsRig {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if o.tls {
		scheme = "https"
	}
	base := scheme + "://" + ln.Addr().String()
	def := config.Default()
	cfg := &def
	cfg.Server.PublicURL = base
	if o.publicURL != "" {
		cfg.Server.PublicURL = o.publicURL
	}
	cfg.NATS.StoreDir = t.TempDir()
	cfg.NATS.SyncAlways = false
	cfg.Secrets.Keys = []string{testSealKey}
	cfg.Admin.Tokens = []string{testAdminToken}
	cfg.Worker.AckWait = config.Duration(2 * time.Second)
	cfg.Worker.Backoff = []config.Duration{config.Duration(50 * time.Millisecond), config.Duration(100 * time.Millisecond)}
	cfg.Reconcile.Lookback = config.Duration(48 * time.Hour)

	r := &opsRig{t: t, base: base, cfg: cfg, logs: &syncBuffer{}}
	r.log = logging.New(r.logs, logging.Text, slog.LevelDebug, nil)
	r.q, err = queue.Open(t.Context(), queue.Options{NATS: cfg.NATS, Queue: cfg.Queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.q.Close)
	r.m = metrics.New(prometheus.NewRegistry())
	sealer, err := auth.NewSealer(cfg.Secrets.Keys)
	if err != nil {
		t.Fatal(err)
	}

	sfOpts := sfsandbox.DefaultOptions()
	sfOpts.ClientSecret = testClientSecret
	sfOpts.RedirectURIs = []string{auth.CallbackURL(cfg.Server.PublicURL)}
	sfOpts.AutoApprove = true
	r.sf = sfsandbox.NewTestServer(t, sfOpts)
	r.os = ossandbox.New(ossandbox.Options{APIKeys: []string{"fake-onespan-key-acme"}})
	if _, err := r.os.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.os.Close() })
	r.os.SetCallback(base+"/v1/callbacks/acme", "fake-callback-key-acme", ossandbox.Events)
	r.tc = &config.Tenant{
		CallbackKeys: []string{"fake-callback-key-acme"},
		OneSpan:      config.OneSpan{BaseURL: r.os.URL(), APIKey: "fake-onespan-key-acme"},
		Salesforce: config.Salesforce{LoginURL: r.sf.URL(), ClientID: sfOpts.ClientID, ClientSecret: sfOpts.ClientSecret,
			APIVersion: "v62.0", SessionTTL: config.Duration(time.Hour)},
	}
	config.ApplyTenantDefaults(r.tc)
	cfg.Tenants = map[string]*config.Tenant{"acme": r.tc}

	src, err := auth.NewSource(auth.Options{Tenant: "acme", App: auth.AppFromConfig(r.tc.Salesforce, cfg.Server.PublicURL),
		Sealer: sealer, Tokens: r.q.Tokens(), Tenants: r.q.Tenants(), Metrics: r.m, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	_, refresh := r.sf.IssueTokens("api refresh_token")
	if err := src.Import(t.Context(), refresh, r.sf.URL()); err != nil {
		t.Fatal(err)
	}
	r.srcs = map[string]*auth.Source{"acme": src}
	r.conn, err = auth.NewConnector(auth.ConnectOptions{OAuth: r.q.OAuth(), Sealer: sealer, Sources: []*auth.Source{src}, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	r.tenant, err = sfpush.NewTenant("acme", r.tc, src, r.m, r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.rec = history.NewRecorder(history.RecorderOptions{JetStream: r.q.JetStream(), Packages: r.q.Packages(),
		Retention: cfg.Queue.Retention.D(), Replicas: 1, Logger: r.log})
	r.admin = r.newAdmin()

	e, err := ingest.NewEcho(cfg.Server)
	if err != nil {
		t.Fatal(err)
	}
	ingest.New(ingest.Options{Tenants: cfg.Tenants, MaxBodyBytes: cfg.Server.MaxBodyBytes, Publisher: r.q, Metrics: r.m, Logger: r.log}).Register(e)
	r.admin.Register(e)
	srv := httptest.NewUnstartedServer(e)
	_ = srv.Listener.Close()
	srv.Listener = ln
	if o.tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return r
}

// newAdmin builds an admin side on the rig's NATS, as another replica would.
func (r *opsRig) newAdmin() *Admin {
	r.t.Helper()
	r.store = history.NewStore(r.q.JetStream(), r.q.Packages())
	rp, err := replay.New(replay.Options{JetStream: r.q.JetStream(), Packages: r.q.Packages(), History: r.store, Logger: r.log})
	if err != nil {
		r.t.Fatal(err)
	}
	rc, err := reconcile.New(reconcile.Options{Publisher: r.q, JetStream: r.q.JetStream(), Packages: r.q.Packages(),
		Tenants: []reconcile.Tenant{{ID: "acme", Config: r.tc, OneSpan: r.tenant.OneSpan}},
		Config:  r.cfg.Reconcile, Metrics: r.m, Logger: r.log, Grace: -1})
	if err != nil {
		r.t.Fatal(err)
	}
	a, err := New(Options{Config: r.cfg, Queue: r.q, Sources: r.srcs, Connector: r.conn, States: auth.NewTenants(r.q.Tenants()),
		Metrics: r.m, Logger: r.log, History: r.store, Replayer: rp, Reconciler: rc})
	if err != nil {
		r.t.Fatal(err)
	}
	return a
}

// start runs the worker until stop or the end of the test.
func (r *opsRig) start() {
	r.t.Helper()
	w, err := sfpush.New(sfpush.Options{
		JetStream: r.q.JetStream(), Packages: r.q.Packages(), States: auth.NewTenants(r.q.Tenants()),
		Worker: r.cfg.Worker, Tenants: []sfpush.Tenant{r.tenant}, Metrics: r.m, Logger: r.log,
		FetchWait: 100 * time.Millisecond, GaugeInterval: 100 * time.Millisecond, History: r.rec,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	r.mu.Lock()
	r.cancel, r.done = cancel, done
	r.mu.Unlock()
	r.t.Cleanup(r.stop)
}

func (r *opsRig) stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// breakEvents makes every event a permanent failure (the org lacks the
// event object) until fixEvents; the worker must be stopped meanwhile.
func (r *opsRig) breakEvents() { r.tc.Salesforce.Objects.Event.Name = "No_Such_Object__c" }
func (r *opsRig) fixEvents()   { r.tc.Salesforce.Objects.Event.Name = "OneSpan_Event__c" }

func (r *opsRig) eventually(d time.Duration, what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	logs := r.logs.String()
	if len(logs) > 4000 {
		logs = logs[len(logs)-4000:]
	}
	r.t.Fatalf("timed out waiting for %s\nlogs:\n%s", what, logs)
}

func (r *opsRig) deadLetterCount() uint64 {
	n, _ := sfpush.DeadLetterCount(r.t.Context(), r.q.JetStream(), "acme")
	return n
}

func (r *opsRig) status(pkg string) string {
	rec, _ := r.sf.FindRecord(sfsandbox.ObjTransaction, "Package_Id__c", pkg)
	s, _ := rec["Status__c"].(string)
	return s
}

func (r *opsRig) newPackage(id string) {
	r.t.Helper()
	if err := r.os.CreatePackage(r.t.Context(), ossandbox.Package{ID: id, Name: "pkg " + id,
		Documents: []ossandbox.Document{{ID: "doc-1", Name: "Contract"}},
		Signers:   []ossandbox.Signer{{ID: "signer-1", Email: "s1@example.com"}}}); err != nil {
		r.t.Fatal(err)
	}
}

// activate creates a package and sends it (PACKAGE_CREATE, PACKAGE_ACTIVATE).
func (r *opsRig) activate(id string) {
	r.t.Helper()
	r.newPackage(id)
	if err := r.os.Activate(r.t.Context(), id); err != nil {
		r.t.Fatal(err)
	}
}

// call is the admin API with the admin token; out may be nil.
func (r *opsRig) call(method, path string, body, out any) (int, string) {
	r.t.Helper()
	var rd *strings.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequest(method, r.base+APIPrefix+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client().Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal([]byte(sb.String()), out); err != nil {
			r.t.Fatalf("%s %s: %v\n%s", method, path, err, sb.String())
		}
	}
	return resp.StatusCode, sb.String()
}

// client trusts the rig's TLS certificate when there is one.
func (r *opsRig) client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureLoopback()},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
