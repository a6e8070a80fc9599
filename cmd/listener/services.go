package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/admin"
	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/ingest"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/reconcile"
	"github.com/countersign/countersign/internal/replay"
	"github.com/countersign/countersign/internal/sfpush"
)

// services are the per-tenant parts shared by the worker and admin roles.
type services struct {
	cfg       *config.Config
	q         *queue.Queue
	m         *metrics.Metrics
	log       *slog.Logger
	sealer    *auth.Sealer
	states    *auth.Tenants
	sources   map[string]*auth.Source
	connector *auth.Connector
}

func newServices(cfg *config.Config, q *queue.Queue, m *metrics.Metrics, log *slog.Logger) (*services, error) {
	sealer, err := auth.NewSealer(cfg.Secrets.Keys)
	if err != nil {
		return nil, fmt.Errorf("secrets.keys: %w", err)
	}
	s := &services{cfg: cfg, q: q, m: m, log: log, sealer: sealer,
		states: auth.NewTenants(q.Tenants()), sources: map[string]*auth.Source{}}
	var list []*auth.Source
	for _, id := range cfg.TenantIDs() {
		src, err := auth.NewSource(auth.Options{
			Tenant:  id,
			App:     auth.AppFromConfig(cfg.Tenants[id].Salesforce, cfg.Server.PublicURL),
			Sealer:  sealer,
			Tokens:  q.Tokens(),
			Tenants: q.Tenants(),
			Metrics: m,
			Logger:  log,
		})
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", id, err)
		}
		s.sources[id] = src
		list = append(list, src)
	}
	s.connector, err = auth.NewConnector(auth.ConnectOptions{OAuth: q.OAuth(), Sealer: sealer, Sources: list, Logger: log})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// publishConnected creates the delivery series and sets
// countersign_tenant_connected from the shared state, so the gauge is right
// before the first token is needed. Ingest-only processes skip it.
func (s *services) publishConnected(ctx context.Context) {
	for id := range s.sources {
		s.m.InitDelivery(id, ingest.MetricEvents())
		st, _, err := s.states.Get(ctx, id)
		if err != nil {
			continue
		}
		v := 0.0
		if st.State == auth.StateConnected {
			v = 1
		}
		s.m.TenantConnected.WithLabelValues(id).Set(v)
	}
}

func (s *services) worker() (*sfpush.Worker, error) {
	var tenants []sfpush.Tenant
	for _, id := range s.cfg.TenantIDs() {
		t, err := sfpush.NewTenant(id, s.cfg.Tenants[id], s.sources[id], s.m, s.log)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", id, err)
		}
		tenants = append(tenants, t)
	}
	return sfpush.New(sfpush.Options{
		JetStream: s.q.JetStream(),
		Packages:  s.q.Packages(),
		States:    s.states,
		Worker:    s.cfg.Worker,
		Tenants:   tenants,
		Metrics:   s.m,
		Logger:    s.log,
		History: history.NewRecorder(history.RecorderOptions{JetStream: s.q.JetStream(), Packages: s.q.Packages(),
			Retention: s.cfg.Queue.Retention.D(), Replicas: s.cfg.NATS.Replicas, Logger: s.log}),
		BatchStateWrites: s.cfg.NATS.Replicas == 1,
	})
}

// reconciler compares OneSpan with the delivered state every reconcile.interval.
func (s *services) reconciler() (*reconcile.Reconciler, error) {
	var tenants []reconcile.Tenant
	for _, id := range s.cfg.TenantIDs() {
		t, err := sfpush.NewTenant(id, s.cfg.Tenants[id], s.sources[id], s.m, s.log)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", id, err)
		}
		tenants = append(tenants, reconcile.Tenant{ID: id, Config: t.Config, OneSpan: t.OneSpan})
	}
	return reconcile.New(reconcile.Options{Publisher: s.q, JetStream: s.q.JetStream(), Packages: s.q.Packages(),
		Tenants: tenants, Config: s.cfg.Reconcile, Metrics: s.m, Logger: s.log})
}

// registerAdmin adds the OAuth connect routes, the admin API and the page.
func (s *services) registerAdmin(e *echo.Echo) error {
	store := history.NewStore(s.q.JetStream(), s.q.Packages())
	rp, err := replay.New(replay.Options{JetStream: s.q.JetStream(), Packages: s.q.Packages(), History: store, Logger: s.log})
	if err != nil {
		return err
	}
	rc, err := s.reconciler()
	if err != nil {
		return err
	}
	a, err := admin.New(admin.Options{
		Config:     s.cfg,
		Queue:      s.q,
		Sources:    s.sources,
		Connector:  s.connector,
		States:     s.states,
		Metrics:    s.m,
		Logger:     s.log,
		History:    store,
		Replayer:   rp,
		Reconciler: rc,
	})
	if err != nil {
		return err
	}
	a.Register(e)
	return nil
}
