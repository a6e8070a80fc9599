package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/countersign/countersign/internal/fault"
	"github.com/countersign/countersign/internal/metrics"
)

// SalesforceApp is a tenant's connected app (config tenants.<t>.salesforce).
type SalesforceApp struct {
	LoginURL     string // https://login.salesforce.com, test.salesforce.com or a My Domain
	ClientID     string
	ClientSecret string
	RedirectURL  string // <server.public_url>/oauth/salesforce/callback
	// SessionTTL is the access-token lifetime assumed when the provider sends
	// no expires_in (Salesforce never does). Default 1h.
	SessionTTL time.Duration
	// BootstrapRefreshToken is used once when nothing is stored; a stored
	// (rotated) token always wins.
	BootstrapRefreshToken string
	// InstanceURL overrides the token response's instance_url when set.
	InstanceURL string
}

// Options configure a Source for one tenant.
type Options struct {
	Tenant  string
	App     SalesforceApp
	Sealer  *Sealer
	Tokens  jetstream.KeyValue // the cs_tokens bucket
	Tenants jetstream.KeyValue // the cs_tenants bucket
	Metrics *metrics.Metrics   // may be nil
	Logger  *slog.Logger       // may be nil
	// HTTPClient calls the token and revoke endpoints (default: 30 s timeout).
	HTTPClient *http.Client
	// Transport is the base of Client() for REST calls (default http.DefaultTransport).
	Transport http.RoundTripper

	// LeaseTTL bounds how long a replica may hold the refresh lease; a crashed
	// holder blocks the others for at most this long. Default 30 s; the token
	// call itself is given half of it.
	LeaseTTL time.Duration
	// PollInterval is how often a replica waiting for another's refresh
	// re-reads the store. Default 25 ms.
	PollInterval time.Duration
	// ExpiryMargin refreshes this long before the computed expiry. Default
	// SessionTTL/20, at most one minute.
	ExpiryMargin time.Duration
	// Replica names this process in leases (default: random).
	Replica string
	// Now replaces time.Now.
	Now func() time.Time
}

// Source hands out a tenant's Salesforce access token, refreshing it when it
// expires. Refresh is single-flight across replicas: the replica that wins a
// lease in the tenant's cs_tokens record (by compare-and-swap) is the only one
// that calls the token endpoint, and it stores the rotated refresh token before
// anyone uses the new access token. The others wait for the lease to go and
// reload. A Source is safe for concurrent use.
type Source struct {
	tenant  string
	app     SalesforceApp
	store   *Store
	tenants *Tenants
	metrics *metrics.Metrics
	log     *slog.Logger
	hc      *http.Client
	base    http.RoundTripper
	oauth   *oauth2.Config

	replica  string
	leaseTTL time.Duration
	poll     time.Duration
	margin   time.Duration
	now      func() time.Time

	flight singleflight.Group

	mu        sync.Mutex
	cur       *TokenSet // last token set seen, nil when unknown
	rejected  []string  // hashes of access tokens Salesforce refused (most recent last)
	failUntil time.Time // after a failed refresh, answer failErr until then
	failErr   error
	// seenLease is the other replica's lease we are waiting for and when we
	// first saw it: takeover needs a full LeaseTTL of our own clock too, so a
	// replica whose clock runs ahead cannot steal a live lease.
	seenLease   Lease
	seenLeaseAt time.Time
}

// refreshCooldown spaces token-endpoint attempts after a failure (endpoint
// down, timeout): callers get the last error instead of a new attempt each.
const refreshCooldown = time.Second

