// Package onespan is a thin, honest client of the OneSpan Sign REST API: the
// package, its signed PDFs, the evidence summary, the package listing used by
// reconciliation and the account's callback registration. It has no business
// logic; its errors carry a fault class so the worker decides what to do.
package onespan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/countersign/countersign/internal/fault"
)

// Config says where the OneSpan account is and how to authenticate. Exactly
// one of APIKey or the ClientID/ClientSecret pair must be set.
type Config struct {
	// BaseURL is the OneSpan host, e.g. https://apps.esignlive.com (without /api).
	BaseURL string
	// APIKey is sent raw as "Authorization: Basic <APIKey>".
	APIKey string
	// ClientID and ClientSecret identify a Client App; its bearer tokens come
	// from <BaseURL>/apitoken/clientApp/accessToken.
	ClientID     string
	ClientSecret string
	// HTTPClient defaults to a client without an overall timeout (documents can
	// be large); callers bound requests with their context.
	HTTPClient *http.Client
	// Logger defaults to slog.Default(). Nothing secret is ever logged.
	Logger *slog.Logger
}

// Client calls one OneSpan account. It is safe for concurrent use.
type Client struct {
	base   *url.URL // BaseURL with no trailing slash
	http   *http.Client
	log    *slog.Logger
	apiKey string
	tokens *tokenSource // nil with API-key auth
}

// New checks cfg and builds a Client. It refuses both or neither auth method.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("onespan: base url is required")
	}
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("onespan: base url %q must be an absolute http(s) url", cfg.BaseURL)
	}
	hasKey := cfg.APIKey != ""
	hasApp := cfg.ClientID != "" || cfg.ClientSecret != ""
	switch {
	case hasKey && hasApp:
		return nil, errors.New("onespan: set either api key or client app (client id and secret), not both")
	case !hasKey && !hasApp:
		return nil, errors.New("onespan: no credentials: set api key or client app (client id and secret)")
	case hasApp && (cfg.ClientID == "" || cfg.ClientSecret == ""):
		return nil, errors.New("onespan: client app needs both client id and secret")
	}
	c := &Client{base: u, http: cfg.HTTPClient, log: cfg.Logger, apiKey: cfg.APIKey}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if hasApp {
		c.tokens = newTokenSource(c.http, u.String()+"/apitoken/clientApp/accessToken", cfg.ClientID, cfg.ClientSecret, c.log)
	}
	return c, nil
}

// authName names the credential in errors, so an operator knows what to fix.
func (c *Client) authName() string {
	if c.tokens != nil {
		return "client app " + c.tokens.clientID
	}
	return "api key"
}

// request describes one API call; body is kept as bytes so a 401 can replay it.
type request struct {
	op     string // for errors: "get package <id>"
	method string
	path   string // escaped, relative to <base>/api, starting with "/"
	query  url.Values
	body   []byte
	accept string
}

// do sends r with authentication. On a 401 with Client App auth it forces one
// token refresh and retries once. A non-2xx answer becomes a classed error and
// the body is closed; on success the caller owns resp.Body.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	resp, used, err := c.send(ctx, r, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && c.tokens != nil {
		drain(resp)
		c.log.DebugContext(ctx, "onespan token refused, refreshing once", "op", r.op)
		resp, _, err = c.send(ctx, r, used)
		if err != nil {
			return nil, err
		}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer drain(resp)
	return nil, c.statusError(r.op, resp)
}

