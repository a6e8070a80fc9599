// Package sfpush is the delivery worker: it turns stored callbacks into
// Salesforce state — the transaction's status, an event log record, and on
// completion the signed documents — exactly once, whatever fails on the way.
package sfpush

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/onespan"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/salesforce"
)

// Tenant is what the worker needs of one tenant.
type Tenant struct {
	ID         string
	Config     *config.Tenant
	Salesforce *salesforce.Client // authorized: its transport adds and refreshes tokens
	OneSpan    *onespan.Client
}

// Options configure the worker.
type Options struct {
	JetStream jetstream.JetStream
	Packages  jetstream.KeyValue // cs_packages
	States    *auth.Tenants      // cs_tenants: connection and throttling
	Worker    config.Worker
	Tenants   []Tenant
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	// UsagePause is how long a tenant pauses (default 5m) when its
	// Salesforce API usage reaches worker.max_api_usage (default 0.9).
	UsagePause time.Duration
	// FetchWait is how long one pull waits for a message (default 1s); it also
	// bounds how fast a paused tenant notices it may resume.
	FetchWait time.Duration
	// GaugeInterval refreshes the queue gauges (default 15s).
	GaugeInterval time.Duration
	// BatchStateWrites writes a batch's package states as one atomic KV
	// batch. It pays off when every write is fsync'd (the embedded server
	// with nats.sync_always); on a replicated cluster each key is written
	// by its own compare-and-swap.
	BatchStateWrites bool
	// LeaseTTL bounds how long a package's transaction write may hold its
	// lease (default worker.ack_wait, at least 10s): a dead writer blocks the
	// package this long at most, about when its messages are redelivered.
	// Salesforce calls of the write get half of it.
	LeaseTTL time.Duration
	Now      func() time.Time
	// History, when set, is told of every settle decision (delivery
	// history for operators); it must never block or fail delivery.
	History Recorder
}

// Worker delivers every tenant's callbacks; tenants run independently, so
// one broken org never blocks the others.
type Worker struct {
	o       Options
	log     *slog.Logger
	replica string // names this process in package leases
}

// New validates options and applies defaults.
func New(o Options) (*Worker, error) {
	if o.JetStream == nil || o.Packages == nil || o.States == nil || o.Metrics == nil {
		return nil, errors.New("sfpush: jetstream, packages bucket, tenant states and metrics are required")
	}
	if o.Worker.MaxAPIUsage == 0 {
		o.Worker.MaxAPIUsage = 0.9
	}
	if o.UsagePause == 0 {
		o.UsagePause = 5 * time.Minute
	}
	if o.FetchWait == 0 {
		o.FetchWait = time.Second
	}
	if o.GaugeInterval == 0 {
		o.GaugeInterval = 15 * time.Second
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = max(o.Worker.AckWait.D(), 10*time.Second)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.Worker.Backoff) == 0 {
		o.Worker.Backoff = []config.Duration{config.Duration(time.Second)}
	}
	return &Worker{o: o, log: o.Logger, replica: nuid.Next()}, nil
}

func (w *Worker) stateStore(tenant string) stateStore {
	st := stateStore{kv: w.o.Packages, tenant: tenant}
	if w.o.BatchStateWrites {
		st.nc = w.o.JetStream.Conn()
	}
	return st
}

// ConsumerName is the durable pull consumer of a tenant.
func ConsumerName(tenant string) string { return "deliver-" + tenant }

// Run delivers until ctx ends. Each tenant has its own loop.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(w.o.Tenants))
	for i := range w.o.Tenants {
		tw, err := w.newTenantWorker(ctx, &w.o.Tenants[i])
		if err != nil {
			return err
		}
		wg.Add(2)
		go func() { defer wg.Done(); errs <- tw.run(ctx) }()
		go func() { defer wg.Done(); tw.gauges(ctx) }()
	}
	wg.Wait()
	close(errs)
	if w.o.History != nil {
		// The last batch's attempts are recorded before NATS is closed.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := w.o.History.Flush(fctx); err != nil {
			w.log.Warn("delivery history not fully stored at shutdown", "error", err)
		}
		cancel()
	}
	var all []error
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

type tenantWorker struct {
	w      *Worker
	t      *Tenant
	cons   jetstream.Consumer
	store  stateStore
	log    *slog.Logger
	docSem chan struct{}

	// localPause holds the tenant after a usage-based or throttling decision
	// until the shared state catches up.
	localPause time.Time
	// awaitingConnect is set by a Reconnect-class failure and cleared when
	// the shared state says connected (a connect or a token import).
	awaitingConnect bool
}

// EnsureConsumer creates or updates the tenant's durable consumer.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, tenant string, wc config.Worker) (jetstream.Consumer, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, queue.CallbacksStream, jetstream.ConsumerConfig{
		Durable:       ConsumerName(tenant),
		Description:   "delivery to Salesforce for tenant " + tenant,
		FilterSubject: "callbacks." + tenant + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       wc.AckWait.D(),
		// Dead-lettering after worker.max_deliver is ours to do (with the
		// reason); the server must never silently stop redelivering.
		MaxDeliver:    -1,
		MaxAckPending: max(1000, 4*wc.BatchSize),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer for tenant %s: %w", tenant, err)
	}
	return cons, nil
}

