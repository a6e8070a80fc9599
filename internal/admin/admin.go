// Package admin serves the operator side of the listener: the JSON admin API
// under /api/admin/v1 (CLI and scripts, bearer admin token), the Salesforce
// connect flow under /oauth/salesforce and the operator web page under /admin/.
package admin

import (
	"errors"
	"log/slog"
	"time"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/replay"
)

// Options configure the admin side.
type Options struct {
	Config    *config.Config
	Queue     *queue.Queue
	Sources   map[string]*auth.Source // per tenant, as built for the worker
	Connector *auth.Connector
	States    *auth.Tenants
	Metrics   *metrics.Metrics // may be nil
	Logger    *slog.Logger     // may be nil
	Now       func() time.Time // may be nil
	// History, Replayer and Reconciler serve the events, dead-letter,
	// replay and reconcile routes; without them those routes answer 503.
	History    *history.Store
	Replayer   *replay.Replayer
	Reconciler Reconciler
	// SessionIdle and SessionMaxAge bound a web page session (defaults 2h
	// and 12h).
	SessionIdle   time.Duration
	SessionMaxAge time.Duration
	// Auth failures tolerated per client address and window before 429.
	MaxAuthFailures   int           // default 10
	AuthFailureWindow time.Duration // default 1m
}

// Admin holds the admin routes' dependencies.
type Admin struct {
	o       Options
	log     *slog.Logger
	now     func() time.Time
	auth    *Authenticator
	tickets *tickets
	tenants []string // configured tenant ids, sorted
	console *console
}

// New checks the options and builds the admin side.
func New(o Options) (*Admin, error) {
	var errs []error
	if o.Config == nil {
		errs = append(errs, errors.New("admin: config is required"))
	}
	if o.Queue == nil {
		errs = append(errs, errors.New("admin: queue is required"))
	}
	if o.Connector == nil || o.States == nil {
		errs = append(errs, errors.New("admin: connector and tenant states are required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxAuthFailures <= 0 {
		o.MaxAuthFailures = 10
	}
	if o.AuthFailureWindow <= 0 {
		o.AuthFailureWindow = time.Minute
	}
	// Admin clients are few: 10,000 addresses bound its memory well below ingest's.
	limiter := auth.NewFailureLimiter(o.MaxAuthFailures, o.AuthFailureWindow, 10_000, o.Now)
	authn, err := NewAuthenticator(o.Config.Admin.Tokens, limiter, o.Logger)
	if err != nil {
		return nil, err
	}
	a := &Admin{
		o:       o,
		log:     o.Logger.With("component", "admin"),
		now:     o.Now,
		auth:    authn,
		tickets: &tickets{kv: o.Queue.OAuth(), ttl: queue.OAuthTTL, now: o.Now},
		tenants: o.Config.TenantIDs(),
	}
	a.console = newConsole(a)
	a.auth.SetSession(a.console.sessions)
	return a, nil
}

// Authenticator is the operator check shared by every admin route; the web
// page adds its session cookie to it (SetSession).
func (a *Admin) Authenticator() *Authenticator { return a.auth }

// source returns the tenant's token source, or nil for an unknown tenant.
func (a *Admin) source(tenant string) *auth.Source {
	return a.o.Sources[tenant]
}
