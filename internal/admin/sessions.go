package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
)

// SessionBucket holds the web page's sessions, shared by every replica.
// Entries expire with the bucket's TTL (the absolute maximum) even if the
// listener never deletes them.
const SessionBucket = "cs_sessions"

// SessionCookie names the page's session cookie.
const SessionCookie = "cs_admin_session"

// sessionPrefix keys a session by the SHA-256 of its id: reading the
// bucket yields no usable cookie.
const sessionPrefix = "session."

var sessionIDFormat = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// errNoSession is every reason a cookie does not open a session: absent,
// malformed, unknown, idle too long or too old.
var errNoSession = errors.New("no valid session")

// session is one signed-in operator.
type session struct {
	ID      string    `json:"-"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	Seen    time.Time `json:"seen"`
}

// sessions stores sessions in cs_sessions and is the Credential the
// Authenticator accepts for the page's cookie (SetSession).
type sessions struct {
	js       jetstream.JetStream
	replicas int
	idle     time.Duration
	maxAge   time.Duration
	now      func() time.Time
	// secure: set the cookie's Secure flag whatever the request says
	// (server.public_url is https).
	secure bool

	mu sync.Mutex
	kv jetstream.KeyValue
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return sessionPrefix + hex.EncodeToString(sum[:])
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// bucket opens (creating on first use) the sessions bucket.
func (s *sessions) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SessionBucket,
		Description: "admin web page sessions", History: 1, TTL: s.maxAge, Storage: jetstream.FileStorage,
		Replicas: max(s.replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", SessionBucket, err)
	}
	s.kv = kv
	return kv, nil
}

// create starts a new session (a fresh id at every sign-in: no fixation).
func (s *sessions) create(ctx context.Context) (session, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return session{}, err
	}
	id, err := randomToken()
	if err != nil {
		return session{}, err
	}
	csrf, err := randomToken()
	if err != nil {
		return session{}, err
	}
	now := s.now().UTC()
	se := session{ID: id, CSRF: csrf, Created: now, Seen: now}
	val, _ := json.Marshal(se)
	if _, err := kv.Create(ctx, sessionKey(id), val); err != nil {
		return session{}, fmt.Errorf("store session: %w", err)
	}
	return se, nil
}

// lookup returns the live session of id and marks it seen (at most once a
// minute, to keep writes few).
func (s *sessions) lookup(ctx context.Context, id string) (session, error) {
	if !sessionIDFormat.MatchString(id) {
		return session{}, errNoSession
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return session{}, err
	}
	e, err := kv.Get(ctx, sessionKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return session{}, errNoSession
	}
	if err != nil {
		return session{}, fmt.Errorf("load session: %w", err)
	}
	var se session
	if err := json.Unmarshal(e.Value(), &se); err != nil {
		return session{}, errNoSession
	}
	se.ID = id
	now := s.now()
	if now.Sub(se.Seen) > s.idle || now.Sub(se.Created) > s.maxAge {
		_ = kv.Delete(ctx, sessionKey(id))
		return session{}, errNoSession
	}
	if now.Sub(se.Seen) > time.Minute {
		se.Seen = now.UTC()
		val, _ := json.Marshal(se)
		// A lost race with another replica's touch changes nothing.
		_, _ = kv.Update(ctx, sessionKey(id), val, e.Revision())
	}
	return se, nil
}

// end deletes the session (sign out).
func (s *sessions) end(ctx context.Context, id string) error {
	if !sessionIDFormat.MatchString(id) {
		return nil
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, sessionKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// Name implements Credential.
func (s *sessions) Name() string { return "session" }

// Check implements Credential: the OAuth start route accepts the page's
// session. A stale cookie is no credential (the operator signs in again).
func (s *sessions) Check(c echo.Context) error {
	ck, err := c.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return ErrNoCredential
	}
	if _, err := s.lookup(c.Request().Context(), ck.Value); err != nil {
		return ErrBadCredential
	}
	return nil
}

// secureRequest reports whether cookies must carry Secure: the public URL
// is https, or the request came over TLS.
func (s *sessions) secureRequest(c echo.Context) bool {
	return s.secure || c.Request().TLS != nil
}

// setCookie writes the session cookie: HttpOnly, SameSite=Strict (a
// cross-site link or form never carries it), path / so that the connect
// start route sees it too.
func (s *sessions) setCookie(c echo.Context, id string) {
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: s.secureRequest(c),
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.maxAge.Seconds())})
}

func (s *sessions) clearCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: s.secureRequest(c),
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// sameToken compares a submitted CSRF token with the expected one in
// constant time.
func sameToken(got, want string) bool {
	if got == "" || want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(want)) == 1
}
