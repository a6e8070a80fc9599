package sfpush

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
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
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// The rig is the whole path over real HTTP on loopback: the OneSpan
// emulator sends callbacks to the ingest endpoint, which stores them on an
// embedded NATS; the worker delivers them to the Salesforce emulator.

const testSealKey = "Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE=" // test only

type rigTenant struct {
	id     string
	cfg    *config.Tenant
	sf     *sfsandbox.Server
	os     *ossandbox.Server
	src    *auth.Source
	tenant Tenant
	key    string
}

type rig struct {
	t       *testing.T
	q       *queue.Queue
	m       *metrics.Metrics
	cfg     config.Config
	sealer  *auth.Sealer
	ingest  string
	tenants map[string]*rigTenant
	logs    *syncBuffer

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

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

type rigOpts struct {
	tenants      []string
	dupWindow    time.Duration
	sfOptions    func(*sfsandbox.Options)
	worker       func(*config.Worker)
	storeContent int64
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	if len(o.tenants) == 0 {
		o.tenants = []string{"acme"}
	}
	cfg := config.Default()
	cfg.NATS.StoreDir = t.TempDir()
	cfg.NATS.SyncAlways = false
	if o.dupWindow > 0 {
		cfg.Queue.DuplicateWindow = config.Duration(o.dupWindow)
	}
	cfg.Worker.AckWait = config.Duration(2 * time.Second)
	cfg.Worker.Backoff = []config.Duration{config.Duration(50 * time.Millisecond), config.Duration(100 * time.Millisecond), config.Duration(200 * time.Millisecond)}
	cfg.Worker.MaxDeliver = 30
	if o.worker != nil {
		o.worker(&cfg.Worker)
	}
	r := &rig{t: t, cfg: cfg, tenants: map[string]*rigTenant{}, logs: &syncBuffer{}}
	log := logging.New(r.logs, logging.Text, slog.LevelDebug, nil)
	q, err := queue.Open(t.Context(), queue.Options{NATS: cfg.NATS, Queue: cfg.Queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	r.q = q
	r.m = metrics.New(prometheus.NewRegistry())
	r.sealer, err = auth.NewSealer([]string{testSealKey})
	if err != nil {
		t.Fatal(err)
	}

	e, err := ingest.NewEcho(cfg.Server)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	r.ingest = ts.URL

	cfg.Tenants = map[string]*config.Tenant{}
	for _, id := range o.tenants {
		sfOpts := sfsandbox.DefaultOptions()
		sfOpts.StoreContentBytesUpTo = o.storeContent
		if o.sfOptions != nil {
			o.sfOptions(&sfOpts)
		}
		sf := sfsandbox.NewTestServer(t, sfOpts)
		os := ossandbox.New(ossandbox.Options{APIKeys: []string{"fake-onespan-key-" + id}})
		if _, err := os.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Close() })
		key := "fake-callback-key-" + id
		os.SetCallback(ts.URL+"/v1/callbacks/"+id, key, ossandbox.Events)
		tc := &config.Tenant{
			CallbackKeys: []string{key},
			OneSpan:      config.OneSpan{BaseURL: os.URL(), APIKey: "fake-onespan-key-" + id},
			Salesforce: config.Salesforce{LoginURL: sf.URL(), ClientID: sfOpts.ClientID, ClientSecret: sfOpts.ClientSecret,
				APIVersion: "v62.0", SessionTTL: config.Duration(time.Hour)},
		}
		config.ApplyTenantDefaults(tc)
		cfg.Tenants[id] = tc
		src, err := auth.NewSource(auth.Options{Tenant: id, App: auth.AppFromConfig(tc.Salesforce, cfg.Server.PublicURL),
			Sealer: r.sealer, Tokens: q.Tokens(), Tenants: q.Tenants(), Metrics: r.m, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		_, refresh := sf.IssueTokens("api refresh_token")
		if err := src.Import(t.Context(), refresh, sf.URL()); err != nil {
			t.Fatal(err)
		}
		tenant, err := NewTenant(id, tc, src, r.m, log)
		if err != nil {
			t.Fatal(err)
		}
		r.tenants[id] = &rigTenant{id: id, cfg: tc, sf: sf, os: os, src: src, tenant: tenant, key: key}
	}
	ingest.New(ingest.Options{Tenants: cfg.Tenants, MaxBodyBytes: cfg.Server.MaxBodyBytes, Publisher: q, Metrics: r.m, Logger: log}).Register(e)
	r.cfg = cfg
	return r
}

// start runs a worker until stop (or the test) ends it.
func (r *rig) start() {
	r.t.Helper()
	var tenants []Tenant
	for _, id := range r.cfg.TenantIDs() {
		tenants = append(tenants, r.tenants[id].tenant)
	}
	w, err := New(Options{
		JetStream: r.q.JetStream(), Packages: r.q.Packages(), States: auth.NewTenants(r.q.Tenants()), BatchStateWrites: true,
		Worker: r.cfg.Worker, Tenants: tenants, Metrics: r.m,
		Logger:        logging.New(r.logs, logging.Text, slog.LevelDebug, nil),
		FetchWait:     100 * time.Millisecond,
		GaugeInterval: 100 * time.Millisecond,
		LeaseTTL:      3 * time.Second,
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

func (r *rig) stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// eventually polls cond until it holds or the deadline passes.
func (r *rig) eventually(d time.Duration, what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	logs := r.logs.String()
	if os.Getenv("RIG_FULL_LOGS") == "" {
		logs = tail(logs, 4000)
	}
	r.t.Fatalf("timed out waiting for %s\nlogs (RIG_FULL_LOGS=1 for all):\n%s", what, logs)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

func (rt *rigTenant) transaction(pkg string) sfsandbox.Record {
	rec, _ := rt.sf.FindRecord(sfsandbox.ObjTransaction, "Package_Id__c", pkg)
	return rec
}

func (rt *rigTenant) status(pkg string) string {
	s, _ := rt.transaction(pkg)["Status__c"].(string)
	return s
}

func (rt *rigTenant) events(pkg string) int {
	txn := rt.transaction(pkg)
	if txn == nil {
		return 0
	}
	return len(rt.sf.FindRecords(sfsandbox.ObjEvent, "Transaction__c", txn["Id"]))
}

func (rt *rigTenant) newPackage(t *testing.T, id string, docs ...ossandbox.Document) {
	t.Helper()
	if len(docs) == 0 {
		docs = []ossandbox.Document{{ID: "doc-1", Name: "Contract"}, {ID: "doc-2", Name: "Annex"}}
	}
	if err := rt.os.CreatePackage(t.Context(), ossandbox.Package{ID: id, Name: "pkg " + id, Documents: docs,
		Signers: []ossandbox.Signer{{ID: "signer-1", Email: "s1@example.com"}}}); err != nil {
		t.Fatal(err)
	}
}

// completePackage drives a package through the usual life.
func (rt *rigTenant) completePackage(t *testing.T, id string) {
	t.Helper()
	ctx := t.Context()
	rt.newPackage(t, id)
	for _, step := range []func() error{
		func() error { return rt.os.Activate(ctx, id) },
		func() error { return rt.os.SignDocument(ctx, id, "doc-1", "signer-1") },
		func() error { return rt.os.SignDocument(ctx, id, "doc-2", "signer-1") },
		func() error { return rt.os.SignerComplete(ctx, id, "signer-1") },
		func() error { return rt.os.Complete(ctx, id) },
	} {
		if err := step(); err != nil {
			t.Fatalf("package %s: %v", id, err)
		}
	}
}

func docKey(pkg, doc string) string { return fmt.Sprintf("%s/%s", pkg, doc) }

func mustSource(t *testing.T, r *rig, id string) *auth.Source {
	t.Helper()
	rt := r.tenants[id]
	src, err := auth.NewSource(auth.Options{Tenant: id, App: auth.AppFromConfig(rt.cfg.Salesforce, r.cfg.Server.PublicURL),
		Sealer: r.sealer, Tokens: r.q.Tokens(), Tenants: r.q.Tenants(), Metrics: r.m})
	if err != nil {
		t.Fatal(err)
	}
	return src
}
