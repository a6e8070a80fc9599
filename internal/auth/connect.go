package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"
)

// DefaultStateTTL is how long a connect flow may take between StartURL and
// Finish.
const DefaultStateTTL = 10 * time.Minute

// ConnectOptions configure a Connector.
type ConnectOptions struct {
	// OAuth is the cs_oauth bucket holding pending flows (state -> sealed
	// tenant + PKCE verifier). Create it with TTL DefaultStateTTL so that
	// abandoned flows disappear by themselves.
	OAuth   jetstream.KeyValue
	Sealer  *Sealer
	Sources []*Source // one per tenant that may be connected
	Logger  *slog.Logger
	// StateTTL bounds a flow (default DefaultStateTTL), checked on Finish too.
	StateTTL time.Duration
	Now      func() time.Time
}

// Connector runs the Salesforce web-server flow with PKCE for any configured
// tenant: StartURL before the redirect, Finish on the callback.
type Connector struct {
	kv      jetstream.KeyValue
	sealer  *Sealer
	sources map[string]*Source
	log     *slog.Logger
	ttl     time.Duration
	now     func() time.Time
}

// pendingFlow is the sealed value stored under the state.
type pendingFlow struct {
	Tenant    string    `json:"tenant"`
	Verifier  string    `json:"verifier"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CallbackURL is the redirect URL to register in the connected app for a
// server reachable at publicURL (server.public_url).
func CallbackURL(publicURL string) string {
	return strings.TrimRight(publicURL, "/") + "/oauth/salesforce/callback"
}

// NewConnector builds a connector over the given sources.
func NewConnector(opts ConnectOptions) (*Connector, error) {
	if opts.OAuth == nil || opts.Sealer == nil {
		return nil, errors.New("auth: connector needs the cs_oauth bucket and a sealer")
	}
	c := &Connector{kv: opts.OAuth, sealer: opts.Sealer, sources: map[string]*Source{},
		log: opts.Logger, ttl: opts.StateTTL, now: opts.Now}
	for _, s := range opts.Sources {
		c.sources[s.tenant] = s
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.ttl <= 0 {
		c.ttl = DefaultStateTTL
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

func (c *Connector) source(tenant string) (*Source, error) {
	s, ok := c.sources[tenant]
	if !ok {
		return nil, fmt.Errorf("tenant %s: not configured for salesforce", tenant)
	}
	return s, nil
}

// StartURL creates a single-use state and PKCE verifier for tenant and
// returns the Salesforce authorize URL to redirect the operator to.
func (c *Connector) StartURL(ctx context.Context, tenant string) (string, error) {
	src, err := c.source(tenant)
	if err != nil {
		return "", err
	}
	if src.app.RedirectURL == "" {
		return "", fmt.Errorf("tenant %s: connect: no redirect url configured", tenant)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("tenant %s: connect: random state: %w", tenant, err)
	}
	state := base64.RawURLEncoding.EncodeToString(b) // also a valid KV key
	flow := pendingFlow{Tenant: tenant, Verifier: oauth2.GenerateVerifier(), ExpiresAt: c.now().Add(c.ttl).UTC()}
	pt, err := json.Marshal(flow)
	if err != nil {
		return "", err
	}
	blob, err := c.sealer.Seal(stateAAD(state), pt)
	if err != nil {
		return "", fmt.Errorf("tenant %s: connect: %w", tenant, err)
	}
	if _, err := c.kv.Create(ctx, state, blob); err != nil {
		return "", fmt.Errorf("tenant %s: connect: store state: %w", tenant, err)
	}
	c.log.Info("salesforce connect flow started", "tenant", tenant)
	return src.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(flow.Verifier)), nil
}

func stateAAD(state string) string { return "oauth-state/" + state }

// Finish handles the callback query: it consumes the state exactly once,
// exchanges the code with the PKCE verifier (one token request), stores the
// sealed tokens and marks the tenant connected. It returns the tenant when
// the state was known, even on error, so the result page can name it.
func (c *Connector) Finish(ctx context.Context, query url.Values) (string, error) {
	state := query.Get("state")
	if state == "" {
		return "", errors.New("salesforce callback: missing state")
	}
	e, err := c.kv.Get(ctx, state)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return "", errors.New("salesforce callback: unknown, expired or already used state; start the connection again")
	}
	if err != nil {
		return "", fmt.Errorf("salesforce callback: load state: %w", err)
	}
	// Consume first, with the revision we read: of two concurrent callbacks
	// with one state, exactly one gets past this line.
	if err := c.kv.Purge(ctx, state, jetstream.LastRevision(e.Revision())); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return "", errors.New("salesforce callback: state already used; start the connection again")
		}
		return "", fmt.Errorf("salesforce callback: consume state: %w", err)
	}
	pt, _, err := c.sealer.Open(stateAAD(state), e.Value())
	if err != nil {
		return "", fmt.Errorf("salesforce callback: %w", err)
	}
	var flow pendingFlow
	if err := json.Unmarshal(pt, &flow); err != nil {
		return "", fmt.Errorf("salesforce callback: decode state: %w", err)
	}
	tenant := flow.Tenant
	if !c.now().Before(flow.ExpiresAt) {
		return tenant, fmt.Errorf("tenant %s: connect: the flow expired; start the connection again", tenant)
	}
	if code := query.Get("error"); code != "" {
		desc := query.Get("error_description")
		if len(desc) > 200 {
			desc = desc[:200]
		}
		c.log.Warn("salesforce connect flow refused", "tenant", tenant, "error", code, "description", desc)
		if code == "access_denied" || code == "access-denied" {
			return tenant, fmt.Errorf("tenant %s: connect: access was denied at salesforce", tenant)
		}
		return tenant, fmt.Errorf("tenant %s: connect: salesforce answered %s: %s", tenant, code, desc)
	}
	code := query.Get("code")
	if code == "" {
		return tenant, fmt.Errorf("tenant %s: connect: callback has no code", tenant)
	}
	src, err := c.source(tenant)
	if err != nil {
		return tenant, err
	}
	xctx := context.WithValue(ctx, oauth2.HTTPClient, src.hc)
	tok, err := src.oauth.Exchange(xctx, code, oauth2.VerifierOption(flow.Verifier))
	if err != nil {
		c.log.Warn("salesforce code exchange failed", "tenant", tenant, "error", describeTokenError(err))
		return tenant, fmt.Errorf("tenant %s: connect: code exchange: %s", tenant, describeTokenError(err))
	}
	if tok.RefreshToken == "" {
		return tenant, fmt.Errorf("tenant %s: connect: salesforce granted no refresh token (the connected app must allow the refresh_token scope)", tenant)
	}
	ts := src.tokenSetFrom(tok, nil)
	ts.RefreshedAt = c.now().UTC()
	if err := src.storeGrant(ctx, ts); err != nil {
		return tenant, err
	}
	c.log.Info("salesforce connected", "tenant", tenant, "instance_url", ts.InstanceURL)
	return tenant, nil
}

// Import stores a refresh token for tenant (`listener tokens import`); see
// Source.Import.
func (c *Connector) Import(ctx context.Context, tenant, refreshToken, instanceURL string) error {
	src, err := c.source(tenant)
	if err != nil {
		return err
	}
	return src.Import(ctx, refreshToken, instanceURL)
}