// NewSource builds the token source of opts.Tenant.
func NewSource(opts Options) (*Source, error) {
	var errs []error
	if opts.Tenant == "" {
		errs = append(errs, errors.New("auth: tenant is required"))
	}
	if opts.Sealer == nil {
		errs = append(errs, fmt.Errorf("tenant %s: auth: sealer is required", opts.Tenant))
	}
	if opts.Tokens == nil || opts.Tenants == nil {
		errs = append(errs, fmt.Errorf("tenant %s: auth: cs_tokens and cs_tenants buckets are required", opts.Tenant))
	}
	if opts.App.LoginURL == "" {
		errs = append(errs, fmt.Errorf("tenant %s: auth: salesforce login_url is required", opts.Tenant))
	}
	if opts.App.ClientID == "" {
		errs = append(errs, fmt.Errorf("tenant %s: auth: salesforce client_id is required", opts.Tenant))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	app := opts.App
	app.LoginURL = strings.TrimRight(app.LoginURL, "/")
	if app.SessionTTL <= 0 {
		app.SessionTTL = time.Hour
	}
	s := &Source{
		tenant:   opts.Tenant,
		app:      app,
		store:    NewStore(opts.Tokens, opts.Sealer),
		tenants:  NewTenants(opts.Tenants),
		metrics:  opts.Metrics,
		log:      opts.Logger,
		hc:       opts.HTTPClient,
		base:     opts.Transport,
		replica:  opts.Replica,
		leaseTTL: opts.LeaseTTL,
		poll:     opts.PollInterval,
		margin:   opts.ExpiryMargin,
		now:      opts.Now,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("tenant", s.tenant)
	if s.hc == nil {
		s.hc = &http.Client{Timeout: 30 * time.Second}
	}
	if s.base == nil {
		s.base = http.DefaultTransport
	}
	if s.replica == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		s.replica = hex.EncodeToString(b)
	}
	if s.leaseTTL <= 0 {
		s.leaseTTL = 30 * time.Second
	}
	if s.poll <= 0 {
		s.poll = 25 * time.Millisecond
	}
	if s.margin <= 0 {
		s.margin = min(app.SessionTTL/20, time.Minute)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.tenants.now = s.now
	s.oauth = &oauth2.Config{
		ClientID:     app.ClientID,
		ClientSecret: app.ClientSecret,
		RedirectURL:  app.RedirectURL,
		Scopes:       []string{"api", "refresh_token"},
		Endpoint: oauth2.Endpoint{
			AuthURL:  app.LoginURL + "/services/oauth2/authorize",
			TokenURL: app.LoginURL + "/services/oauth2/token",
			// One request per refresh: auto-detection would retry a failed
			// Basic attempt with params, which with rotation could replay.
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	return s, nil
}

// Tenant returns the tenant id of the source.
func (s *Source) Tenant() string { return s.tenant }

// Token returns a usable access token and the instance URL to call with it.
// Errors are classed: fault.Reconnect when the grant is gone (invalid_grant,
// nothing stored, disconnected), fault.Retryable otherwise.
func (s *Source) Token(ctx context.Context) (accessToken, instanceURL string, err error) {
	if ts := s.cached(); ts != nil {
		return ts.AccessToken, ts.InstanceURL, nil
	}
	if err := s.coolingDown(); err != nil {
		return "", "", err
	}
	ts, err := s.obtain(ctx, "")
	if err != nil {
		return "", "", err
	}
	return ts.AccessToken, ts.InstanceURL, nil
}

func (s *Source) coolingDown() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil && s.now().Before(s.failUntil) {
		return s.failErr
	}
	return nil
}

// Invalidate reports that Salesforce refused rejected (401 INVALID_SESSION_ID).
// It refreshes only if the stored access token is still the rejected one;
// otherwise another caller or replica already refreshed and it reloads.
func (s *Source) Invalidate(ctx context.Context, rejected string) error {
	if rejected == "" {
		return nil
	}
	h := tokenHash(rejected)
	s.mu.Lock()
	if s.cur != nil && s.cur.AccessToken == rejected {
		s.cur = nil
	}
	if !containsString(s.rejected, h) {
		s.rejected = append(s.rejected, h)
		if len(s.rejected) > 16 {
			s.rejected = s.rejected[len(s.rejected)-16:]
		}
	}
	s.mu.Unlock()
	if err := s.coolingDown(); err != nil {
		return err
	}
	_, err := s.obtain(ctx, h)
	return err
}

func (s *Source) cached() *TokenSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.cur.usable(s.now(), s.margin) && !containsString(s.rejected, tokenHash(s.cur.AccessToken)) {
		return s.cur
	}
	return nil
}

func (s *Source) setCached(ts *TokenSet) {
	s.mu.Lock()
	s.cur = ts
	s.mu.Unlock()
}

func (s *Source) isRejected(access string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return containsString(s.rejected, tokenHash(access))
}

// obtain runs load once per process for concurrent callers with the same
// rejected token. The shared work is detached from the first caller's
// context: a refresh that has started must finish and store the rotated token
// even if that caller gives up.
func (s *Source) obtain(ctx context.Context, rejectedHash string) (*TokenSet, error) {
	ch := s.flight.DoChan("token/"+rejectedHash, func() (any, error) {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*s.leaseTTL)
		defer cancel()
		return s.load(wctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*TokenSet), nil
	case <-ctx.Done():
		return nil, fault.New(fault.Retryable, "tenant "+s.tenant+": get salesforce token", ctx.Err())
	}
}

// load returns a usable token set from the store, refreshing it (under the
// lease) when it is expired or was rejected.
func (s *Source) load(ctx context.Context) (*TokenSet, error) {
	op := "tenant " + s.tenant + ": get salesforce token"
	for {
		if err := ctx.Err(); err != nil {
			return nil, fault.New(fault.Retryable, op, fmt.Errorf("waiting for a token refresh: %w", err))
		}
		ts, rev, err := s.store.Load(ctx, s.tenant)
		if errors.Is(err, ErrNotFound) {
			if err := s.bootstrap(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if errors.Is(err, ErrUnsealable) {
			// Retrying cannot help: pause the tenant until secrets.keys is
			// fixed or a new grant replaces the record.
			s.setConnectedMetric(0)
			return nil, fault.Errorf(fault.Reconnect, op, "stored tokens cannot be opened with secrets.keys (was a key removed too early?): %w", err)
		}
		if err != nil {
			return nil, fault.New(fault.Retryable, op, err)
		}
		if ts.Dead {
			s.setConnectedMetric(0)
			return nil, fault.Errorf(fault.Reconnect, op, "grant is dead (%s); reconnect the tenant", ts.DeadReason)
		}
		now := s.now()
		if ts.usable(now, s.margin) && !s.isRejected(ts.AccessToken) {
			s.setCached(ts)
			s.setConnectedMetric(1) // e.g. after a restart, before any refresh
			return ts, nil
		}
		if ts.RefreshToken == "" {
			s.setConnectedMetric(0)
			return nil, fault.Errorf(fault.Reconnect, op, "no refresh token stored; reconnect the tenant")
		}
		if ts.Lease != nil && s.leaseLive(*ts.Lease, now) {
			// Someone (maybe another flight of this process) is refreshing:
			// using the same refresh token now would replay it and kill the grant.
			s.wait(ctx, ts.Lease.Until.Sub(now))
			continue
		}
		if ts.Lease != nil {
			s.log.Warn("salesforce token refresh lease expired; taking it over", "holder", ts.Lease.Holder)
		}
		leased := *ts
		leased.Lease = &Lease{Holder: s.replica, Until: now.Add(s.leaseTTL)}
		leaseRev, err := s.store.Save(ctx, s.tenant, &leased, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fault.New(fault.Retryable, op, err)
		}
		next, err := s.refresh(ctx, &leased, leaseRev)
		if err != nil {
			return nil, err
		}
		if next == nil { // the grant was replaced while we refreshed: reload
			continue
		}
		return next, nil
	}
}

// leaseLive reports whether l still excludes us: until its end by the
// holder's clock, and, for clocks apart by less than LeaseTTL, for a full
// LeaseTTL after we first saw it by ours. The holder gives its token call
// only half a LeaseTTL, so it is done before anyone may take over.
func (s *Source) leaseLive(l Lease, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seenLease.Holder != l.Holder || !s.seenLease.Until.Equal(l.Until) {
		s.seenLease, s.seenLeaseAt = l, now
	}
	if now.Before(l.Until) {
		return true
	}
	return now.Before(s.seenLeaseAt.Add(s.leaseTTL)) && now.Before(l.Until.Add(s.leaseTTL))
}

func (s *Source) wait(ctx context.Context, atMost time.Duration) {
	d := min(s.poll, max(atMost, time.Millisecond))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// bootstrap stores the configured refresh token when nothing is stored, unless
// the tenant was disconnected on purpose.
func (s *Source) bootstrap(ctx context.Context) error {
	op := "tenant " + s.tenant + ": get salesforce token"
	if s.app.BootstrapRefreshToken == "" {
		return fault.Errorf(fault.Reconnect, op, "no salesforce grant stored; connect the tenant or import a refresh token")
	}
	st, _, err := s.tenants.Get(ctx, s.tenant)
	if err != nil {
		return fault.New(fault.Retryable, op, err)
	}
	if st.State == StateDisconnected {
		return fault.Errorf(fault.Reconnect, op, "tenant was disconnected; connect it again")
	}
	ts := &TokenSet{
		RefreshToken: s.app.BootstrapRefreshToken,
		InstanceURL:  s.app.InstanceURL,
		ConnectedAt:  s.now().UTC(),
	}
	_, err = s.store.Save(ctx, s.tenant, ts, 0)
	if errors.Is(err, ErrConflict) {
		return nil // another replica stored one first: use that
	}
	if err != nil {
		return fault.New(fault.Retryable, op, err)
	}
	s.log.Info("stored bootstrap salesforce refresh token from config")
	return nil
}

// refresh calls the token endpoint with the refresh token of leased (whose
// lease this replica holds at revision rev) and stores the result. It returns
// nil, nil when someone replaced the grant meanwhile.
func (s *Source) refresh(ctx context.Context, leased *TokenSet, rev uint64) (*TokenSet, error) {
	op := "tenant " + s.tenant + ": refresh salesforce token"
	s.log.Debug("refreshing salesforce access token", "generation", leased.Generation, "replica", s.replica)
	rctx, cancel := context.WithTimeout(ctx, s.leaseTTL/2)
	rctx = context.WithValue(rctx, oauth2.HTTPClient, s.hc)
	tok, err := s.oauth.TokenSource(rctx, &oauth2.Token{RefreshToken: leased.RefreshToken}).Token()
	cancel()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return nil, s.grantDied(ctx, leased, rev, re)
		}
		s.count("error")
		s.release(ctx, leased, rev)
		s.log.Warn("salesforce token refresh failed", "error", describeTokenError(err))
		ferr := fault.Errorf(fault.Retryable, op, "%s", describeTokenError(err))
		s.mu.Lock()
		s.failUntil, s.failErr = s.now().Add(refreshCooldown), ferr
		s.mu.Unlock()
		return nil, ferr
	}
	next := s.tokenSetFrom(tok, leased)
	next.Lease = nil
	next.Generation = leased.Generation + 1
	next.RefreshedAt = s.now().UTC()
	stored, err := s.saveRefreshed(ctx, leased, next, rev)
	if err != nil || stored == nil {
		return nil, err
	}
	s.count("success")
	s.setConnectedMetric(1)
	if err := s.tenants.SetConnected(ctx, s.tenant); err != nil {
		s.log.Warn("could not record tenant as connected", "error", err)
	}
	s.mu.Lock()
	s.cur, s.failErr = stored, nil
	s.mu.Unlock()
	s.log.Info("refreshed salesforce access token", "generation", stored.Generation,
		"expires_at", stored.Expiry.Format(time.RFC3339), "rotated", stored.RefreshToken != leased.RefreshToken)
	return stored, nil
}

// saveRefreshed stores next over the leased record. The rotated refresh token
// exists nowhere else, so transient store errors are retried until ctx ends.
func (s *Source) saveRefreshed(ctx context.Context, leased, next *TokenSet, rev uint64) (*TokenSet, error) {
	op := "tenant " + s.tenant + ": store refreshed salesforce token"
	for {
		_, err := s.store.Save(ctx, s.tenant, next, rev)
		if err == nil {
			return next, nil
		}
		if errors.Is(err, ErrConflict) {
			cur, curRev, lerr := s.store.Load(ctx, s.tenant)
			if lerr == nil && cur.Generation == leased.Generation && !cur.Dead {
				rev = curRev // same grant, touched by someone (e.g. a lease takeover): ours is the live one
				continue
			}
			if lerr == nil || errors.Is(lerr, ErrNotFound) {
				s.log.Warn("salesforce grant was replaced during a refresh; discarding the refreshed tokens")
				return nil, nil
			}
			err = lerr
		}
		if ctx.Err() != nil {
			s.log.Error("could not store the rotated salesforce refresh token; the tenant may need a reconnect", "error", err)
			return nil, fault.New(fault.Retryable, op, err)
		}
		s.wait(ctx, s.poll*4)
	}
}

// grantDied records an invalid_grant answer: the tenant needs a reconnect.
func (s *Source) grantDied(ctx context.Context, leased *TokenSet, rev uint64, re *oauth2.RetrieveError) error {
	reason := "refresh refused: invalid_grant"
	if re.ErrorDescription != "" {
		reason += ": " + re.ErrorDescription
	}
	s.count("invalid_grant")
	s.setConnectedMetric(0)
	dead := *leased
	dead.Dead, dead.DeadReason = true, reason
	dead.RefreshToken, dead.AccessToken, dead.Lease = "", "", nil
	if _, err := s.store.Save(ctx, s.tenant, &dead, rev); err != nil {
		_, _, err = s.store.Modify(ctx, s.tenant, func(cur *TokenSet) (*TokenSet, error) {
			if cur == nil || cur.Generation != leased.Generation || cur.Dead {
				return nil, nil // replaced by a new grant meanwhile: leave it
			}
			d := *cur
			d.Dead, d.DeadReason = true, reason
			d.RefreshToken, d.AccessToken, d.Lease = "", "", nil
			return &d, nil
		})
		if err != nil {
			s.log.Warn("could not record dead salesforce grant", "error", err)
		}
	}
	if err := s.tenants.SetNeedsReconnect(ctx, s.tenant, reason); err != nil {
		s.log.Warn("could not record tenant as needing reconnect", "error", err)
	}
	s.setCached(nil)
	s.log.Error("salesforce refused the refresh token; the tenant needs a reconnect", "reason", reason)
	desc := re.ErrorDescription
	if desc == "" {
		desc = "refresh token refused"
	}
	return &fault.Error{Class: fault.Reconnect, Op: "tenant " + s.tenant + ": refresh salesforce token",
		Code: "invalid_grant", Err: fmt.Errorf("%s; reconnect the tenant", desc)}
}

// release drops the lease after a failed refresh so others may try at once.
func (s *Source) release(ctx context.Context, leased *TokenSet, rev uint64) {
	free := *leased
	free.Lease = nil
	if _, err := s.store.Save(ctx, s.tenant, &free, rev); err != nil && !errors.Is(err, ErrConflict) {
		s.log.Warn("could not release salesforce refresh lease; it expires by itself", "error", err)
	}
}

// tokenSetFrom converts a token response, keeping what the response lacks
// from prev (an RFC 6749 provider does not rotate: keep the refresh token).
func (s *Source) tokenSetFrom(tok *oauth2.Token, prev *TokenSet) *TokenSet {
	next := &TokenSet{}
	if prev != nil {
		*next = *prev
	}
	next.AccessToken = tok.AccessToken
	if tok.RefreshToken != "" {
		next.RefreshToken = tok.RefreshToken
	}
	if v, ok := tok.Extra("instance_url").(string); ok && v != "" {
		next.InstanceURL = v
	}
	if s.app.InstanceURL != "" {
		next.InstanceURL = s.app.InstanceURL
	}
	if v, ok := tok.Extra("id").(string); ok && v != "" {
		next.ID = v
	}
	if v, ok := tok.Extra("scope").(string); ok && v != "" {
		next.Scope = v
	}
	now := s.now().UTC()
	next.IssuedAt = parseIssuedAt(tok.Extra("issued_at"))
	switch {
	case !tok.Expiry.IsZero(): // the provider said expires_in
		next.Expiry = tok.Expiry.UTC()
	default:
		base := next.IssuedAt
		// A far-off issued_at means clock skew: trust our clock, or a skewed
		// server would make every fresh token look expired.
		if base.IsZero() || base.Sub(now).Abs() > 5*time.Minute {
			base = now
		}
		next.Expiry = base.Add(s.app.SessionTTL)
	}
	return next
}

// parseIssuedAt reads Salesforce's issued_at: a string of epoch milliseconds
// (older docs say seconds; accept both, and a JSON number).
func parseIssuedAt(v any) time.Time {
	var n int64
	switch x := v.(type) {
	case string:
		i, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return time.Time{}
		}
		n = i
	case float64:
		n = int64(x)
	default:
		return time.Time{}
	}
	if n <= 0 {
		return time.Time{}
	}
	if n < 1e12 { // seconds
		return time.Unix(n, 0).UTC()
	}
	return time.UnixMilli(n).UTC()
}

// describeTokenError says what went wrong at the token endpoint without the
// response body (which a misbehaving server could fill with anything).
func describeTokenError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := "token endpoint answered"
		if re.Response != nil {
			msg += " " + re.Response.Status
		}
		if re.ErrorCode != "" {
			msg += ": " + re.ErrorCode
			if re.ErrorDescription != "" {
				msg += ": " + re.ErrorDescription
			}
		}
		return msg
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Sprintf("calling the token endpoint: %v", ue.Err)
	}
	return err.Error()
}

