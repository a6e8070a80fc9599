package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	startPath    = "/oauth/salesforce/start"
	callbackPath = "/oauth/salesforce/callback"
	// outcomePrefix keys the last connect outcome per tenant in cs_oauth
	// (it expires with the bucket's TTL, like states and tickets).
	outcomePrefix = "outcome."
)

// ConnectOutcome is the result of the latest connect flow of a tenant.
type ConnectOutcome struct {
	At        time.Time `json:"at"`
	Connected bool      `json:"connected"`
	Error     string    `json:"error,omitempty"`
}

func (a *Admin) registerOAuth(g *echo.Group) {
	g.GET("/start", a.start)
	g.GET("/callback", a.callback)
}

// start sends the operator's browser to Salesforce's authorize page. It is
// allowed to an operator (bearer token, or the page's session once it
// exists) or to whoever holds a single-use ticket for the tenant.
func (a *Admin) start(c echo.Context) error {
	tenant := c.QueryParam("tenant")
	ticket := c.QueryParam("ticket")
	ctx := c.Request().Context()
	via := "ticket"
	if ticket == "" || c.Request().Header.Get(echo.HeaderAuthorization) != "" {
		ok, err := a.auth.Authenticate(c, denyPage, a.auth.operatorCredentials()...)
		if !ok {
			return err
		}
		via, _ = c.Get(PrincipalKey).(string)
	} else {
		if blocked, retry := a.auth.blocked(c); blocked {
			c.Response().Header().Set("Retry-After", fmt.Sprint(retry))
			return denyPage(c, http.StatusTooManyRequests, "too many failed attempts")
		}
		if err := a.tickets.consume(ctx, tenant, ticket); err != nil {
			if errors.Is(err, errTicket) {
				return a.auth.Refuse(c, denyPage, "ticket")
			}
			a.log.Error("connect ticket check failed", "error", err)
			return renderPage(c, http.StatusServiceUnavailable, pageUnavailable(tenant))
		}
		c.Set(PrincipalKey, "ticket")
	}
	if a.source(tenant) == nil {
		return renderPage(c, http.StatusNotFound, pageUnknownTenant())
	}
	u, err := a.o.Connector.StartURL(ctx, tenant)
	if err != nil {
		a.log.Error("salesforce connect flow could not start", "tenant", tenant, "error", err)
		return renderPage(c, http.StatusServiceUnavailable, pageUnavailable(tenant))
	}
	a.log.Info("salesforce connect flow: redirecting to authorize", "tenant", tenant, "via", via)
	return c.Redirect(http.StatusFound, u)
}

// callback is where Salesforce sends the browser back: the connector checks
// the state, exchanges the code and stores the grant; the page says how it
// went. Nothing is stored on failure.
func (a *Admin) callback(c echo.Context) error {
	q := c.QueryParams()
	ctx := c.Request().Context()
	tenant, err := a.o.Connector.Finish(ctx, q)
	if err == nil {
		a.recordOutcome(ctx, tenant, nil)
		a.log.Info("salesforce connect flow finished", "tenant", tenant, "outcome", "connected")
		var instance string
		if src := a.source(tenant); src != nil {
			if info, ierr := src.Info(ctx); ierr == nil {
				instance = info.InstanceURL
			}
		}
		return renderPage(c, http.StatusOK, pageConnected(tenant, instance))
	}
	if tenant == "" {
		// The state was missing, unknown, expired or already used: the
		// request proves nothing, so nothing is recorded for any tenant.
		a.log.Warn("salesforce callback refused", "outcome", "bad_state", "error", err)
		return renderPage(c, http.StatusBadRequest, pageBadState(err))
	}
	a.recordOutcome(ctx, tenant, err)
	var p page
	status := http.StatusBadGateway
	switch code := q.Get("error"); {
	case code == "access_denied" || code == "access-denied":
		status, p = http.StatusForbidden, pageDenied(tenant)
	case code != "":
		status, p = http.StatusBadRequest, pageRefused(tenant, err)
	default:
		p = pageTokenError(tenant, err)
	}
	a.log.Warn("salesforce connect flow failed", "tenant", tenant, "status", status, "error", err)
	return renderPage(c, status, p)
}

func (a *Admin) recordOutcome(ctx context.Context, tenant string, ferr error) {
	o := ConnectOutcome{At: a.now().UTC(), Connected: ferr == nil}
	if ferr != nil {
		o.Error = scrub(ferr.Error())
	}
	val, err := json.Marshal(o)
	if err == nil {
		_, err = a.o.Queue.OAuth().Put(ctx, outcomePrefix+tenant, val)
	}
	if err != nil {
		a.log.Warn("could not record connect outcome", "tenant", tenant, "error", err)
	}
}

func (a *Admin) lastConnect(ctx context.Context, tenant string) (*ConnectOutcome, error) {
	e, err := a.o.Queue.OAuth().Get(ctx, outcomePrefix+tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tenant %s: last connect outcome: %w", tenant, err)
	}
	var o ConnectOutcome
	if err := json.Unmarshal(e.Value(), &o); err != nil {
		return nil, nil
	}
	return &o, nil
}
