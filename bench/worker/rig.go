package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/onespan"
	"github.com/countersign/countersign/internal/queue"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

// The in-process rig: embedded NATS (no network listener), both emulators
// on loopback, and the real worker wired the way cmd/listener does it. Only
// the measuring wrappers (KV timing, Salesforce call timing) are added.

const (
	tenantID = "demo"
	// sealKey is a bench-only sealing key (base64 of 32 bytes), not a secret.
	sealKey = "Y291bnRlcnNpZ24tYmVuY2gta2V5LW5vdC1zZWNyZXQ="
)

type rigOptions struct {
	storeDir   string
	syncAlways bool          // nats.sync_always while the worker drains
	latency    time.Duration // added to every Salesforce REST call
	documents  bool          // copy signed PDFs on PACKAGE_COMPLETE
	log        io.Writer     // worker logs; nil discards them
}

type rig struct {
	o     rigOptions
	cfg   config.Config
	q     *queue.Queue
	sf    *sfsandbox.Server
	os    *ossandbox.Server
	m     *metrics.Metrics
	kv    *timedKV
	sfObs *callTimer
	log   *slog.Logger
}

// newRig starts the emulators and the queue (not the worker).
func newRig(ctx context.Context, o rigOptions) (*rig, error) {
	cfg := config.Default()
	cfg.NATS.StoreDir = o.storeDir
	cfg.NATS.SyncAlways = o.syncAlways
	r := &rig{o: o, cfg: cfg, m: metrics.New(prometheus.NewRegistry()), sfObs: &callTimer{}}
	w := o.log
	if w == nil {
		w = io.Discard
	}
	r.log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))

	sfOpts := sfsandbox.DefaultOptions()
	sfOpts.DailyRequestLimit = 10_000_000 // the bench measures calls, not the org's allocation
	r.sf = sfsandbox.New(sfOpts)
	if _, err := r.sf.Listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	if o.latency > 0 {
		r.sf.SetFaults(sfsandbox.Faults{Latency: o.latency})
	}
	r.os = ossandbox.New(ossandbox.Options{APIKeys: []string{"fake-onespan-key-bench"}})
	if _, err := r.os.Listen("127.0.0.1:0"); err != nil {
		r.sf.Close()
		return nil, err
	}
	q, err := queue.Open(ctx, queue.Options{NATS: cfg.NATS, Queue: cfg.Queue, Logger: r.log})
	if err != nil {
		r.close()
		return nil, err
	}
	r.q = q
	return r, nil
}

// reopenQueue closes and reopens the embedded NATS on the same store with
// nats.sync_always as asked: events are stored quickly without fsync, and the
// drain then runs with the setting under test.
func (r *rig) reopenQueue(ctx context.Context, syncAlways bool) error {
	r.q.Close()
	r.cfg.NATS.SyncAlways = syncAlways
	q, err := queue.Open(ctx, queue.Options{NATS: r.cfg.NATS, Queue: r.cfg.Queue, Logger: r.log})
	if err != nil {
		return err
	}
	r.q = q
	return nil
}

func (r *rig) close() {
	if r.q != nil {
		r.q.Close()
	}
	if r.sf != nil {
		r.sf.Close()
	}
	if r.os != nil {
		_ = r.os.Close()
	}
}

// tenantConfig is the demo tenant pointing at the emulators.
func (r *rig) tenantConfig() *config.Tenant {
	sfOpts := sfsandbox.DefaultOptions()
	up, ev := r.o.documents, r.o.documents
	tc := &config.Tenant{
		CallbackKeys: []string{"fake-callback-key-bench"},
		OneSpan:      config.OneSpan{BaseURL: r.os.URL(), APIKey: "fake-onespan-key-bench"},
		Salesforce: config.Salesforce{LoginURL: r.sf.URL(), ClientID: sfOpts.ClientID, ClientSecret: sfOpts.ClientSecret,
			APIVersion: "v62.0", SessionTTL: config.Duration(time.Hour)},
		Documents: config.Documents{Upload: &up, EvidenceSummary: &ev},
	}
	config.ApplyTenantDefaults(tc)
	return tc
}

