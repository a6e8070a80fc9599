package salesforce

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxApprovals is Salesforce's per-user approval limit for one connected
// app: the sixth authorization silently revokes the oldest grant.
const DefaultMaxApprovals = 5

type oauthState struct {
	ttl          time.Duration
	rotate       bool
	maxApprovals int
	pending      map[string]*authRequest
	codes        map[string]*authCode
	approvals    []*grant // grants from the web-server flow, oldest first
	refresh      map[string]*refreshEntry
	access       map[string]*accessEntry
	calls        map[string]int
}

type authRequest struct {
	redirectURI string
	state       string
	challenge   string
	method      string
	scope       string
}

type authCode struct {
	req     authRequest
	expires time.Time
}

// grant is one user approval: every refresh and access token issued from it.
type grant struct {
	scope   string
	revoked bool
	refresh []string
	access  []string
}

type refreshEntry struct {
	g    *grant
	live bool // false once rotated out
}

type accessEntry struct {
	g       *grant
	issued  time.Time
	expires time.Time
	revoked bool
}

func (o *oauthState) init(opts Options) {
	o.ttl = opts.AccessTokenTTL
	o.rotate = opts.RotateRefreshTokens && !opts.RFC6749Style
	o.maxApprovals = DefaultMaxApprovals
	o.pending = map[string]*authRequest{}
	o.codes = map[string]*authCode{}
	o.refresh = map[string]*refreshEntry{}
	o.access = map[string]*accessEntry{}
	o.calls = map[string]int{}
}

// oauthError is the token endpoint's error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

