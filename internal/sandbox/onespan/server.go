// Package onespan is a faithful local emulator of the OneSpan Sign API over
// real HTTP: API-key and Client App auth, the callback registration, packages
// with generated signed PDFs, the package listing, and callbacks sent to the
// registered URL the way OneSpan sends them. Importers alias it ossandbox.
package onespan

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Server. Every field can also be changed later.
type Options struct {
	APIKeys       []string          // accepted as "Authorization: Basic <key>"
	ClientApps    map[string]string // client id -> secret
	TokenLifetime time.Duration     // Client App token lifetime; default 30 min
	// SenderID is the sessionUser of sender-triggered callbacks.
	SenderID string
	// HTTPClient sends callbacks; default has a 30 s timeout.
	HTTPClient *http.Client
}

// Server is the emulated OneSpan account. All methods are safe for concurrent use.
type Server struct {
	mu            sync.Mutex
	apiKeys       map[string]bool
	clientApps    map[string]string
	tokenLifetime time.Duration
	tokens        map[string]time.Time // access token -> expiry
	callback      *registration
	packages      map[string]*pkgState
	senderID      string
	now           func() time.Time
	holdCallbacks bool
	held          []Event
	sent          []Event
	failed        []FailedCallback
	failRate      float64
	throttle      time.Duration // >0: answer 429 with this Retry-After
	latency       time.Duration
	issued        []string
	hc            *http.Client

	tokenRequests atomic.Int64
	apiRequests   atomic.Int64
	callbackPosts atomic.Int64
	unauthorized  atomic.Int64
	requestLogMu  sync.Mutex
	requestURIs   []string

	srv *http.Server
	url string
}

type registration struct {
	URL    string   `json:"url"`
	Key    string   `json:"key"`
	Events []string `json:"events"`
}

// New creates an emulated account.
func New(o Options) *Server {
	s := &Server{
		apiKeys:       map[string]bool{},
		clientApps:    map[string]string{},
		tokenLifetime: o.TokenLifetime,
		tokens:        map[string]time.Time{},
		packages:      map[string]*pkgState{},
		senderID:      o.SenderID,
		now:           time.Now,
		hc:            o.HTTPClient,
	}
	for _, k := range o.APIKeys {
		s.apiKeys[k] = true
	}
	for id, sec := range o.ClientApps {
		s.clientApps[id] = sec
	}
	if s.tokenLifetime <= 0 {
		s.tokenLifetime = 30 * time.Minute
	}
	if s.senderID == "" {
		s.senderID = "sandboxSender1"
	}
	if s.hc == nil {
		s.hc = &http.Client{Timeout: 30 * time.Second}
	}
	return s
}

// Handler serves the OneSpan routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apitoken/clientApp/accessToken", s.handleToken)
	mux.Handle("GET /api/callback", s.api(s.handleGetCallback))
	mux.Handle("POST /api/callback", s.api(s.handleSetCallback))
	mux.Handle("GET /api/packages", s.api(s.handleList))
	mux.Handle("GET /api/packages/{id}", s.api(s.handleGetPackage))
	mux.Handle("GET /api/packages/{id}/documents/{doc}/pdf", s.api(s.handlePDF))
	mux.Handle("GET /api/packages/{id}/evidence/summary", s.api(s.handleEvidence))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "error.notFound", "Resource not found.")
	})
	return mux
}

// Listen starts serving on addr ("127.0.0.1:0" picks a port) in the
// background and returns the base URL (without /api). Close stops it.
func (s *Server) Listen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.url = "http://" + ln.Addr().String()
	srv := s.srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return s.URL(), nil
}

// Serve runs the emulator on addr until ctx ends, then drains for up to 5 s.
func (s *Server) Serve(ctx context.Context, addr string) error {
	if _, err := s.Listen(addr); err != nil {
		return err
	}
	<-ctx.Done()
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return srv.Close()
	}
	return nil
}

// URL is the base URL after Listen.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Close stops a server started by Listen at once, in-flight requests included.
func (s *Server) Close() error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// --- knobs ---

// AddAPIKey accepts another API key.
func (s *Server) AddAPIKey(key string) { s.mu.Lock(); s.apiKeys[key] = true; s.mu.Unlock() }

// AddClientApp accepts another Client App.
func (s *Server) AddClientApp(id, secret string) {
	s.mu.Lock()
	s.clientApps[id] = secret
	s.mu.Unlock()
}

// SetTokenLifetime changes the lifetime of tokens issued from now on.
func (s *Server) SetTokenLifetime(d time.Duration) { s.mu.Lock(); s.tokenLifetime = d; s.mu.Unlock() }

// ExpireTokens makes every issued token expired now: the next API call with
// one of them is answered 401.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.tokens {
		s.tokens[t] = time.Time{}
	}
}

// TokenRequests counts requests to the token endpoint, failed ones included.
func (s *Server) TokenRequests() int { return int(s.tokenRequests.Load()) }

// APIRequests counts requests under /api, failed ones included.
func (s *Server) APIRequests() int { return int(s.apiRequests.Load()) }

// Unauthorized counts /api requests answered 401.
func (s *Server) Unauthorized() int { return int(s.unauthorized.Load()) }

// CallbackPosts counts POST /api/callback requests that changed the registration.
func (s *Server) CallbackPosts() int { return int(s.callbackPosts.Load()) }

// RequestURIs returns the raw request URIs received under /api, in order.
func (s *Server) RequestURIs() []string {
	s.requestLogMu.Lock()
	defer s.requestLogMu.Unlock()
	return append([]string(nil), s.requestURIs...)
}