// startWorker connects the tenant (token import, as `listener connect`
// would) and runs the worker (replicas of it) until ctx ends; the returned
// channel gives each Run's error.
func (r *rig) startWorker(ctx context.Context, replicas int) (<-chan error, error) {
	tc := r.tenantConfig()
	r.cfg.Tenants = map[string]*config.Tenant{tenantID: tc}
	sealer, err := auth.NewSealer([]string{sealKey})
	if err != nil {
		return nil, err
	}
	// The timing transport is the base under the token transport, so it
	// sees every REST exchange the worker makes (token calls excluded).
	src, err := auth.NewSource(auth.Options{Tenant: tenantID, App: auth.AppFromConfig(tc.Salesforce, r.cfg.Server.PublicURL),
		Sealer: sealer, Tokens: r.q.Tokens(), Tenants: r.q.Tenants(), Metrics: r.m, Logger: r.log,
		Transport: &timedTransport{base: http.DefaultTransport, t: r.sfObs}})
	if err != nil {
		return nil, err
	}
	_, refresh := r.sf.IssueTokens("api refresh_token")
	if err := src.Import(ctx, refresh, r.sf.URL()); err != nil {
		return nil, fmt.Errorf("import token: %w", err)
	}
	tenant, err := sfpush.NewTenant(tenantID, tc, src, r.m, r.log)
	if err != nil {
		return nil, err
	}
	r.kv = &timedKV{KeyValue: r.q.Packages()}
	// Several replicas share the tenant's durable consumer, as separate
	// listener processes would: batches of one tenant then run concurrently.
	done := make(chan error, replicas)
	for range max(replicas, 1) {
		w, err := sfpush.New(sfpush.Options{
			JetStream: r.q.JetStream(), Packages: r.kv, States: auth.NewTenants(r.q.Tenants()), BatchStateWrites: true,
			Worker: r.cfg.Worker, Metrics: r.m, Logger: r.log,
			Tenants: []sfpush.Tenant{tenant},
		})
		if err != nil {
			return nil, err
		}
		go func() { done <- w.Run(ctx) }()
	}
	return done, nil
}

// store publishes events the way ingest does (body as received, event key as
// message id), with a few concurrent publishers.
func (r *rig) store(ctx context.Context, events []onespan.CallbackEvent) error {
	const publishers = 8
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(events) || ctx.Err() != nil {
					return
				}
				body, err := json.Marshal(events[i])
				if err != nil {
					errs <- err
					return
				}
				ev, err := callback.Parse(body)
				if err != nil {
					errs <- fmt.Errorf("event %d: %w", i, err)
					return
				}
				pub, err := r.q.Publish(ctx, queue.Callback{Tenant: tenantID, Event: ev, Body: body, MsgID: ev.Key(tenantID),
					Source: queue.SourceCallback, ReceivedAt: time.Now()})
				if err != nil {
					errs <- err
					return
				}
				if pub.Duplicate {
					errs <- fmt.Errorf("event %d stored twice: the workload has a duplicate key", i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(func() []error {
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return all
	}()...)
}

// consumer is the tenant's durable consumer, created the way the worker
// creates it so the driver can watch its backlog.
func (r *rig) consumer(ctx context.Context) (jetstream.Consumer, error) {
	return sfpush.EnsureConsumer(ctx, r.q.JetStream(), tenantID, r.cfg.Worker)
}

// backlog is what the worker has not yet acked.
func backlog(ctx context.Context, c jetstream.Consumer) (uint64, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// waitDrained polls until the backlog is empty or the deadline passes.
func waitDrained(ctx context.Context, c jetstream.Consumer, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(limit)
	for time.Now().Before(deadline) {
		n, err := backlog(ctx, c)
		if err == nil && n == 0 {
			return time.Since(start), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
	n, _ := backlog(ctx, c)
	return 0, fmt.Errorf("not drained after %s: %d messages left", limit, n)
}

// timedKV counts and times the worker's cs_packages round trips.
type timedKV struct {
	jetstream.KeyValue
	gets, writes callTimer
}

func (k *timedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	start := time.Now()
	defer func() { k.gets.add(time.Since(start)) }()
	return k.KeyValue.Get(ctx, key)
}

func (k *timedKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	start := time.Now()
	defer func() { k.writes.add(time.Since(start)) }()
	return k.KeyValue.Create(ctx, key, value, opts...)
}

func (k *timedKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	start := time.Now()
	defer func() { k.writes.add(time.Since(start)) }()
	return k.KeyValue.Update(ctx, key, value, revision)
}

// callTimer sums durations of calls made (possibly) concurrently.
type callTimer struct {
	n     atomic.Int64
	total atomic.Int64
}

func (c *callTimer) add(d time.Duration) { c.n.Add(1); c.total.Add(int64(d)) }
func (c *callTimer) count() int64        { return c.n.Load() }
func (c *callTimer) sum() time.Duration  { return time.Duration(c.total.Load()) }
func (c *callTimer) reset()              { c.n.Store(0); c.total.Store(0) }

// timedTransport times each HTTP exchange (until the answer's headers).
type timedTransport struct {
	base http.RoundTripper
	t    *callTimer
}

func (tt *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := tt.base.RoundTrip(req)
	tt.t.add(time.Since(start))
	return resp, err
}