type tokenJSON struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Signature    string `json:"signature,omitempty"`
	Scope        string `json:"scope,omitempty"`
	InstanceURL  string `json:"instance_url,omitempty"`
	ID           string `json:"id,omitempty"`
	TokenType    string `json:"token_type"`
	IssuedAt     string `json:"issued_at,omitempty"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
}

var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Allow Access?</title></head>
<body>
<h1>Allow Access?</h1>
<p>The app <b>{{.ClientID}}</b> is asking to: {{.Scope}}</p>
<form method="post" action="/services/oauth2/authorize">
<input type="hidden" name="request_id" value="{{.RequestID}}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>`))

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Error</title></head>
<body><h1>error={{.Code}}</h1><p>{{.Description}}</p></body></html>`))

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.authorizeStart(w, r)
	case http.MethodPost:
		s.authorizeDecision(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) authorizeStart(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.opts.ClientID {
		writeErrorPage(w, "invalid_client_id", "client identifier invalid")
		return
	}
	redirectURI := q.Get("redirect_uri")
	if !slices.Contains(s.opts.RedirectURIs, redirectURI) {
		// Never redirect to an unregistered URI: that would leak the code.
		writeErrorPage(w, "redirect_uri_mismatch", "redirect_uri must match configuration")
		return
	}
	req := authRequest{redirectURI: redirectURI, state: q.Get("state"), challenge: q.Get("code_challenge"), method: q.Get("code_challenge_method")}
	if q.Get("response_type") != "code" {
		redirectError(w, r, req, "unsupported_response_type", "response type not supported")
		return
	}
	scope, ok := s.grantedScope(q.Get("scope"))
	if !ok {
		redirectError(w, r, req, "invalid_scope", "the requested scope is not allowed")
		return
	}
	req.scope = scope
	if req.challenge != "" {
		// Salesforce documents only S256; a missing method is taken as plain, which
		// is what made clients that omit it fail with "invalid code verifier".
		if req.method == "" {
			req.method = "plain"
		}
		if req.method != "S256" && req.method != "plain" {
			redirectError(w, r, req, "invalid_request", "invalid code_challenge_method")
			return
		}
	} else if req.method != "" {
		redirectError(w, r, req, "invalid_request", "missing code_challenge")
		return
	}
	if s.opts.AutoApprove {
		s.redirectWithCode(w, r, req)
		return
	}
	id := randomToken(24, base64.RawURLEncoding)
	s.mu.Lock()
	s.oauth.pending[id] = &req
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = consentPage.Execute(w, map[string]string{"ClientID": s.opts.ClientID, "Scope": req.scope, "RequestID": id})
}

func (s *Server) authorizeDecision(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeErrorPage(w, "invalid_request", "malformed form")
		return
	}
	id := r.PostForm.Get("request_id")
	s.mu.Lock()
	req, ok := s.oauth.pending[id]
	delete(s.oauth.pending, id)
	s.mu.Unlock()
	if !ok {
		writeErrorPage(w, "invalid_request", "unknown or already answered authorization request")
		return
	}
	if r.PostForm.Get("decision") != "allow" {
		redirectError(w, r, *req, "access_denied", "end-user denied authorization")
		return
	}
	s.redirectWithCode(w, r, *req)
}

func (s *Server) redirectWithCode(w http.ResponseWriter, r *http.Request, req authRequest) {
	// Real codes are standard base64 ending in "=="; clients must URL-encode them.
	code := randomToken(40, base64.StdEncoding)
	s.mu.Lock()
	s.oauth.codes[code] = &authCode{req: req, expires: s.now().Add(AuthCodeTTL)}
	s.mu.Unlock()
	v := url.Values{"code": {code}}
	if req.state != "" {
		v.Set("state", req.state)
	}
	redirect(w, r, req.redirectURI, v)
}

func redirectError(w http.ResponseWriter, r *http.Request, req authRequest, code, desc string) {
	v := url.Values{"error": {code}, "error_description": {desc}}
	if req.state != "" {
		v.Set("state", req.state)
	}
	redirect(w, r, req.redirectURI, v)
}

func redirect(w http.ResponseWriter, r *http.Request, target string, v url.Values) {
	u, err := url.Parse(target)
	if err != nil {
		writeErrorPage(w, "redirect_uri_mismatch", "redirect_uri must match configuration")
		return
	}
	q := u.Query()
	for k, vs := range v {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func writeErrorPage(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_ = errorPage.Execute(w, map[string]string{"Code": code, "Description": desc})
}

// grantedScope checks a requested scope against the app's; empty means all.
func (s *Server) grantedScope(requested string) (string, bool) {
	fields := strings.Fields(requested)
	if len(fields) == 0 {
		return strings.Join(s.opts.AppScopes, " "), true
	}
	for _, f := range fields {
		if !slices.Contains(s.opts.AppScopes, f) {
			return "", false
		}
	}
	return strings.Join(fields, " "), true
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeTokenError(w, http.StatusBadRequest, "invalid_request", "must use HTTP POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeTokenError(w, http.StatusBadRequest, "invalid_request", "malformed request body")
		return
	}
	f := r.PostForm
	gt := f.Get("grant_type")
	s.mu.Lock()
	s.oauth.calls[gt]++
	s.mu.Unlock()
	if gt != "authorization_code" && gt != "refresh_token" {
		writeTokenError(w, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
		return
	}
	idOK, secretOK := s.checkClient(r)
	if !idOK {
		writeTokenError(w, http.StatusBadRequest, "invalid_client_id", "client identifier invalid")
		return
	}
	if !secretOK {
		writeTokenError(w, http.StatusBadRequest, "invalid_client", "invalid client credentials")
		return
	}
	if gt == "authorization_code" {
		s.exchangeCode(w, r, f)
		return
	}
	s.refreshGrant(w, r, f.Get("refresh_token"))
}

func (s *Server) exchangeCode(w http.ResponseWriter, r *http.Request, f url.Values) {
	s.mu.Lock()
	c, ok := s.oauth.codes[f.Get("code")]
	// A code is single-use: any presentation by the right client burns it.
	delete(s.oauth.codes, f.Get("code"))
	s.mu.Unlock()
	if !ok || !s.now().Before(c.expires) {
		writeTokenError(w, http.StatusBadRequest, "invalid_grant", "authentication failure")
		return
	}
	if f.Get("redirect_uri") != c.req.redirectURI {
		writeTokenError(w, http.StatusBadRequest, "redirect_uri_mismatch", "redirect_uri must match configuration")
		return
	}
	verifier := f.Get("code_verifier")
	switch {
	case c.req.challenge == "" && verifier != "":
		writeTokenError(w, http.StatusBadRequest, "invalid_grant", "invalid code verifier")
		return
	case c.req.challenge != "" && !pkceMatches(c.req.challenge, c.req.method, verifier):
		writeTokenError(w, http.StatusBadRequest, "invalid_grant", "invalid code verifier")
		return
	}
	s.mu.Lock()
	g := &grant{scope: c.req.scope}
	resp := s.issueLocked(g, r, true)
	s.oauth.approvals = append(s.oauth.approvals, g)
	s.evictApprovalsLocked()
	s.mu.Unlock()
	writeTokenJSON(w, resp)
}

// checkClient authenticates the client from HTTP Basic (form-encoded per RFC
// 6749 2.3.1 as x/oauth2 sends it, or raw) or, without it, the body parameters.
func (s *Server) checkClient(r *http.Request) (idOK, secretOK bool) {
	type pair struct{ id, secret string }
	var cands []pair
	if id, secret, ok := r.BasicAuth(); ok {
		cands = append(cands, pair{id, secret})
		uid, err1 := url.QueryUnescape(id)
		usec, err2 := url.QueryUnescape(secret)
		if err1 == nil && err2 == nil {
			cands = append(cands, pair{uid, usec})
		}
	} else {
		cands = append(cands, pair{r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")})
	}
	for _, c := range cands {
		if c.id != s.opts.ClientID {
			continue
		}
		idOK = true
		if s.opts.ClientSecret == "" || subtle.ConstantTimeCompare([]byte(c.secret), []byte(s.opts.ClientSecret)) == 1 {
			return true, true
		}
	}
	return idOK, false
}

func pkceMatches(challenge, method, verifier string) bool {
	if verifier == "" {
		return false
	}
	want := verifier
	if method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// evictApprovalsLocked enforces the per-user approval limit: the oldest live
// grant is silently revoked, as Salesforce does after the fifth approval.
func (s *Server) evictApprovalsLocked() {
	if s.oauth.maxApprovals <= 0 {
		return
	}
	live := s.oauth.approvals[:0]
	for _, g := range s.oauth.approvals {
		if !g.revoked && len(g.refresh) > 0 {
			live = append(live, g)
		}
	}
	s.oauth.approvals = live
	for len(s.oauth.approvals) > s.oauth.maxApprovals {
		s.revokeGrantLocked(s.oauth.approvals[0])
		s.oauth.approvals = s.oauth.approvals[1:]
	}
}

func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request, token string) {
	s.mu.Lock()
	e, ok := s.oauth.refresh[token]
	switch {
	case !ok || e.g.revoked:
		s.mu.Unlock()
		writeTokenError(w, http.StatusBadRequest, "invalid_grant", "expired access/refresh token")
		return
	case !e.live:
		// Replay of a rotated-out token: assume theft and kill the whole chain.
		s.revokeGrantLocked(e.g)
		s.mu.Unlock()
		writeTokenError(w, http.StatusBadRequest, "invalid_grant", "expired access/refresh token")
		return
	}
	rotate := s.oauth.rotate
	if rotate {
		e.live = false
	}
	resp := s.issueLocked(e.g, r, rotate)
	s.mu.Unlock()
	writeTokenJSON(w, resp)
}

// issueLocked mints an access token (and a refresh token when withRefresh and
// the scope allows one) for g and builds the response in the configured style.
func (s *Server) issueLocked(g *grant, r *http.Request, withRefresh bool) tokenJSON {
	now := s.now()
	at := s.orgID[:15] + "!" + randomToken(72, base64.RawURLEncoding)
	s.oauth.access[at] = &accessEntry{g: g, issued: now, expires: now.Add(s.oauth.ttl)}
	g.access = append(g.access, at)
	resp := tokenJSON{AccessToken: at, TokenType: "Bearer", Scope: g.scope}
	if withRefresh && scopeAllowsRefresh(g.scope) {
		rt := "5Aep861" + randomToken(60, base64.RawURLEncoding)
		s.oauth.refresh[rt] = &refreshEntry{g: g, live: true}
		g.refresh = append(g.refresh, rt)
		resp.RefreshToken = rt
	}
	if s.opts.RFC6749Style {
		resp.ExpiresIn = int64((s.oauth.ttl + time.Second - 1) / time.Second)
		return resp
	}
	base := s.baseURLLocked(r)
	resp.InstanceURL = base
	resp.ID = base + "/id/" + s.orgID + "/" + s.userID
	resp.IssuedAt = strconv.FormatInt(now.UnixMilli(), 10)
	mac := hmac.New(sha256.New, []byte(s.opts.ClientSecret))
	mac.Write([]byte(resp.ID + resp.IssuedAt))
	resp.Signature = base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return resp
}

func (s *Server) baseURLLocked(r *http.Request) string {
	if s.url != "" {
		return s.url
	}
	scheme := "http"
	if r != nil && r.TLS != nil {
		scheme = "https"
	}
	if r == nil {
		return ""
	}
	return scheme + "://" + r.Host
}

func scopeAllowsRefresh(scope string) bool {
	for _, f := range strings.Fields(scope) {
		if f == "refresh_token" || f == "offline_access" {
			return true
		}
	}
	return false
}

func (s *Server) revokeGrantLocked(g *grant) {
	g.revoked = true
	for _, t := range g.access {
		if e, ok := s.oauth.access[t]; ok {
			e.revoked = true
		}
	}
	for _, t := range g.refresh {
		if e, ok := s.oauth.refresh[t]; ok {
			e.live = false
		}
	}
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		writeTokenError(w, http.StatusBadRequest, "invalid_request", "must use HTTP POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeTokenError(w, http.StatusBadRequest, "invalid_request", "malformed request body")
		return
	}
	tok := r.Form.Get("token")
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.oauth.refresh[tok]; ok && e.live && !e.g.revoked {
		s.revokeGrantLocked(e.g)
		w.WriteHeader(http.StatusOK)
		return
	}
	if e, ok := s.oauth.access[tok]; ok && !e.revoked && !e.g.revoked {
		e.revoked = true
		w.WriteHeader(http.StatusOK)
		return
	}
	writeTokenErrorHeaders(w)
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(oauthError{Error: "invalid_token", Description: "invalid token"})
}

func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeTokenError(w, http.StatusBadRequest, "invalid_request", "must use HTTP POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeTokenError(w, http.StatusBadRequest, "invalid_request", "malformed request body")
		return
	}
	if _, ok := s.checkClient(r); !ok {
		writeTokenError(w, http.StatusBadRequest, "invalid_client", "invalid client credentials")
		return
	}
	tok := r.PostForm.Get("token")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]any{"active": false}
	sub := s.baseURLLocked(r) + "/id/" + s.orgID + "/" + s.userID
	if e, ok := s.oauth.access[tok]; ok && s.accessValidLocked(e) {
		out = map[string]any{"active": true, "scope": e.g.scope, "client_id": s.opts.ClientID, "username": sandboxUsername,
			"sub": sub, "token_type": "access_token", "exp": e.expires.Unix(), "iat": e.issued.Unix(), "nbf": e.issued.Unix()}
	} else if e, ok := s.oauth.refresh[tok]; ok && e.live && !e.g.revoked {
		out = map[string]any{"active": true, "scope": e.g.scope, "client_id": s.opts.ClientID, "username": sandboxUsername,
			"sub": sub, "token_type": "refresh_token"}
	}
	writeTokenErrorHeaders(w)
	_ = json.NewEncoder(w).Encode(out)
}

const sandboxUsername = "integration@countersign.sandbox"

// handleIdentity serves the identity URL from the token's id field.
func (s *Server) handleIdentity(w http.ResponseWriter, r *http.Request) {
	if !s.bearerValid(r) {
		writeJSON(w, http.StatusForbidden, "Bad_OAuth_Token")
		return
	}
	base := s.baseURL(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"id": base + "/id/" + s.orgID + "/" + s.userID, "organization_id": s.orgID, "user_id": s.userID,
		"username": sandboxUsername, "active": true,
		"urls": map[string]string{"rest": base + "/services/data/v{version}/", "sobjects": base + "/services/data/v{version}/sobjects/",
			"query": base + "/services/data/v{version}/query/"},
	})
}

func (s *Server) accessValidLocked(e *accessEntry) bool {
	return !e.revoked && !e.g.revoked && s.now().Before(e.expires)
}

// bearerValid reports whether the request carries a live access token.
func (s *Server) bearerValid(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(h, "OAuth ")
	}
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.oauth.access[strings.TrimSpace(tok)]
	return ok && s.accessValidLocked(e)
}

func writeTokenErrorHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func writeTokenError(w http.ResponseWriter, status int, code, desc string) {
	writeTokenErrorHeaders(w)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(oauthError{Error: code, Description: desc})
}

func writeTokenJSON(w http.ResponseWriter, t tokenJSON) {
	writeTokenErrorHeaders(w)
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(t)
}

func randomToken(n int, enc *base64.Encoding) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return enc.EncodeToString(b)
}

// --- knobs ---

// RevokeAll revokes every grant, as when the org admin revokes the app.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.oauth.refresh {
		s.revokeGrantLocked(e.g)
	}
	for _, e := range s.oauth.access {
		s.revokeGrantLocked(e.g)
	}
}

// ExpireAccessTokens ends every current session (refresh tokens stay valid),
// as when the session timeout passes.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, e := range s.oauth.access {
		if e.expires.After(now) {
			e.expires = now
		}
	}
}

// SetAccessTokenTTL changes the lifetime of access tokens issued from now on.
func (s *Server) SetAccessTokenTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauth.ttl = d
}

// SetRotateRefreshTokens turns refresh-token rotation on or off (ignored in
// RFC 6749 style, which never rotates).
func (s *Server) SetRotateRefreshTokens(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauth.rotate = on && !s.opts.RFC6749Style
}

// SetMaxApprovals changes the per-user approval limit (default 5); zero or
// less disables eviction.
func (s *Server) SetMaxApprovals(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauth.maxApprovals = n
}

// TokenCalls counts token-endpoint calls with this grant_type, failed ones too.
func (s *Server) TokenCalls(grantType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oauth.calls[grantType]
}

// TokenCallCounts returns a copy of the token-endpoint counters by grant_type.
func (s *Server) TokenCallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.oauth.calls))
	for k, v := range s.oauth.calls {
		out[k] = v
	}
	return out
}

// IssueTokens mints a grant without the browser flow (test and demo bootstrap).
// refresh is empty when scope allows none. Not counted as a token call.
func (s *Server) IssueTokens(scope string) (access, refresh string) {
	if scope == "" {
		scope = "api refresh_token"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.issueLocked(&grant{scope: scope}, nil, true)
	return t.AccessToken, t.RefreshToken
}

// AccessTokenValid reports whether tok is a live (unexpired, unrevoked) access token.
func (s *Server) AccessTokenValid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.oauth.access[tok]
	return ok && s.accessValidLocked(e)
}

// RefreshTokenValid reports whether tok is a live refresh token.
func (s *Server) RefreshTokenValid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.oauth.refresh[tok]
	return ok && e.live && !e.g.revoked
}
