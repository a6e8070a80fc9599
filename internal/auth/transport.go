package auth

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/countersign/countersign/internal/fault"
)

// maxAuthErrorBody bounds how much of a 401 body is read to look for
// INVALID_SESSION_ID (Salesforce's is under 100 bytes).
const maxAuthErrorBody = 64 << 10

// Transport authorizes Salesforce REST requests with the source's access
// token. On 401 INVALID_SESSION_ID it invalidates that token (one refresh,
// single-flight across replicas) and replays the request once. It changes
// nothing else in the request.
type Transport struct {
	Source *Source
	Base   http.RoundTripper // default http.DefaultTransport
}

// Client returns an HTTP client whose requests carry the tenant's token.
func (s *Source) Client() *http.Client {
	return &http.Client{Transport: &Transport{Source: s, Base: s.base}}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	ctx := req.Context()
	access, _, err := t.Source.Token(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	first := req.Clone(ctx)
	first.Header.Set("Authorization", "Bearer "+access)
	resp, err := base.RoundTrip(first)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxAuthErrorBody))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil || !strings.Contains(string(body), "INVALID_SESSION_ID") {
		return resp, nil
	}
	op := "tenant " + t.Source.tenant + ": " + req.Method + " " + req.URL.Path
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		// Refresh anyway so the retry finds a good token.
		if err := t.Source.Invalidate(ctx, access); err != nil {
			return nil, err
		}
		return nil, &fault.Error{Class: fault.Retryable, Op: op, Code: "INVALID_SESSION_ID",
			Err: errUnreplayable}
	}
	if err := t.Source.Invalidate(ctx, access); err != nil {
		return nil, err
	}
	access, _, err = t.Source.Token(ctx)
	if err != nil {
		return nil, err
	}
	replay := req.Clone(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		b, err := req.GetBody()
		if err != nil {
			return nil, &fault.Error{Class: fault.Retryable, Op: op, Code: "INVALID_SESSION_ID", Err: err}
		}
		replay.Body = b
	}
	replay.Header.Set("Authorization", "Bearer "+access)
	return base.RoundTrip(replay)
}

var errUnreplayable = errors.New("session expired and the request body cannot be replayed; the upload will be retried from its source")

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