func (w *Worker) newTenantWorker(ctx context.Context, t *Tenant) (*tenantWorker, error) {
	cons, err := EnsureConsumer(ctx, w.o.JetStream, t.ID, w.o.Worker)
	if err != nil {
		return nil, err
	}
	return &tenantWorker{
		w: w, t: t, cons: cons,
		store:  w.stateStore(t.ID),
		log:    w.log.With("tenant", t.ID),
		docSem: make(chan struct{}, max(w.o.Worker.Concurrency, 1)),
	}, nil
}

func (tw *tenantWorker) run(ctx context.Context) error {
	batchSize := max(tw.w.o.Worker.BatchSize, 1)
	wasPaused := false
	for ctx.Err() == nil {
		if paused, reason := tw.paused(ctx); paused {
			if !wasPaused {
				tw.log.Warn("tenant paused", "reason", reason)
				wasPaused = true
			}
			sleep(ctx, tw.w.o.FetchWait)
			continue
		}
		if wasPaused {
			tw.log.Info("tenant resumed")
			wasPaused = false
		}
		msgs, err := tw.fetch(ctx, batchSize)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			tw.log.Warn("fetch failed", "error", err)
			sleep(ctx, tw.w.o.FetchWait)
			continue
		}
		if len(msgs) > 0 {
			tw.process(ctx, msgs)
		}
	}
	return ctx.Err()
}

// fetch waits up to FetchWait for one message, then takes whatever else is
// already waiting, up to n: a burst becomes one batch, a lone event waits for
// nobody.
func (tw *tenantWorker) fetch(ctx context.Context, n int) ([]jetstream.Msg, error) {
	first, err := tw.cons.Next(jetstream.FetchMaxWait(tw.w.o.FetchWait))
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	msgs := []jetstream.Msg{first}
	if n > 1 {
		more, err := tw.cons.FetchNoWait(n - 1)
		if err == nil {
			for m := range more.Messages() {
				msgs = append(msgs, m)
			}
		}
	}
	return msgs, nil
}

// paused reports whether the tenant must not call Salesforce now: it needs
// reconnecting, was disconnected, or is throttled (shared across replicas
// through cs_tenants).
func (tw *tenantWorker) paused(ctx context.Context) (bool, string) {
	now := tw.w.o.Now()
	if now.Before(tw.localPause) {
		return true, "throttled until " + tw.localPause.Format(time.RFC3339)
	}
	st, _, err := tw.w.o.States.Get(ctx, tw.t.ID)
	if err != nil {
		return true, "tenant state unreadable: " + err.Error()
	}
	if tw.awaitingConnect {
		if st.State != auth.StateConnected {
			return true, "not connected to salesforce (run `listener connect`)"
		}
		tw.awaitingConnect = false
	}
	if st.Paused(now) {
		switch st.State {
		case auth.StateNeedsReconnect, auth.StateDisconnected:
			return true, st.State + ": " + st.Reason
		}
		return true, "throttled until " + st.ThrottledUntil
	}
	return false, ""
}

// throttle pauses the tenant until `until`, for every replica.
func (tw *tenantWorker) throttle(ctx context.Context, until time.Time, why string) {
	if until.After(tw.localPause) {
		tw.localPause = until
	}
	if err := tw.w.o.States.SetThrottled(ctx, tw.t.ID, until); err != nil {
		tw.log.Warn("could not share throttling", "error", err)
	}
	tw.log.Warn("tenant throttled", "until", until.Format(time.RFC3339), "why", why)
}

// gauges keeps the queue gauges current.
func (tw *tenantWorker) gauges(ctx context.Context) {
	m := tw.w.o.Metrics
	tick := time.NewTicker(tw.w.o.GaugeInterval)
	defer tick.Stop()
	for {
		if info, err := tw.cons.Info(ctx); err == nil {
			m.QueuePending.WithLabelValues(tw.t.ID).Set(float64(info.NumPending) + float64(info.NumAckPending))
		}
		if n, err := DeadLetterCount(ctx, tw.w.o.JetStream, tw.t.ID); err == nil {
			m.DeadLetters.WithLabelValues(tw.t.ID).Set(float64(n))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// DeadLetterCount is the number of the tenant's messages in DEADLETTER.
func DeadLetterCount(ctx context.Context, js jetstream.JetStream, tenant string) (uint64, error) {
	s, err := js.Stream(ctx, queue.DeadLetterStream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("deadletter."+tenant+".>"))
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Observer records Salesforce calls in the §9 metrics for a tenant.
func Observer(m *metrics.Metrics, tenant string) func(op string, status int, limit salesforce.LimitInfo, dur time.Duration) {
	return func(op string, status int, limit salesforce.LimitInfo, _ time.Duration) {
		code := "error"
		if status > 0 {
			code = fmt.Sprint(status)
		}
		m.SalesforceRequests.WithLabelValues(tenant, op, code).Inc()
		if limit.Known() {
			m.SalesforceAPIUsage.WithLabelValues(tenant).Set(limit.Ratio())
		}
	}
}

func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	return s[:n]
}
