package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/sfpush"
)

// StateNeverConnected is the state of a tenant with no cs_tenants record.
const StateNeverConnected = "never_connected"

// Tenant is the admin view of one tenant. It never holds a token.
type Tenant struct {
	ID string `json:"id"`
	// State is connected, needs_reconnect, disconnected or never_connected.
	State          string     `json:"state"`
	Reason         string     `json:"reason,omitempty"`
	ThrottledUntil *time.Time `json:"throttled_until,omitempty"`
	StateChangedAt *time.Time `json:"state_changed_at,omitempty"`

	// Grant reports what is stored in cs_tokens.
	Grant Grant `json:"grant"`

	// PendingMessages are callbacks waiting for delivery (pending plus
	// delivered but not yet acknowledged) on consumer deliver-<tenant>.
	PendingMessages uint64 `json:"pending_messages"`
	DeadLetters     uint64 `json:"dead_letters"`
	// APIUsageRatio is the last Sforce-Limit-Info used/limit seen by this
	// process (absent in a process that does not deliver).
	APIUsageRatio *float64 `json:"api_usage_ratio,omitempty"`

	// LastConnect is the outcome of the latest connect flow (kept for
	// queue.OAuthTTL), so that `listener connect` can report a refusal.
	LastConnect *ConnectOutcome `json:"last_connect,omitempty"`
}

// Grant is the non-secret part of a tenant's stored grant.
type Grant struct {
	Stored      bool       `json:"stored"`
	Usable      bool       `json:"usable"`
	Unsealable  bool       `json:"unsealable,omitempty"`
	DeadReason  string     `json:"dead_reason,omitempty"`
	InstanceURL string     `json:"instance_url,omitempty"`
	IdentityURL string     `json:"identity_url,omitempty"`
	Scope       string     `json:"scope,omitempty"`
	ConnectedAt *time.Time `json:"connected_at,omitempty"`
	LastRefresh *time.Time `json:"last_refresh,omitempty"`
	// TokenAgeSeconds is the time since the refresh token was last used or
	// obtained: what idle-expiry policies ("expire if not used for N") count.
	TokenAgeSeconds *int64     `json:"token_age_seconds,omitempty"`
	SessionExpiry   *time.Time `json:"session_expires_at,omitempty"`
	Refreshing      bool       `json:"refreshing,omitempty"`
}

// TenantList is the answer of GET /tenants.
type TenantList struct {
	Tenants []Tenant `json:"tenants"`
}

func (a *Admin) registerTenants(g *echo.Group) {
	g.GET("/tenants", a.listTenants)
	g.GET("/tenants/:tenant", a.getTenant)
	g.POST("/tenants/:tenant/connect", a.mintTicket)
	g.POST("/tenants/:tenant/tokens", a.importTokens)
	g.POST("/tenants/:tenant/disconnect", a.disconnect)
}

func (a *Admin) listTenants(c echo.Context) error {
	ctx := c.Request().Context()
	out := TenantList{Tenants: make([]Tenant, 0, len(a.tenants))}
	for _, id := range a.tenants {
		t, err := a.tenantView(ctx, id)
		if err != nil {
			return a.internal(c, err)
		}
		out.Tenants = append(out.Tenants, t)
	}
	return c.JSON(http.StatusOK, out)
}

func (a *Admin) getTenant(c echo.Context) error {
	id := c.Param("tenant")
	if a.source(id) == nil {
		return unknownTenant(c, id)
	}
	t, err := a.tenantView(c.Request().Context(), id)
	if err != nil {
		return a.internal(c, err)
	}
	return c.JSON(http.StatusOK, t)
}

// internal logs err and answers 503: every failure here is NATS being
// unavailable or slow.
func (a *Admin) internal(c echo.Context, err error) error {
	a.log.Error("admin request failed", "path", c.Path(), "error", err)
	return jsonError(c, http.StatusServiceUnavailable, err.Error())
}

// tenantView gathers a tenant's state from cs_tenants, cs_tokens, the
// tenant's consumer and the DEADLETTER stream.
func (a *Admin) tenantView(ctx context.Context, id string) (Tenant, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	t := Tenant{ID: id, State: StateNeverConnected}
	st, _, err := a.o.States.Get(ctx, id)
	if err != nil {
		return t, err
	}
	if st.State != "" {
		t.State, t.Reason = st.State, st.Reason
	}
	if !st.UpdatedAt.IsZero() {
		t.StateChangedAt = timePtr(st.UpdatedAt)
	}
	if until := st.Throttle(); a.now().Before(until) {
		t.ThrottledUntil = timePtr(until)
	}
	if src := a.source(id); src != nil {
		info, err := src.Info(ctx)
		if err != nil {
			return t, err
		}
		t.Grant = a.grantView(info)
	}
	if t.PendingMessages, err = a.pending(ctx, id); err != nil {
		return t, err
	}
	if t.DeadLetters, err = sfpush.DeadLetterCount(ctx, a.o.Queue.JetStream(), id); err != nil {
		return t, fmt.Errorf("tenant %s: dead letters: %w", id, err)
	}
	t.APIUsageRatio = a.apiUsage(id)
	if t.LastConnect, err = a.lastConnect(ctx, id); err != nil {
		return t, err
	}
	return t, nil
}