// send makes one attempt. refused is a bearer token to replace rather than
// reuse; the token used is returned so a 401 can name it as refused.
func (c *Client) send(ctx context.Context, r request, refused string) (*http.Response, string, error) {
	var auth, tok string
	if c.tokens != nil {
		var err error
		tok, err = c.tokens.token(ctx, refused)
		if err != nil {
			return nil, "", fmt.Errorf("onespan %s: %w", r.op, err)
		}
		auth = "Bearer " + tok
	} else {
		auth = "Basic " + c.apiKey
	}
	u := c.base.String() + "/api" + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, "", fault.New(fault.Permanent, "onespan "+r.op, err)
	}
	req.Header.Set("Authorization", auth)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", r.accept)
	resp, err := c.http.Do(req)
	if err != nil {
		// Connection errors, timeouts and cancellation: try again later. The
		// url holds only ids, but drop it anyway to keep errors short.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, "", fault.New(fault.Retryable, "onespan "+r.op, err)
	}
	return resp, tok, nil
}

// apiError is OneSpan's error body; every field is optional.
type apiError struct {
	Code       int    `json:"code"`
	Name       string `json:"name"`
	Message    string `json:"message"`
	MessageKey string `json:"messageKey"`
}

// HTTPError is a non-2xx answer from OneSpan, wrapped in a *fault.Error.
type HTTPError struct {
	Status     int
	MessageKey string // OneSpan's messageKey, e.g. error.notFound..., when sent
	Message    string // OneSpan's message (or the start of the body)
}

func (e *HTTPError) Error() string {
	if e.Message == "" {
		return "http " + strconv.Itoa(e.Status)
	}
	return "http " + strconv.Itoa(e.Status) + ": " + e.Message
}

// StatusCode returns the HTTP status of an API error, or 0.
func StatusCode(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

// statusError classifies a non-2xx answer. 401 reaches here only after the
// one retry: for OneSpan that is configuration, not something time fixes.
func (c *Client) statusError(op string, resp *http.Response) error {
	var ae apiError
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	_ = json.Unmarshal(raw, &ae)
	he := &HTTPError{Status: resp.StatusCode, MessageKey: ae.MessageKey, Message: ae.Message}
	if he.Message == "" && ae.MessageKey == "" {
		he.Message = strings.TrimSpace(string(raw))
	}
	if len(he.Message) > 200 {
		he.Message = he.Message[:200] + "..."
	}
	e := &fault.Error{Op: "onespan " + op, Code: ae.MessageKey, Err: he}
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized:
		e.Class = fault.Permanent
		e.Err = fmt.Errorf("onespan refused the %s (check the tenant's onespan credentials): %w", c.authName(), he)
	case s == http.StatusTooManyRequests:
		e.Class = fault.Throttled
		e.Until = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	case s >= 500 || s == http.StatusRequestTimeout:
		e.Class = fault.Retryable
	default: // 400, 403, 404, 409...: the same request fails the same way
		e.Class = fault.Permanent
	}
	return e
}

// retryAfter reads a Retry-After header (seconds or HTTP date). Without one,
// wait a minute: OneSpan documents no rate-limit window.
func retryAfter(v string, now time.Time) time.Time {
	if v = strings.TrimSpace(v); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s >= 0 {
			return now.Add(time.Duration(s) * time.Second)
		}
		if t, err := http.ParseTime(v); err == nil {
			return t
		}
	}
	return now.Add(time.Minute)
}

// drain lets the connection be reused; bounded so a huge error body costs nothing.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// getJSON does a GET and decodes the JSON answer into v.
func (c *Client) getJSON(ctx context.Context, op, path string, q url.Values, v any) error {
	resp, err := c.do(ctx, request{op: op, method: http.MethodGet, path: path, query: q, accept: "application/json"})
	if err != nil {
		return err
	}
	defer drain(resp)
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		// A 2xx with a body we cannot read will not improve with retries.
		return fault.Errorf(fault.Permanent, "onespan "+op, "decode response: %w", err)
	}
	return nil
}

// stream does a GET whose body the caller reads and closes.
func (c *Client) stream(ctx context.Context, op, path, accept string) (io.ReadCloser, int64, error) {
	resp, err := c.do(ctx, request{op: op, method: http.MethodGet, path: path, accept: accept})
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// esc escapes one path segment: ids are base64-like and may hold "/" or "+".
func esc(id string) string { return url.PathEscape(id) }
