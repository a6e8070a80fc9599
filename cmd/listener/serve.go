package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/ingest"
	"github.com/countersign/countersign/internal/logging"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/supervisor"
	"github.com/countersign/countersign/internal/tracing"
)

type serveFlags struct {
	roles        string
	logFormat    string
	logLevel     string
	drainTimeout time.Duration
}

func newServeCmd(g *globalFlags) *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the listener: callback ingest, NATS, metrics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, f)
		},
	}
	cmd.Flags().StringVar(&f.roles, "roles", "ingest,worker,admin",
		"what this process does: a comma list of ingest (callbacks), worker (delivery to Salesforce), admin (OAuth connect, admin API and page)")
	cmd.Flags().StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.Flags().DurationVar(&f.drainTimeout, "drain-timeout", 15*time.Second,
		"on SIGTERM, how long in-flight requests may take to finish")
	return cmd
}

// secretsOf lists every configured secret so the log handler can scrub them
// even from text that was never meant to hold one.
func secretsOf(cfg *config.Config) *logging.Secrets {
	s := &logging.Secrets{}
	s.Add(cfg.Secrets.Keys...)
	s.Add(cfg.Admin.Tokens...)
	for _, t := range cfg.Tenants {
		s.Add(t.CallbackKeys...)
		s.Add(t.OneSpan.APIKey, t.OneSpan.ClientApp.Secret, t.Salesforce.ClientSecret, t.Salesforce.RefreshToken)
		for _, c := range t.CallbackClients {
			s.Add(c.ClientSecret)
		}
	}
	return s
}

func newLogger(cfg *config.Config, f *serveFlags) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	format := logging.Format(f.logFormat)
	if format != logging.JSON && format != logging.Text {
		return nil, fmt.Errorf("--log-format must be json or text, not %q", f.logFormat)
	}
	// Outermost: trace ids are added after redaction (they are not secret).
	return slog.New(tracing.LogHandler{Handler: logging.New(os.Stderr, format, level, secretsOf(cfg)).Handler()}), nil
}

func serve(ctx context.Context, cfg *config.Config, f *serveFlags) error {
	roles, err := parseRoles(f.roles)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, f)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	shutdownTracing, err := tracing.Setup(ctx, cfg.Tracing.OTLPEndpoint, version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx) // flushes the last spans
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	q, err := queue.Open(ctx, queue.Options{NATS: cfg.NATS, Queue: cfg.Queue, Logger: log})
	if err != nil {
		return err
	}
	// Closed last: every part that publishes or acks has stopped by then.
	defer q.Close()
	log.Info("nats ready", "embedded", cfg.NATS.Embedded(), "store_dir", cfg.NATS.StoreDir,
		"sync_always", cfg.NATS.SyncAlways, "replicas", cfg.NATS.Replicas)

	svc, err := newServices(cfg, q, m, log)
	if err != nil {
		return err
	}
	if roles.worker || roles.admin {
		svc.publishConnected(ctx)
	}
	e, err := ingest.NewEcho(cfg.Server)
	if err != nil {
		return err
	}
	group := supervisor.New(log)
	var parts []supervisor.Part
	if roles.ingest {
		// Signed with secrets.keys, so a token from one replica works on all.
		tokens, err := auth.NewCallbackTokensFromConfig(cfg.Secrets.Keys, auth.DefaultCallbackTokenTTL, nil)
		if err != nil {
			return err
		}
		ingest.New(ingest.Options{
			Tenants:        cfg.Tenants,
			MaxBodyBytes:   cfg.Server.MaxBodyBytes,
			Publisher:      q,
			Metrics:        m,
			Logger:         log,
			CallbackTokens: tokens,
		}).Register(e)
	}
	if roles.admin {
		if err := svc.registerAdmin(e); err != nil {
			return err
		}
	}
	if roles.worker {
		w, err := svc.worker()
		if err != nil {
			return err
		}
		rc, err := svc.reconciler()
		if err != nil {
			return err
		}
		parts = append(parts, supervisor.Part{Name: "worker", Run: w.Run}, supervisor.Part{Name: "reconcile", Run: rc.Run})
	}
	ingest.Health{Ready: func(ctx context.Context) error {
		if err := group.Healthy(); err != nil {
			return err
		}
		return q.Ready(ctx)
	}}.Register(e)

	metricsSrv := &http.Server{
		Addr:              cfg.Metrics.Addr,
		Handler:           promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	e.Server.Addr = cfg.Server.Addr
	log.Info("listening", "addr", cfg.Server.Addr, "metrics_addr", cfg.Metrics.Addr,
		"roles", f.roles, "tenants", cfg.TenantIDs(), "version", version)
	parts = append(parts,
		supervisor.Part{Name: "http", Run: func(ctx context.Context) error { return runHTTP(ctx, e.Server, f.drainTimeout) }},
		supervisor.Part{Name: "metrics", Run: func(ctx context.Context) error { return runHTTP(ctx, metricsSrv, 5*time.Second) }},
	)
	return group.Run(ctx, parts...)
}

type roleSet struct{ ingest, worker, admin bool }

// parseRoles reads --roles: a comma list of ingest, worker and admin. Every
// role still serves /healthz, /readyz and /metrics.
func parseRoles(s string) (roleSet, error) {
	var r roleSet
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "ingest":
			r.ingest = true
		case "worker":
			r.worker = true
		case "admin":
			r.admin = true
		case "":
		default:
			return r, fmt.Errorf("--roles: unknown role %q (want ingest, worker, admin)", name)
		}
	}
	if r == (roleSet{}) {
		return r, fmt.Errorf("--roles: at least one of ingest, worker, admin")
	}
	return r, nil
}

// runHTTP serves until ctx ends, then stops accepting and lets in-flight
// requests finish within drain: a callback mid-publish gets its real answer.
func runHTTP(ctx context.Context, srv *http.Server, drain time.Duration) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("drain %s: %w", srv.Addr, err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