func (a *Admin) grantView(info auth.GrantInfo) Grant {
	g := Grant{
		Stored:      info.Stored,
		Usable:      info.Usable,
		Unsealable:  info.Unsealable,
		DeadReason:  info.DeadReason,
		InstanceURL: info.InstanceURL,
		IdentityURL: info.IdentityURL,
		Scope:       info.Scope,
		ConnectedAt: timePtr(info.ConnectedAt),
		LastRefresh: timePtr(info.RefreshedAt),
		Refreshing:  info.Refreshing,
	}
	if info.Usable {
		g.SessionExpiry = timePtr(info.SessionExpiry)
		used := info.RefreshedAt
		if used.IsZero() || info.ConnectedAt.After(used) {
			used = info.ConnectedAt
		}
		if !used.IsZero() {
			age := int64(a.now().Sub(used).Seconds())
			g.TokenAgeSeconds = &age
		}
	}
	return g
}

// pending is NumPending+NumAckPending of deliver-<tenant>; 0 before the
// worker created the consumer.
func (a *Admin) pending(ctx context.Context, id string) (uint64, error) {
	cons, err := a.o.Queue.JetStream().Consumer(ctx, queue.CallbacksStream, sfpush.ConsumerName(id))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("tenant %s: consumer: %w", id, err)
	}
	info := cons.CachedInfo() // fetched by Consumer just now
	if info == nil {
		return 0, nil
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

func (a *Admin) apiUsage(id string) *float64 {
	if a.o.Metrics == nil {
		return nil
	}
	var m dto.Metric
	if err := a.o.Metrics.SalesforceAPIUsage.WithLabelValues(id).Write(&m); err != nil || m.Gauge == nil {
		return nil
	}
	v := m.Gauge.GetValue()
	return &v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// TicketAnswer is the answer of POST /tenants/{tenant}/connect.
type TicketAnswer struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (a *Admin) mintTicket(c echo.Context) error {
	id := c.Param("tenant")
	if a.source(id) == nil {
		return unknownTenant(c, id)
	}
	ticket, exp, err := a.tickets.mint(c.Request().Context(), id)
	if err != nil {
		return a.internal(c, err)
	}
	q := url.Values{"tenant": {id}, "ticket": {ticket}}
	u := strings.TrimRight(a.o.Config.Server.PublicURL, "/") + startPath + "?" + q.Encode()
	a.log.Info("salesforce connect link issued", "tenant", id, "expires_at", exp.Format(time.RFC3339))
	return c.JSON(http.StatusCreated, TicketAnswer{URL: u, ExpiresAt: exp})
}

// TokensRequest is the body of POST /tenants/{tenant}/tokens.
type TokensRequest struct {
	RefreshToken string `json:"refresh_token"`
	InstanceURL  string `json:"instance_url"`
	// SkipVerify stores the token without trying it at Salesforce.
	SkipVerify bool `json:"skip_verify"`
}

// TokensAnswer is the answer of POST /tenants/{tenant}/tokens.
type TokensAnswer struct {
	Tenant   Tenant `json:"tenant"`
	Verified bool   `json:"verified"`
	// VerifyError says why Salesforce refused the imported token.
	VerifyError string `json:"verify_error,omitempty"`
}

func (a *Admin) importTokens(c echo.Context) error {
	id := c.Param("tenant")
	src := a.source(id)
	if src == nil {
		return unknownTenant(c, id)
	}
	var req TokensRequest
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, 16<<10))
	if err != nil {
		return jsonError(c, http.StatusBadRequest, "could not read body")
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return jsonError(c, http.StatusBadRequest, "body must be JSON {\"refresh_token\": ..., \"instance_url\": ...}")
	}
	if strings.TrimSpace(req.RefreshToken) == "" {
		return jsonError(c, http.StatusBadRequest, "refresh_token is required")
	}
	if req.InstanceURL != "" {
		u, err := url.Parse(req.InstanceURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return jsonError(c, http.StatusBadRequest, "instance_url must be an https URL such as https://mydomain.my.salesforce.com")
		}
	}
	ctx := c.Request().Context()
	if err := src.Import(ctx, req.RefreshToken, req.InstanceURL); err != nil {
		return a.internal(c, err)
	}
	a.log.Info("salesforce refresh token imported", "tenant", id)
	ans := TokensAnswer{}
	if !req.SkipVerify {
		vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, _, err := src.Token(vctx)
		cancel()
		if err != nil {
			ans.VerifyError = err.Error()
			a.log.Warn("imported salesforce refresh token did not work", "tenant", id, "error", err)
		} else {
			ans.Verified = true
		}
	}
	if ans.Tenant, err = a.tenantView(ctx, id); err != nil {
		return a.internal(c, err)
	}
	return c.JSON(http.StatusOK, ans)
}

// DisconnectAnswer is the answer of POST /tenants/{tenant}/disconnect.
type DisconnectAnswer struct {
	Tenant Tenant `json:"tenant"`
	// Warning is set when the tokens were deleted here but revoking them at
	// Salesforce failed (revoke them in Salesforce's Connected Apps OAuth Usage).
	Warning string `json:"warning,omitempty"`
}

func (a *Admin) disconnect(c echo.Context) error {
	id := c.Param("tenant")
	src := a.source(id)
	if src == nil {
		return unknownTenant(c, id)
	}
	ctx := c.Request().Context()
	derr := src.Disconnect(ctx)
	t, err := a.tenantView(ctx, id)
	if err != nil {
		return a.internal(c, err)
	}
	ans := DisconnectAnswer{Tenant: t}
	if derr != nil {
		if t.State != auth.StateDisconnected || t.Grant.Stored {
			return a.internal(c, derr)
		}
		ans.Warning = derr.Error()
	}
	a.log.Info("salesforce tenant disconnected by operator", "tenant", id, "revoke_failed", derr != nil)
	return c.JSON(http.StatusOK, ans)
}
