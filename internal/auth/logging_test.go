package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// secretTap sits under the token-endpoint client and collects every secret
// that crosses the wire: codes, verifiers, client secret, tokens.
type secretTap struct {
	mu      sync.Mutex
	secrets map[string]bool
}

func (s *secretTap) add(v string) {
	if len(v) >= 8 {
		s.mu.Lock()
		s.secrets[v] = true
		s.mu.Unlock()
	}
}

func (s *secretTap) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(b))
		form, _ := url.ParseQuery(string(b))
		for _, k := range []string{"code", "code_verifier", "client_secret", "refresh_token", "token"} {
			s.add(form.Get(k))
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if json.Unmarshal(b, &tok) == nil {
		s.add(tok.AccessToken)
		s.add(tok.RefreshToken)
	}
	return resp, nil
}

// Over a whole life (connect, use, expiry and 401 replay, rotation,
// revocation, import, disconnect) at debug level, no token, client secret,
// code or PKCE verifier reaches the log, nor an error message.
func TestNoSecretIsEverLogged(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, func(o *sfsandbox.Options) { o.RotateRefreshTokens = true })
	var logs syncBuffer
	h.logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tap := &secretTap{secrets: map[string]bool{testClientSecret: true}}
	hc := &http.Client{Transport: tap}
	a := h.source(func(o *Options) { o.HTTPClient = hc })
	b := h.source(func(o *Options) { o.HTTPClient = hc })
	c := h.connector(a)
	var errs []error

	start, err := c.StartURL(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(start)
	if e, err := h.kv.oauth.Get(ctx, u.Query().Get("state")); err == nil {
		pt, _, _ := h.sealer.Open(stateAAD(u.Query().Get("state")), e.Value())
		var f pendingFlow
		_ = json.Unmarshal(pt, &f)
		tap.add(f.Verifier)
	}
	cb := authorize(t, start)
	tap.add(cb.Get("code"))
	if _, err := c.Finish(ctx, cb); err != nil {
		t.Fatal(err)
	}
	_, err = c.Finish(ctx, cb) // replayed callback
	errs = append(errs, err)
	for range 3 {
		for _, s := range []*Source{a, b} {
			if status, err := restCall(ctx, s.Client(), h.sf.URL()); err != nil || status != 200 {
				t.Fatalf("call: %d %v", status, err)
			}
		}
		h.sf.ExpireAccessTokens()
	}
	h.sf.RevokeAll()
	_, err = restCall(ctx, a.Client(), h.sf.URL())
	errs = append(errs, err)
	_, _, err = b.Token(ctx)
	errs = append(errs, err)
	_, fresh := h.sf.IssueTokens("api refresh_token")
	tap.add(fresh)
	if err := c.Import(ctx, "acme", fresh, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Token(ctx); err != nil {
		t.Fatal(err)
	}
	errs = append(errs, a.Disconnect(ctx))

	out := logs.String()
	for _, want := range []string{"refreshed salesforce access token", "invalid_grant", "salesforce connected", "imported", `"tenant":"acme"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q: the flow did not run as intended", want)
		}
	}
	if len(tap.secrets) < 8 {
		t.Fatalf("only %d secrets seen on the wire", len(tap.secrets))
	}
	for sec := range tap.secrets {
		if strings.Contains(out, sec) {
			t.Errorf("a secret (%d chars) was logged", len(sec))
		}
		for _, err := range errs {
			if err != nil && strings.Contains(err.Error(), sec) {
				t.Errorf("a secret (%d chars) is in an error", len(sec))
			}
		}
	}
}
