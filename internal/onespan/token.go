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
	"sync"
	"time"

	"github.com/countersign/countersign/internal/fault"
)

const (
	// refreshMargin: the SDK refreshes when less than 60 s remain.
	refreshMargin = time.Minute
	// defaultTokenLifetime is assumed when the answer has no expiresAt; the
	// admin guide calls tokens "short-lived (e.g., 30-minute)", so stay well under.
	defaultTokenLifetime = 5 * time.Minute
	tokenRequestTimeout  = 30 * time.Second
)

// tokenSource caches a Client App access token and refreshes it before it
// expires. Concurrent callers share one in-flight request.
type tokenSource struct {
	http     *http.Client
	url      string
	clientID string
	secret   string
	log      *slog.Logger
	now      func() time.Time

	mu        sync.Mutex
	tok       string
	refreshAt time.Time   // after this, fetch a new token
	flight    *tokenFetch // non-nil while a request is in progress
}

type tokenFetch struct {
	done chan struct{}
	tok  string
	err  error
}

func newTokenSource(hc *http.Client, tokenURL, clientID, secret string, log *slog.Logger) *tokenSource {
	return &tokenSource{http: hc, url: tokenURL, clientID: clientID, secret: secret, log: log, now: time.Now}
}

// token returns a valid token. refused is a token the API just answered 401
// to: it is not handed out again, and callers that saw the same refusal share
// one fetch instead of each forcing their own.
func (ts *tokenSource) token(ctx context.Context, refused string) (string, error) {
	ts.mu.Lock()
	if ts.flight == nil {
		fresh := ts.tok != "" && ts.now().Before(ts.refreshAt) && ts.tok != refused
		if fresh {
			tok := ts.tok
			ts.mu.Unlock()
			return tok, nil
		}
		f := &tokenFetch{done: make(chan struct{})}
		ts.flight = f
		// The fetch outlives any one caller's cancellation: others may wait on it.
		go ts.fetch(context.WithoutCancel(ctx), f, ts.tok)
	}
	f := ts.flight
	ts.mu.Unlock()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return "", fault.New(fault.Retryable, "onespan client app "+ts.clientID+" token", ctx.Err())
	}
}

func (ts *tokenSource) fetch(ctx context.Context, f *tokenFetch, old string) {
	ctx, cancel := context.WithTimeout(ctx, tokenRequestTimeout)
	defer cancel()
	start := ts.now()
	tok, exp, err := ts.request(ctx)
	ts.mu.Lock()
	if err == nil {
		life := exp.Sub(start)
		margin := refreshMargin
		// Short-lived tokens (sandbox, tests) would otherwise be refreshed on every call.
		if margin > life/2 {
			margin = max(life/2, 0)
		}
		ts.tok, ts.refreshAt = tok, exp.Add(-margin)
	}
	ts.flight = nil
	f.tok, f.err = tok, err
	ts.mu.Unlock()
	close(f.done)
	if err != nil {
		ts.log.WarnContext(ctx, "onespan client app token request failed", "client_id", ts.clientID, "error", err)
		return
	}
	ts.log.DebugContext(ctx, "onespan client app token obtained", "client_id", ts.clientID,
		"expires_at", exp.UTC().Format(time.RFC3339), "replaced", old != "")
}

type tokenRequest struct {
	ClientID string `json:"clientId"`
	Secret   string `json:"secret"`
	Type     string `json:"type"`
}

type tokenResponse struct {
	AccessToken string `json:"accessToken"`
	ExpiresAt   int64  `json:"expiresAt"` // epoch milliseconds
}

// request asks for a token. Errors name the client app, never the secret.
func (ts *tokenSource) request(ctx context.Context) (string, time.Time, error) {
	op := "onespan client app " + ts.clientID + " token"
	body, _ := json.Marshal(tokenRequest{ClientID: ts.clientID, Secret: ts.secret, Type: "OWNER"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.url, bytes.NewReader(body))
	if err != nil {
		return "", time.Time{}, fault.New(fault.Permanent, op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := ts.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", time.Time{}, fault.New(fault.Retryable, op, err)
	}
	defer drain(resp)
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
	case s == http.StatusTooManyRequests:
		e := fault.Errorf(fault.Throttled, op, "http %d", s)
		e.Until = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		return "", time.Time{}, e
	case s >= 500 || s == http.StatusRequestTimeout:
		return "", time.Time{}, fault.Errorf(fault.Retryable, op, "http %d", s)
	default:
		// The body is not echoed: a token endpoint may repeat what it was sent.
		return "", time.Time{}, fault.Errorf(fault.Permanent, op,
			"onespan refused the client app %s (http %d): check its client id and secret", ts.clientID, s)
	}
	var tr tokenResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&tr); err != nil {
		return "", time.Time{}, fault.Errorf(fault.Retryable, op, "decode token response: %w", err)
	}
	if tr.AccessToken == "" {
		return "", time.Time{}, fault.Errorf(fault.Retryable, op, "token response has no accessToken")
	}
	exp := time.UnixMilli(tr.ExpiresAt)
	if tr.ExpiresAt == 0 {
		exp = ts.now().Add(defaultTokenLifetime)
	}
	return tr.AccessToken, exp, nil
}

// String keeps the secret out of any %v of the client.
func (ts *tokenSource) String() string {
	return "onespan client app " + strconv.Quote(ts.clientID)
}

var _ fmt.Stringer = (*tokenSource)(nil)
