// Package pipeline is the whole delivery path on loopback for end-to-end
// tests: the OneSpan emulator sends callbacks over HTTP to the ingest
// endpoint, which stores them on an embedded NATS; a worker, with its
// delivery history, delivers them to the Salesforce emulator.
//
// Only tests import it (it lives under internal/sandbox for that reason).
package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/ingest"
	"github.com/countersign/countersign/internal/logging"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/queue"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

const sealKey = "Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE=" // test only

// Options tune a rig; the zero value is one tenant, acme.
type Options struct {
	Tenants         []string      // default acme
	DuplicateWindow time.Duration // default the config default
	Salesforce      func(*sfsandbox.Options)
	Worker          func(*config.Worker)
	StoreContent    int64         // sfsandbox StoreContentBytesUpTo
	LeaseTTL        time.Duration // default the worker's
}

// Tenant is one tenant's emulators, config and delivery clients.
type Tenant struct {
	ID     string
	Config *config.Tenant
	SF     *sfsandbox.Server
	OS     *ossandbox.Server
	Source *auth.Source
	Tenant sfpush.Tenant
	Key    string // callback key
}

// Rig is one listener's ingest and worker with their emulators.
type Rig struct {
	Queue    *queue.Queue
	Metrics  *metrics.Metrics
	Config   config.Config
	Sealer   *auth.Sealer
	Ingest   string // base URL of the ingest server
	Tenants  map[string]*Tenant
	Logs     *Logs
	Recorder *history.Recorder

	t        testing.TB
	leaseTTL time.Duration
	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan error
}

