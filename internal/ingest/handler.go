package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/queue"
)

// Publisher stores a callback and returns after the PubAck.
type Publisher interface {
	Publish(ctx context.Context, c queue.Callback) (queue.Published, error)
}

// Options configures the callback handler.
type Options struct {
	Tenants        map[string]*config.Tenant
	MaxBodyBytes   int64
	Publisher      Publisher
	Metrics        *metrics.Metrics
	Logger         *slog.Logger
	PublishTimeout time.Duration // default 5s
	// Auth failures tolerated per address and window before 429.
	MaxAuthFailures   int           // default 10
	AuthFailureWindow time.Duration // default 1m
	Now               func() time.Time
	// CallbackTokens, when set, serves POST /oauth2/token for the tenants'
	// callback_clients and accepts its bearer tokens beside the keys.
	CallbackTokens CallbackTokens
}

// Handler serves POST /v1/callbacks/{tenant}.
type Handler struct {
	o       Options
	keys    map[string]*keyring
	limiter *auth.FailureLimiter
}

// noEvent labels outcomes decided before the body was read.
const noEvent = "none"

// MetricEvents are the event label values pre-initialized per tenant.
func MetricEvents() []string {
	return append(append([]string{}, callback.Names...), callback.Other, noEvent)
}

// New builds the handler.
func New(o Options) *Handler {
	if o.PublishTimeout == 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.MaxAuthFailures == 0 {
		o.MaxAuthFailures = 10
	}
	if o.AuthFailureWindow == 0 {
		o.AuthFailureWindow = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{o: o, keys: map[string]*keyring{}, limiter: auth.NewFailureLimiter(o.MaxAuthFailures, o.AuthFailureWindow, auth.DefaultLimiterCapacity, nil)}
	for id, t := range o.Tenants {
		h.keys[id] = newKeyring(t.CallbackKeys)
		o.Metrics.InitIngest(id, MetricEvents())
	}
	o.Metrics.InitIngest(metrics.UnknownTenant, []string{noEvent})
	return h
}

// Register adds the callback route to e.
func (h *Handler) Register(e *echo.Echo) {
	e.POST("/v1/callbacks/:tenant", h.serve)
	if h.o.CallbackTokens != nil {
		e.POST(TokenPath, h.tokenEndpoint())
	}
}

// Answer is the 200 body.
type Answer struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// unauthorized is the one body for a bad key, a missing key and an unknown
// tenant alike, so tenants cannot be enumerated.
var unauthorized = errorBody{Error: "unauthorized"}

func (h *Handler) serve(c echo.Context) error {
	start := h.o.Now()
	req := c.Request()
	tenant := c.Param("tenant")
	ip := c.RealIP()
	keys, known := h.keys[tenant]
	label := tenant
	if !known {
		label = metrics.UnknownTenant // never a label value chosen by the caller
	}
	count := func(event, outcome string) {
		h.o.Metrics.CallbacksReceived.WithLabelValues(label, event, outcome).Inc()
	}

	if blocked, left := h.limiter.Blocked(ip); blocked {
		count(noEvent, "rate_limited")
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(left.Seconds())+1))
		return c.JSON(http.StatusTooManyRequests, errorBody{Error: "too many failed attempts"})
	}
	if !known {
		keys = decoy
	}
	authz := req.Header.Get(echo.HeaderAuthorization)
	if ok, why := h.authorized(tenant, keys, authz); !ok || !known {
		h.limiter.Fail(ip)
		count(noEvent, "unauthorized")
		h.o.Logger.WarnContext(req.Context(), "callback refused: bad or missing callback key", "tenant", label, "remote", ip, "reason", why)
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, h.challenge(authz))
		return c.JSON(http.StatusUnauthorized, unauthorized)
	}

	if req.ContentLength > h.o.MaxBodyBytes {
		count(noEvent, "too_large")
		return c.JSON(http.StatusRequestEntityTooLarge, errorBody{Error: "body over " + strconv.FormatInt(h.o.MaxBodyBytes, 10) + " bytes"})
	}
	if !isJSON(req.Header.Get(echo.HeaderContentType)) {
		count(noEvent, "invalid")
		return c.JSON(http.StatusUnsupportedMediaType, errorBody{Error: "content type must be application/json"})
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, h.o.MaxBodyBytes+1))
	if err != nil {
		count(noEvent, "invalid")
		return c.JSON(http.StatusBadRequest, errorBody{Error: "could not read body"})
	}
	if int64(len(body)) > h.o.MaxBodyBytes {
		count(noEvent, "too_large")
		return c.JSON(http.StatusRequestEntityTooLarge, errorBody{Error: "body over " + strconv.FormatInt(h.o.MaxBodyBytes, 10) + " bytes"})
	}
	ev, err := callback.Parse(body)
	if err != nil {
		count(noEvent, "invalid")
		h.o.Logger.InfoContext(req.Context(), "callback rejected", "tenant", tenant, "reason", err.Error())
		return c.JSON(http.StatusBadRequest, errorBody{Error: err.Error()})
	}

	key := ev.Key(tenant)
	event := callback.Label(ev.Name)
	// Attributes are passed per line rather than with Logger.With, which
	// would run the redacting handler on every request even when no line is
	// written.
	attrs := []any{"tenant", tenant, "event", ev.Name, "package", ev.PackageID, "event_key", key}
	ctx, cancel := context.WithTimeout(req.Context(), h.o.PublishTimeout)
	defer cancel()
	pub, err := h.o.Publisher.Publish(ctx, queue.Callback{
		Tenant: tenant, Event: ev, Body: body, MsgID: key,
		Source: queue.SourceCallback, ReceivedAt: start,
	})
	if err != nil {
		// No PubAck, no 2xx: OneSpan does not resend, so the sender must
		// see the failure (and its failure e-mail) rather than a lie.
		count(event, "unavailable")
		h.o.Logger.ErrorContext(ctx, "callback not persisted", append(attrs, "error", err, "timeout", errors.Is(err, context.DeadlineExceeded))...)
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, errorBody{Error: "queue unavailable, retry later"})
	}
	outcome := "accepted"
	if pub.Duplicate {
		outcome = "duplicate"
	}
	count(event, outcome)
	h.o.Metrics.CallbackIngest.WithLabelValues(tenant).Observe(h.o.Now().Sub(start).Seconds())
	h.o.Logger.InfoContext(ctx, "callback stored", append(attrs, "seq", pub.Sequence, "duplicate", pub.Duplicate)...)
	return c.JSON(http.StatusOK, Answer{ID: key, Duplicate: pub.Duplicate})
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}