// SetFailureRate answers this fraction (0..1) of /api requests with 503.
func (s *Server) SetFailureRate(f float64) { s.mu.Lock(); s.failRate = f; s.mu.Unlock() }

// SetThrottled(d) answers every /api request 429 with "Retry-After: <d in
// seconds>" until SetThrottled(0).
func (s *Server) SetThrottled(d time.Duration) { s.mu.Lock(); s.throttle = d; s.mu.Unlock() }

// IssuedTokens returns every access token handed out, so tests can prove
// none of them leaks into logs or errors.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// SetLatency delays every /api answer by d.
func (s *Server) SetLatency(d time.Duration) { s.mu.Lock(); s.latency = d; s.mu.Unlock() }

// SetClock replaces time.Now for package timestamps and callback dates.
func (s *Server) SetClock(now func() time.Time) { s.mu.Lock(); s.now = now; s.mu.Unlock() }

// Callback returns the stored registration (key included: tests compare it).
func (s *Server) Callback() (url, key string, events []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.callback == nil {
		return "", "", nil
	}
	return s.callback.URL, s.callback.Key, append([]string(nil), s.callback.Events...)
}

// SetCallback stores a registration directly, as an admin would in the UI.
// It is not validated, so tests can plant a drifted one.
func (s *Server) SetCallback(url, key string, events []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callback = &registration{URL: url, Key: key, Events: append([]string{}, events...)}
}

// --- auth and faults ---

// api wraps an /api handler with latency, injected 503s and authentication.
func (s *Server) api(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.apiRequests.Add(1)
		s.requestLogMu.Lock()
		s.requestURIs = append(s.requestURIs, r.RequestURI)
		s.requestLogMu.Unlock()
		s.mu.Lock()
		lat, rate, throttle := s.latency, s.failRate, s.throttle
		s.mu.Unlock()
		if lat > 0 {
			select {
			case <-time.After(lat):
			case <-r.Context().Done():
				return
			}
		}
		if rate > 0 && mrand.Float64() < rate {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "error.unavailable", "Service temporarily unavailable.")
			return
		}
		if throttle > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(throttle.Seconds())))
			writeError(w, http.StatusTooManyRequests, "error.tooManyRequests", "Too many requests.")
			return
		}
		if !s.authorized(r.Header.Get("Authorization")) {
			s.unauthorized.Add(1)
			writeError(w, http.StatusUnauthorized, "error.unauthorised.noSession", "Failed to retrieve Session.")
			return
		}
		h(w, r)
	})
}

func (s *Server) authorized(h string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := strings.CutPrefix(h, "Basic "); ok {
		return k != "" && s.apiKeys[k]
	}
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		exp, known := s.tokens[t]
		return known && time.Now().Before(exp)
	}
	return false
}

type tokenRequest struct {
	ClientID string `json:"clientId"`
	Secret   string `json:"secret"`
	Type     string `json:"type"`
	Email    string `json:"email"`
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.tokenRequests.Add(1)
	var tr tokenRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&tr); err != nil {
		writeError(w, http.StatusBadRequest, "error.validation.invalidJson", "Invalid JSON.")
		return
	}
	if tr.Type != "OWNER" && tr.Type != "SENDER" {
		writeError(w, http.StatusBadRequest, "error.validation.apiToken.type", "type must be OWNER or SENDER.")
		return
	}
	if tr.Type == "SENDER" && tr.Email == "" {
		writeError(w, http.StatusBadRequest, "error.validation.apiToken.email", "email is required for SENDER.")
		return
	}
	s.mu.Lock()
	sec, ok := s.clientApps[tr.ClientID]
	lifetime := s.tokenLifetime
	s.mu.Unlock()
	if !ok || sec != tr.Secret || tr.Secret == "" {
		writeError(w, http.StatusUnauthorized, "error.unauthorised.apiToken", "Invalid client credentials.")
		return
	}
	tok := newToken()
	exp := time.Now().Add(lifetime)
	s.mu.Lock()
	s.tokens[tok] = exp
	s.issued = append(s.issued, tok)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"accessToken": tok, "expiresAt": exp.UnixMilli()})
}

func newToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "sbx-" + hex.EncodeToString(b)
}

// --- callback registration ---

func (s *Server) handleGetCallback(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	reg := registration{Events: []string{}}
	if s.callback != nil {
		reg = *s.callback
		reg.Events = append([]string{}, s.callback.Events...)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, reg)
}

func (s *Server) handleSetCallback(w http.ResponseWriter, r *http.Request) {
	var reg registration
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&reg); err != nil {
		writeError(w, http.StatusBadRequest, "error.validation.invalidJson", "Invalid JSON.")
		return
	}
	if err := validateCallbackURL(reg.URL); err != nil {
		writeError(w, http.StatusBadRequest, "error.validation.callback.url", err.Error())
		return
	}
	for _, e := range reg.Events {
		if !knownEvent(e) {
			writeError(w, http.StatusBadRequest, "error.validation.callback.events", "Unknown event: "+e)
			return
		}
	}
	if reg.Events == nil {
		reg.Events = []string{}
	}
	s.mu.Lock()
	s.callback = &reg
	s.mu.Unlock()
	s.callbackPosts.Add(1)
	writeJSON(w, http.StatusOK, reg)
}

func validateCallbackURL(raw string) error {
	if raw == "" {
		return errors.New("url is required")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("url must be an absolute http or https url")
	}
	return nil
}

// --- wire helpers ---

// writeError answers with OneSpan's error body shape.
func writeError(w http.ResponseWriter, status int, key, msg string) {
	writeJSON(w, status, map[string]any{
		"code": status, "name": http.StatusText(status), "messageKey": key, "message": msg, "technical": msg,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
