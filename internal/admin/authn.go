package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/auth"
)

// Errors of a Credential check.
var (
	// ErrNoCredential: the request does not carry this kind of credential.
	ErrNoCredential = errors.New("no credential")
	// ErrBadCredential: it carries one, and it is wrong. Counts as a failure.
	ErrBadCredential = errors.New("bad credential")
)

// Credential is one way an operator proves who they are: a bearer admin token
// now, a session cookie when the web page lands.
type Credential interface {
	// Name labels the method in logs and in the request context.
	Name() string
	// Check returns nil for a valid credential, ErrNoCredential when the
	// request carries none of this kind, ErrBadCredential for a wrong one.
	Check(c echo.Context) error
}

// PrincipalKey is the echo context key holding the Credential name that
// authenticated the request ("bearer", "session", "ticket").
const PrincipalKey = "admin.principal"

// Denier writes the answer to a refused request (JSON for the API, an HTML
// page for browser routes).
type Denier func(c echo.Context, status int, message string) error

// Authenticator checks operator credentials and refuses an address that keeps
// failing (429) for a while.
type Authenticator struct {
	bearer  *BearerTokens
	session Credential // nil until the web page sets one
	limiter *auth.FailureLimiter
	log     *slog.Logger
}

// NewAuthenticator accepts any of tokens as a bearer credential.
func NewAuthenticator(tokens []string, limiter *auth.FailureLimiter, log *slog.Logger) (*Authenticator, error) {
	b, err := NewBearerTokens(tokens)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{bearer: b, limiter: limiter, log: log}, nil
}

// SetSession adds the web page's session cookie as a credential accepted by
// RequireSessionOrBearer (and the OAuth start route). Call before serving.
// The cookie must be SameSite=Strict: the start route is a GET, and a
// cross-site link must not start a flow with the operator's session.
func (a *Authenticator) SetSession(s Credential) { a.session = s }

// Bearer is the admin-token credential.
func (a *Authenticator) Bearer() Credential { return a.bearer }

// operatorCredentials are those a browser or a script may present.
func (a *Authenticator) operatorCredentials() []Credential {
	if a.session == nil {
		return []Credential{a.bearer}
	}
	return []Credential{a.session, a.bearer}
}

// RequireBearer guards the JSON API: bearer token only, so a browser's
// cookie can never be ridden by a cross-site form (no CSRF surface).
func (a *Authenticator) RequireBearer(deny Denier) echo.MiddlewareFunc {
	return a.require(deny, func() []Credential { return []Credential{a.bearer} })
}

// RequireSessionOrBearer guards operator pages: a session cookie (once the web
// page adds one) or a bearer token. Pages that change state under a session
// must also check a CSRF token.
func (a *Authenticator) RequireSessionOrBearer(deny Denier) echo.MiddlewareFunc {
	return a.require(deny, a.operatorCredentials)
}

func (a *Authenticator) require(deny Denier, creds func() []Credential) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if ok, err := a.Authenticate(c, deny, creds()...); !ok {
				return err
			}
			return next(c)
		}
	}
}

// Authenticate checks creds in order and stops at the first one presented.
// When it returns false the refusal has been written (401, or 429 for an
// address that failed too often) and err is what the handler must return.
func (a *Authenticator) Authenticate(c echo.Context, deny Denier, creds ...Credential) (bool, error) {
	ip := c.RealIP()
	if blocked, left := a.limiter.Blocked(ip); blocked {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(left.Seconds())+1))
		return false, deny(c, http.StatusTooManyRequests, "too many failed attempts")
	}
	for _, cr := range creds {
		err := cr.Check(c)
		if errors.Is(err, ErrNoCredential) {
			continue
		}
		if err != nil {
			return false, a.Refuse(c, deny, cr.Name())
		}
		c.Set(PrincipalKey, cr.Name())
		return true, nil
	}
	return false, a.Refuse(c, deny, "none")
}

// Refuse records a failed attempt from the client and writes the one 401
// answer (the same whatever was wrong, so nothing can be enumerated).
func (a *Authenticator) Refuse(c echo.Context, deny Denier, method string) error {
	ip := c.RealIP()
	a.limiter.Fail(ip)
	a.log.Warn("admin request refused", "method", method, "path", c.Path(), "remote", ip)
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="countersign"`)
	return deny(c, http.StatusUnauthorized, "unauthorized")
}

// blocked reports whether the client is refused for failing too often, and
// the Retry-After seconds; the ticket check uses it before any lookup.
func (a *Authenticator) blocked(c echo.Context) (bool, int) {
	blocked, left := a.limiter.Blocked(c.RealIP())
	return blocked, int(left.Seconds()) + 1
}

// BearerTokens accepts `Authorization: Bearer <token>` for any configured
// admin token. Only SHA-256 digests are kept, and every digest is compared
// (constant time, no early exit), so timing says nothing about which token
// or how much of it matched.
type BearerTokens struct {
	digests [][sha256.Size]byte
}

// NewBearerTokens builds the credential; empty tokens are refused.
func NewBearerTokens(tokens []string) (*BearerTokens, error) {
	b := &BearerTokens{}
	for _, t := range tokens {
		if t == "" {
			continue
		}
		b.digests = append(b.digests, sha256.Sum256([]byte(t)))
	}
	if len(b.digests) == 0 {
		return nil, errors.New("admin: at least one admin token is required (admin.tokens)")
	}
	return b, nil
}

// Name implements Credential.
func (b *BearerTokens) Name() string { return "bearer" }

// Check implements Credential.
func (b *BearerTokens) Check(c echo.Context) error {
	h := c.Request().Header.Get(echo.HeaderAuthorization)
	if h == "" {
		return ErrNoCredential
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ErrBadCredential
	}
	if b.Match(strings.TrimSpace(tok)) {
		return nil
	}
	return ErrBadCredential
}

// Match reports whether tok is one of the admin tokens.
func (b *BearerTokens) Match(tok string) bool {
	d := sha256.Sum256([]byte(tok))
	match := 0
	for i := range b.digests {
		match |= subtle.ConstantTimeCompare(d[:], b.digests[i][:])
	}
	return match == 1 && tok != ""
}