// Logs collects the rig's log output; safe for concurrent use.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Logs) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Logs) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// New builds a rig whose tenants are connected; Start runs its worker.
func New(t testing.TB, o Options) *Rig {
	t.Helper()
	if len(o.Tenants) == 0 {
		o.Tenants = []string{"acme"}
	}
	cfg := config.Default()
	cfg.NATS.StoreDir = t.TempDir()
	cfg.NATS.SyncAlways = false
	if o.DuplicateWindow > 0 {
		cfg.Queue.DuplicateWindow = config.Duration(o.DuplicateWindow)
	}
	cfg.Worker.AckWait = config.Duration(2 * time.Second)
	cfg.Worker.Backoff = []config.Duration{config.Duration(50 * time.Millisecond), config.Duration(100 * time.Millisecond), config.Duration(200 * time.Millisecond)}
	cfg.Worker.MaxDeliver = 30
	if o.Worker != nil {
		o.Worker(&cfg.Worker)
	}
	r := &Rig{t: t, Config: cfg, Tenants: map[string]*Tenant{}, Logs: &Logs{}, leaseTTL: o.LeaseTTL}
	log := logging.New(r.Logs, logging.Text, slog.LevelDebug, nil)
	q, err := queue.Open(t.Context(), queue.Options{NATS: cfg.NATS, Queue: cfg.Queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	r.Queue = q
	r.Metrics = metrics.New(prometheus.NewRegistry())
	r.Sealer, err = auth.NewSealer([]string{sealKey})
	if err != nil {
		t.Fatal(err)
	}
	r.Recorder = history.NewRecorder(history.RecorderOptions{JetStream: q.JetStream(), Packages: q.Packages(),
		Retention: cfg.Queue.Retention.D(), Replicas: 1, Logger: logging.New(r.Logs, logging.Text, slog.LevelDebug, nil)})

	e, err := ingest.NewEcho(cfg.Server)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	r.Ingest = ts.URL

	cfg.Tenants = map[string]*config.Tenant{}
	for _, id := range o.Tenants {
		sfOpts := sfsandbox.DefaultOptions()
		sfOpts.StoreContentBytesUpTo = o.StoreContent
		if o.Salesforce != nil {
			o.Salesforce(&sfOpts)
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
			Sealer: r.Sealer, Tokens: q.Tokens(), Tenants: q.Tenants(), Metrics: r.Metrics, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		_, refresh := sf.IssueTokens("api refresh_token")
		if err := src.Import(t.Context(), refresh, sf.URL()); err != nil {
			t.Fatal(err)
		}
		tenant, err := sfpush.NewTenant(id, tc, src, r.Metrics, log)
		if err != nil {
			t.Fatal(err)
		}
		r.Tenants[id] = &Tenant{ID: id, Config: tc, SF: sf, OS: os, Source: src, Tenant: tenant, Key: key}
	}
	ingest.New(ingest.Options{Tenants: cfg.Tenants, MaxBodyBytes: cfg.Server.MaxBodyBytes, Publisher: q, Metrics: r.Metrics, Logger: log}).Register(e)
	r.Config = cfg
	return r
}

// Start runs a worker until Stop (or the test) ends it.
func (r *Rig) Start() {
	r.t.Helper()
	var tenants []sfpush.Tenant
	for _, id := range r.Config.TenantIDs() {
		tenants = append(tenants, r.Tenants[id].Tenant)
	}
	w, err := sfpush.New(sfpush.Options{
		JetStream: r.Queue.JetStream(), Packages: r.Queue.Packages(), States: auth.NewTenants(r.Queue.Tenants()), BatchStateWrites: true,
		Worker: r.Config.Worker, Tenants: tenants, Metrics: r.Metrics,
		Logger:        logging.New(r.Logs, logging.Text, slog.LevelDebug, nil),
		FetchWait:     100 * time.Millisecond,
		GaugeInterval: 100 * time.Millisecond,
		History:       r.Recorder,
		LeaseTTL:      r.leaseTTL,
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
	r.t.Cleanup(r.Stop)
}

// Stop ends the worker (which flushes the history); a no-op when stopped.
func (r *Rig) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Eventually polls cond until it holds or d passes, then fails the test
// with the tail of the logs.
func (r *Rig) Eventually(d time.Duration, what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	logs := r.Logs.String()
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

// Transaction is the package's transaction record (nil when there is none).
func (rt *Tenant) Transaction(pkg string) sfsandbox.Record {
	rec, _ := rt.SF.FindRecord(sfsandbox.ObjTransaction, "Package_Id__c", pkg)
	return rec
}

// Status is the package's transaction status in Salesforce.
func (rt *Tenant) Status(pkg string) string {
	s, _ := rt.Transaction(pkg)["Status__c"].(string)
	return s
}

// Events counts the package's event records in Salesforce.
func (rt *Tenant) Events(pkg string) int {
	txn := rt.Transaction(pkg)
	if txn == nil {
		return 0
	}
	return len(rt.SF.FindRecords(sfsandbox.ObjEvent, "Transaction__c", txn["Id"]))
}

// NewPackage creates a draft package (two documents unless given) with one
// signer, signer-1.
func (rt *Tenant) NewPackage(t testing.TB, id string, docs ...ossandbox.Document) {
	t.Helper()
	if len(docs) == 0 {
		docs = []ossandbox.Document{{ID: "doc-1", Name: "Contract"}, {ID: "doc-2", Name: "Annex"}}
	}
	if err := rt.OS.CreatePackage(t.Context(), ossandbox.Package{ID: id, Name: "pkg " + id, Documents: docs,
		Signers: []ossandbox.Signer{{ID: "signer-1", Email: "s1@example.com"}}}); err != nil {
		t.Fatal(err)
	}
}

// CompletePackage drives a package through the usual life.
func (rt *Tenant) CompletePackage(t testing.TB, id string) {
	t.Helper()
	ctx := t.Context()
	rt.NewPackage(t, id)
	for _, step := range []func() error{
		func() error { return rt.OS.Activate(ctx, id) },
		func() error { return rt.OS.SignDocument(ctx, id, "doc-1", "signer-1") },
		func() error { return rt.OS.SignDocument(ctx, id, "doc-2", "signer-1") },
		func() error { return rt.OS.SignerComplete(ctx, id, "signer-1") },
		func() error { return rt.OS.Complete(ctx, id) },
	} {
		if err := step(); err != nil {
			t.Fatalf("package %s: %v", id, err)
		}
	}
}

// DocKey is the OneSpan_Document_Key__c of a delivered document.
func DocKey(pkg, doc string) string { return fmt.Sprintf("%s/%s", pkg, doc) }

// EventKey is the key the worker and the history give ev for tenant.
func EventKey(t testing.TB, tenant string, ev ossandbox.Event) string {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := callback.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Key(tenant)
}
