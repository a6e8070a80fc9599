// Package salesforce is a faithful local emulator of one Salesforce org: the
// OAuth 2.0 web-server flow (PKCE, refresh-token rotation, revoke) and the REST
// data API subset Countersign uses (upsert by external id, sObject Collections,
// ContentVersion uploads, minimal SOQL, limits), served over real HTTP.
//
// Wire formats follow shared/reference/salesforce.md: a test that passes against
// this sandbox must be one that would pass against a real org. Where Salesforce
// behaviour is unverified the sandbox takes the stricter side. Importers alias
// the package as sfsandbox.
//
// Tests drive it through knobs (RevokeAll, ExpireAccessTokens, SetFaults,
// FailNext, FailNextToken, SetAPIUsage...) and read it through accessors
// (Records, FindRecord, ContentVersions, Calls, TokenCalls).
package salesforce

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Default values used when an Options field is left zero.
const (
	DefaultAccessTokenTTL    = 2 * time.Hour
	DefaultDailyRequestLimit = 100000
	// AuthCodeTTL is the lifetime of an authorization code.
	AuthCodeTTL = 15 * time.Minute
)

// Options configure one emulated org. The zero value of a field means its
// default; see DefaultOptions for a ready-to-use set.
type Options struct {
	ClientID     string
	ClientSecret string // when empty, any (or no) secret is accepted
	// RedirectURIs are the registered callback URLs, compared exactly.
	RedirectURIs []string
	// AppScopes are the scopes the connected app allows; an authorize call without
	// scope gets all of them. Default: api refresh_token offline_access id web full.
	AppScopes []string
	// AutoApprove skips the consent page and redirects with a code at once.
	AutoApprove bool
	// RotateRefreshTokens issues a new refresh token on every refresh and kills
	// the old one; replaying a dead one revokes the whole grant.
	RotateRefreshTokens bool
	// AccessTokenTTL is the session lifetime (default 2h). Salesforce never tells
	// the client; REST calls after it get 401 INVALID_SESSION_ID.
	AccessTokenTTL time.Duration
	// RFC6749Style makes the token endpoint answer like a plain RFC 6749 provider:
	// expires_in, no signature/instance_url/id/issued_at, no rotation.
	RFC6749Style bool
	// DailyRequestLimit is the org's API request allocation (default 100000).
	DailyRequestLimit int
	// Objects declares the sObjects that exist (default DefaultObjects()).
	// Writes or queries to other objects fail like an org without them.
	Objects map[string]ObjectSpec
	// Seed makes fault injection deterministic.
	Seed uint64
	// StoreContentBytesUpTo keeps the bytes of uploaded files up to this size;
	// larger files keep only size and hashes. Zero keeps no bytes.
	StoreContentBytesUpTo int64
	// Now replaces time.Now (tests of code expiry).
	Now func() time.Time
}

// DefaultOptions returns options for a Salesforce-like org with fake
// credentials, refresh-token rotation on and the Countersign objects declared.
func DefaultOptions() Options {
	return Options{
		ClientID:            "fake-client-id",
		ClientSecret:        "fake-client-secret",
		RedirectURIs:        []string{"http://localhost:8080/oauth/salesforce/callback"},
		RotateRefreshTokens: true,
		AccessTokenTTL:      DefaultAccessTokenTTL,
		DailyRequestLimit:   DefaultDailyRequestLimit,
		Objects:             DefaultObjects(),
	}
}

// Server is one emulated org. All methods are safe for concurrent use.
type Server struct {
	opts   Options
	orgID  string
	userID string

	mu     sync.Mutex
	url    string
	oauth  oauthState
	data   dataState
	faults faultState

	httpSrv *http.Server
	done    chan struct{}
	once    sync.Once
}

// New builds a server; it does not listen until Listen, Serve or NewTestServer.
func New(opts Options) *Server {
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if opts.DailyRequestLimit <= 0 {
		opts.DailyRequestLimit = DefaultDailyRequestLimit
	}
	if opts.Objects == nil {
		opts.Objects = DefaultObjects()
	}
	if len(opts.AppScopes) == 0 {
		opts.AppScopes = []string{"api", "refresh_token", "offline_access", "id", "web", "full"}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:   opts,
		orgID:  makeID("00D", 1),
		userID: makeID("005", 1),
		done:   make(chan struct{}),
	}
	s.oauth.init(opts)
	s.data.init(opts)
	s.faults.init(opts.Seed)
	return s
}

// ServeHTTP routes OAuth and REST requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/services/oauth2/authorize":
		s.handleAuthorize(w, r)
	case p == "/services/oauth2/token":
		s.serveToken(w, r)
	case p == "/services/oauth2/revoke":
		s.handleRevoke(w, r)
	case p == "/services/oauth2/introspect":
		s.handleIntrospect(w, r)
	case strings.HasPrefix(p, "/id/"):
		s.handleIdentity(w, r)
	case p == "/services/data" || strings.HasPrefix(p, "/services/data/"):
		s.handleREST(w, r)
	default:
		writeJSON(w, http.StatusNotFound, []apiError{{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}})
	}
}

// Listen serves on addr (e.g. "127.0.0.1:0") in the background and returns the
// base URL, which is also the instance_url of issued tokens.
func (s *Server) Listen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	u := "http://" + ln.Addr().String()
	s.mu.Lock()
	s.url = u
	s.httpSrv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	srv := s.httpSrv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return u, nil
}

// Serve listens on addr and blocks until ctx is done, then shuts down.
func (s *Server) Serve(ctx context.Context, addr string) error {
	if _, err := s.Listen(addr); err != nil {
		return err
	}
	<-ctx.Done()
	s.Close()
	return nil
}

// Close stops the listener (if any) and releases requests held by faults.
func (s *Server) Close() {
	s.once.Do(func() { close(s.done) })
	s.mu.Lock()
	srv := s.httpSrv
	s.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = srv.Close()
		}
	}
}

// NewTestServer starts a server on a loopback port and closes it when the test ends.
func NewTestServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	if _, err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatalf("sandbox salesforce: listen: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// URL is the base URL (login and instance URL), empty before Listen unless set
// by SetURL.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// SetURL sets the base URL when the server is mounted by someone else (e.g.
// httptest.NewServer(s)).
func (s *Server) SetURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.url = strings.TrimRight(u, "/")
}

// OrgID is the org's 18-char id, as in the token's id URL.
func (s *Server) OrgID() string { return s.orgID }

// UserID is the integration user's 18-char id, as in the token's id URL; it
// owns uploaded files.
func (s *Server) UserID() string { return s.userID }

// baseURL is the configured URL or, when mounted elsewhere, the request's host.
func (s *Server) baseURL(r *http.Request) string {
	s.mu.Lock()
	u := s.url
	s.mu.Unlock()
	if u != "" {
		return u
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) now() time.Time { return s.opts.Now() }
