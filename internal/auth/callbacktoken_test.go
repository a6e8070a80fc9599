package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source shared by issuer and verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTokens(t *testing.T, c *clock, keys ...string) *CallbackTokens {
	t.Helper()
	tok, err := NewCallbackTokensFromConfig(keys, 0, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestCallbackTokenRoundTripIsAJWTForOneTenant(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	tok := newTokens(t, c, newKey(t))
	token, exp, err := tok.Issue("acme", "fake-client-id")
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(c.now().Add(DefaultCallbackTokenTTL)) {
		t.Errorf("expires %v, want now + %v", exp, DefaultCallbackTokenTTL)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not header.payload.signature: %q", token)
	}
	var h tokenHeader
	var cl tokenClaims
	if decodePart(parts[0], &h) != nil || decodePart(parts[1], &cl) != nil {
		t.Fatalf("parts are not base64url JSON: %q", token)
	}
	if h.Alg != "HS256" || h.Typ != "JWT" || cl.Tenant != "acme" || cl.Sub != "fake-client-id" || cl.Jti == "" ||
		cl.Exp-cl.Iat != int64(DefaultCallbackTokenTTL/time.Second) {
		t.Errorf("header %+v claims %+v", h, cl)
	}
	tenant, err := tok.Verify(token)
	if err != nil || tenant != "acme" {
		t.Fatalf("Verify = %q, %v", tenant, err)
	}
	again, _, _ := tok.Issue("acme", "fake-client-id")
	if again == token {
		t.Error("two tokens issued in the same second are identical: no random id")
	}
}

func TestCallbackTokenExpires(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	tok := newTokens(t, c, newKey(t))
	token, _, _ := tok.Issue("acme", "fake-client-id")
	c.add(DefaultCallbackTokenTTL - time.Second)
	if _, err := tok.Verify(token); err != nil {
		t.Fatalf("token refused before its expiry: %v", err)
	}
	c.add(time.Second + callbackTokenSkew)
	if _, err := tok.Verify(token); !errors.Is(err, ErrCallbackToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
}

func TestCallbackTokenRefusesTamperingAndGarbage(t *testing.T) {
	c := &clock{t: time.Now()}
	key := newKey(t)
	tok := newTokens(t, c, key)
	token, _, _ := tok.Issue("acme", "fake-client-id")
	parts := strings.Split(token, ".")
	reencode := func(i int, mutate func(m map[string]any)) string {
		var m map[string]any
		if err := decodePart(parts[i], &m); err != nil {
			t.Fatal(err)
		}
		mutate(m)
		b, _ := json.Marshal(m)
		p := append([]string{}, parts...)
		p[i] = base64.RawURLEncoding.EncodeToString(b)
		return strings.Join(p, ".")
	}
	flip := func(s string) string {
		b := []byte(s)
		if b[len(b)/2] == 'A' {
			b[len(b)/2] = 'B'
		} else {
			b[len(b)/2] = 'A'
		}
		return string(b)
	}
	otherKey := newTokens(t, c, newKey(t))
	foreign, _, _ := otherKey.Issue("acme", "fake-client-id")
	cases := map[string]string{
		"tenant changed":        reencode(1, func(m map[string]any) { m["tenant"] = "globex" }),
		"expiry extended":       reencode(1, func(m map[string]any) { m["exp"] = float64(c.now().Add(24 * time.Hour).Unix()) }),
		"alg none":              reencode(0, func(m map[string]any) { m["alg"] = "none" }),
		"signature bit":         parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"signature dropped":     parts[0] + "." + parts[1] + ".",
		"no signature part":     parts[0] + "." + parts[1],
		"signed by another key": foreign,
		"empty":                 "",
		"garbage":               "fake-not-a-token",
		"dots":                  "..",
		"huge":                  strings.Repeat("a", 5000),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			tenant, err := tok.Verify(bad)
			if !errors.Is(err, ErrCallbackToken) || tenant != "" {
				t.Fatalf("Verify = %q, %v", tenant, err)
			}
			if bad != "" && strings.Contains(err.Error(), bad) {
				t.Errorf("error echoes the token: %v", err)
			}
		})
	}
}

func TestCallbackTokenSurvivesKeyRotation(t *testing.T) {
	c := &clock{t: time.Now()}
	oldKey, newK := newKey(t), newKey(t)
	before := newTokens(t, c, oldKey)
	oldToken, _, _ := before.Issue("acme", "fake-client-id")

	after := newTokens(t, c, newK, oldKey)
	if tenant, err := after.Verify(oldToken); err != nil || tenant != "acme" {
		t.Fatalf("token of the old first key refused after rotation: %q %v", tenant, err)
	}
	newToken, _, _ := after.Issue("acme", "fake-client-id")
	if _, err := before.Verify(newToken); err == nil {
		t.Fatal("a replica without the new key verified its token: the new key does not sign")
	}
	if _, err := newTokens(t, c, newK).Verify(oldToken); !errors.Is(err, ErrCallbackToken) {
		t.Fatalf("dropping the old key must refuse its tokens: %v", err)
	}
}

func TestCallbackTokenKeyIsNotTheSealingKey(t *testing.T) {
	raw := make([]byte, 32)
	tok, err := NewCallbackTokens([][]byte{raw}, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(tok.keys[0].mac) == string(raw) {
		t.Fatal("tokens are signed with the raw secrets.keys entry, not a derived key")
	}
	if _, err := NewCallbackTokensFromConfig([]string{"fake-not-base64!"}, 0, nil); err == nil || strings.Contains(err.Error(), "fake-not-base64") {
		t.Fatalf("bad key: %v", err)
	}
	if _, err := NewCallbackTokens(nil, 0, nil); err == nil {
		t.Fatal("no keys accepted")
	}
}