// storeGrant replaces the tenant's grant with ts (connect, import): a new
// generation that overrides any lease or dead grant. It clears
// needs_reconnect.
func (s *Source) storeGrant(ctx context.Context, ts *TokenSet) error {
	ts.ConnectedAt = s.now().UTC()
	_, _, err := s.store.Modify(ctx, s.tenant, func(cur *TokenSet) (*TokenSet, error) {
		n := *ts
		n.Generation = 1
		if cur != nil {
			n.Generation = cur.Generation + 1
		}
		n.Lease, n.Dead, n.DeadReason = nil, false, ""
		return &n, nil
	})
	if err != nil {
		return fmt.Errorf("tenant %s: store salesforce grant: %w", s.tenant, err)
	}
	s.mu.Lock()
	s.cur, s.rejected, s.failErr = nil, nil, nil
	s.mu.Unlock()
	if err := s.tenants.SetConnected(ctx, s.tenant); err != nil {
		return err
	}
	s.setConnectedMetric(1)
	return nil
}

// Import stores refreshToken (from `listener tokens import`) as the tenant's
// grant, replacing any stored one, and marks the tenant connected. The first
// Token call refreshes with it (and, with rotation, stores its successor).
func (s *Source) Import(ctx context.Context, refreshToken, instanceURL string) error {
	if strings.TrimSpace(refreshToken) == "" {
		return fmt.Errorf("tenant %s: import: refresh token is empty", s.tenant)
	}
	if instanceURL == "" {
		instanceURL = s.app.InstanceURL
	}
	if err := s.storeGrant(ctx, &TokenSet{RefreshToken: strings.TrimSpace(refreshToken), InstanceURL: instanceURL}); err != nil {
		return err
	}
	s.log.Info("imported salesforce refresh token")
	return nil
}

