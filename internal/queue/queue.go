// Package queue owns NATS: the embedded server (or the connection to a
// cluster), the CALLBACKS and DEADLETTER streams, and the KV buckets of
// ARCHITECTURE §4.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/config"
)

// Names fixed by ARCHITECTURE §4.
const (
	CallbacksStream  = "CALLBACKS"
	DeadLetterStream = "DEADLETTER"
	TokensBucket     = "cs_tokens"
	PackagesBucket   = "cs_packages"
	TenantsBucket    = "cs_tenants"
	// OAuthBucket holds single-use OAuth states and connect tickets, so that
	// any replica can finish a flow another one started. Entries expire.
	OAuthBucket = "cs_oauth"
	// OAuthTTL bounds how long a state or ticket lives.
	OAuthTTL = 10 * time.Minute
)

// Options configures Open.
type Options struct {
	NATS   config.NATS
	Queue  config.Queue
	Logger *slog.Logger
	// ConnectTimeout bounds the wait for the server at start (default 10s).
	ConnectTimeout time.Duration
}

// Queue is an open connection with its streams and buckets in place.
type Queue struct {
	opts     Options
	log      *slog.Logger
	embedded *server.Server // nil with an external cluster
	nc       *nats.Conn
	js       jetstream.JetStream

	tokens, packages, tenants, oauth jetstream.KeyValue
}

// Open starts the embedded server when nats.url is empty (or connects to the
// cluster), then creates or updates every stream and bucket. The code path
// after connecting is the same in both modes.
func Open(ctx context.Context, o Options) (*Queue, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	q := &Queue{opts: o, log: o.Logger}
	// Publishing while disconnected must fail at once (so ingest answers
	// 503) instead of sitting in a reconnect buffer nobody will flush.
	connOpts := []nats.Option{
		nats.Name("countersign-listener"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.Timeout(o.ConnectTimeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			q.log.Warn("nats disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { q.log.Info("nats reconnected", "server", c.ConnectedUrlRedacted()) }),
	}
	var err error
	if o.NATS.Embedded() {
		if q.embedded, err = startEmbedded(o.NATS, o.Logger, o.ConnectTimeout); err != nil {
			return nil, err
		}
		connOpts = append(connOpts, nats.InProcessServer(q.embedded))
		q.nc, err = nats.Connect("", connOpts...)
	} else {
		q.nc, err = nats.Connect(o.NATS.URL, connOpts...)
	}
	if err != nil {
		q.shutdownServer()
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	if q.js, err = jetstream.New(q.nc); err != nil {
		q.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := q.ensure(ctx); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

func startEmbedded(n config.NATS, log *slog.Logger, wait time.Duration) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "countersign",
		JetStream:  true,
		StoreDir:   n.StoreDir,
		SyncAlways: n.SyncAlways,
		// Without NoSigs the server installs its own SIGTERM handler and
		// calls os.Exit before our graceful shutdown can run.
		NoSigs:     true,
		DontListen: n.Listen == "",
	}
	if n.Listen != "" {
		host, port, err := splitHostPort(n.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats.listen: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(serverLogger{log.With("component", "nats-server")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(wait) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s (store_dir %s)", wait, n.StoreDir)
	}
	return ns, nil
}

func (q *Queue) ensure(ctx context.Context) error {
	retention := q.opts.Queue.Retention.D()
	replicas := q.opts.NATS.Replicas
	streams := []jetstream.StreamConfig{{
		Name:        CallbacksStream,
		Description: "OneSpan callbacks exactly as received",
		Subjects:    []string{"callbacks.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      retention,
		Duplicates:  q.opts.Queue.DuplicateWindow.D(),
		Replicas:    replicas,
	}, {
		Name:        DeadLetterStream,
		Description: "callbacks that failed permanently, with the reason",
		Subjects:    []string{"deadletter.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      retention,
		Duplicates:  min(2*time.Minute, retention),
		Replicas:    replicas,
	}}
	for _, sc := range streams {
		if _, err := q.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("create stream %s: %w", sc.Name, err)
		}
	}
	buckets := []struct {
		kv  *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&q.tokens, jetstream.KeyValueConfig{Bucket: TokensBucket, Description: "sealed Salesforce token sets", History: 5}},
		{&q.packages, jetstream.KeyValueConfig{Bucket: PackagesBucket, Description: "per-package delivery state", History: 1, TTL: retention}},
		{&q.tenants, jetstream.KeyValueConfig{Bucket: TenantsBucket, Description: "tenant connection state", History: 5}},
		{&q.oauth, jetstream.KeyValueConfig{Bucket: OAuthBucket, Description: "single-use OAuth states and connect tickets", History: 1, TTL: OAuthTTL}},
	}
	for _, b := range buckets {
		b.cfg.Storage = jetstream.FileStorage
		b.cfg.Replicas = replicas
		kv, err := q.js.CreateOrUpdateKeyValue(ctx, b.cfg)
		if err != nil {
			return fmt.Errorf("create kv bucket %s: %w", b.cfg.Bucket, err)
		}
		*b.kv = kv
	}
	// The worker records a batch's package states in one atomic batch: with
	// fsync on every write, one batch costs what a single write does.
	s, err := q.js.Stream(ctx, "KV_"+PackagesBucket)
	if err != nil {
		return fmt.Errorf("kv bucket %s: %w", PackagesBucket, err)
	}
	if sc := s.CachedInfo().Config; !sc.AllowAtomicPublish {
		sc.AllowAtomicPublish = true
		if _, err := q.js.UpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("allow atomic batches on kv bucket %s: %w", PackagesBucket, err)
		}
	}
	return nil
}

// Ready reports whether NATS is connected and both streams exist; it backs
// /readyz.
func (q *Queue) Ready(ctx context.Context) error {
	if !q.nc.IsConnected() {
		return errors.New("nats not connected")
	}
	for _, name := range []string{CallbacksStream, DeadLetterStream} {
		if _, err := q.js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return nil
}

// JetStream is the JetStream context, for the worker and admin.
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Conn is the underlying connection.
func (q *Queue) Conn() *nats.Conn { return q.nc }

// Tokens is the cs_tokens bucket.
func (q *Queue) Tokens() jetstream.KeyValue { return q.tokens }

// Packages is the cs_packages bucket.
func (q *Queue) Packages() jetstream.KeyValue { return q.packages }

// Tenants is the cs_tenants bucket.
func (q *Queue) Tenants() jetstream.KeyValue { return q.tenants }

// OAuth is the cs_oauth bucket.
func (q *Queue) OAuth() jetstream.KeyValue { return q.oauth }

// EmbeddedServer is the in-process server, nil with an external cluster.
func (q *Queue) EmbeddedServer() *server.Server { return q.embedded }

// Close drains the connection (flushing in-flight acks) and stops the
// embedded server. It is safe to call more than once.
func (q *Queue) Close() {
	if q.nc != nil && !q.nc.IsClosed() {
		done := make(chan struct{})
		q.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
		if err := q.nc.Drain(); err != nil {
			q.nc.Close()
		} else {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				q.nc.Close()
			}
		}
	}
	q.shutdownServer()
}

func (q *Queue) shutdownServer() {
	if q.embedded != nil {
		q.embedded.Shutdown()
		q.embedded.WaitForShutdown()
	}
}