// Disconnect revokes the tenant's grant at Salesforce, deletes the stored
// tokens and marks the tenant disconnected. It first waits for a refresh in
// progress (so the token it revokes is the live one) and marks the stored
// grant dead (so no replica refreshes it meanwhile). The local deletion
// happens even if the revoke fails; the error then says so.
func (s *Source) Disconnect(ctx context.Context) error {
	var ts *TokenSet
	for {
		cur, rev, err := s.store.Load(ctx, s.tenant)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if errors.Is(err, ErrUnsealable) {
			s.log.Warn("stored salesforce tokens cannot be opened; deleting them without revoking")
			break
		}
		if err != nil {
			return err
		}
		if now := s.now(); cur.Lease != nil && s.leaseLive(*cur.Lease, now) {
			if ctx.Err() != nil {
				return fmt.Errorf("tenant %s: disconnect: waiting for a token refresh: %w", s.tenant, ctx.Err())
			}
			s.wait(ctx, cur.Lease.Until.Sub(now))
			continue
		}
		dead := *cur
		dead.Dead, dead.DeadReason = true, "disconnected by operator"
		dead.RefreshToken, dead.AccessToken, dead.Lease = "", "", nil
		if _, err := s.store.Save(ctx, s.tenant, &dead, rev); errors.Is(err, ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		ts = cur
		break
	}
	s.setCached(nil)
	s.setConnectedMetric(0)
	// Before the deletion, so that no replica bootstraps from config meanwhile.
	if err := s.tenants.SetDisconnected(ctx, s.tenant, "disconnected by operator"); err != nil {
		return err
	}
	var revokeErr error
	if ts != nil {
		tok := ts.RefreshToken // revoking it revokes its access tokens too
		if tok == "" {
			tok = ts.AccessToken
		}
		if tok != "" {
			revokeErr = s.revoke(ctx, tok)
		}
	}
	if err := s.store.Delete(ctx, s.tenant, 0); err != nil {
		return err
	}
	if revokeErr != nil {
		s.log.Warn("stored salesforce tokens deleted but revoke failed", "error", revokeErr)
		return fmt.Errorf("tenant %s: tokens deleted, but revoking at salesforce failed: %w", s.tenant, revokeErr)
	}
	s.log.Info("salesforce grant revoked and deleted")
	return nil
}

func (s *Source) revoke(ctx context.Context, token string) error {
	form := url.Values{"token": {token}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.app.LoginURL+"/services/oauth2/revoke", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("revoke: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "invalid_token"):
		return nil // already dead: the goal is reached
	default:
		return fmt.Errorf("revoke: salesforce answered %s", resp.Status)
	}
}

func (s *Source) count(outcome string) {
	if s.metrics != nil {
		s.metrics.TokenRefreshes.WithLabelValues(s.tenant, outcome).Inc()
	}
}

func (s *Source) setConnectedMetric(v float64) {
	if s.metrics != nil {
		s.metrics.TenantConnected.WithLabelValues(s.tenant).Set(v)
	}
}

// tokenHash names a token in memory without keeping it as a map key or
// singleflight key.
func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:12])
}

func containsString(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
