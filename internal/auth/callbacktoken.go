package auth

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultCallbackTokenTTL is the lifetime of an OAuth2 callback token: short,
// because a stolen one works until it expires and nothing revokes it.
const DefaultCallbackTokenTTL = 10 * time.Minute

// callbackTokenSkew tolerates clock differences between the replica that
// issued a token and the one that verifies it.
const callbackTokenSkew = 30 * time.Second

// callbackTokenLabel separates the signing keys from the sealing keys derived
// from the same secrets.keys entry.
const callbackTokenLabel = "countersign/callback-token/v1"

const (
	callbackTokenIssuer   = "countersign"
	callbackTokenAudience = "countersign-callbacks"
)

// ErrCallbackToken is wrapped by every Verify failure. The detail says why
// (expired, bad signature, ...) and never contains the token.
var ErrCallbackToken = errors.New("callback token refused")

// CallbackTokens issues and verifies the bearer tokens OneSpan's OAuth2.0
// callback option presents. They are HS256 JWTs signed with a key derived
// from secrets.keys, so every replica verifies without shared state: the
// first key signs, every key verifies, like the Sealer.
type CallbackTokens struct {
	keys []tokenKey
	ttl  time.Duration
	now  func() time.Time
}

type tokenKey struct {
	id  string
	mac []byte
}

type tokenHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	KID string `json:"kid"`
}

type tokenClaims struct {
	Iss    string `json:"iss"`
	Aud    string `json:"aud"`
	Sub    string `json:"sub"` // the client id
	Tenant string `json:"tenant"`
	Iat    int64  `json:"iat"`
	Exp    int64  `json:"exp"`
	Jti    string `json:"jti"`
}

// NewCallbackTokens builds the issuer and verifier from raw 32-byte keys, the
// first of which signs. ttl 0 means DefaultCallbackTokenTTL; now nil means
// time.Now.
func NewCallbackTokens(keys [][]byte, ttl time.Duration, now func() time.Time) (*CallbackTokens, error) {
	if len(keys) == 0 {
		return nil, errors.New("callback tokens: at least one key is required")
	}
	if ttl == 0 {
		ttl = DefaultCallbackTokenTTL
	}
	if ttl < 0 {
		return nil, errors.New("callback tokens: ttl must be positive")
	}
	if now == nil {
		now = time.Now
	}
	c := &CallbackTokens{ttl: ttl, now: now}
	for i, raw := range keys {
		if len(raw) < 32 {
			return nil, fmt.Errorf("callback tokens: key %d has %d bytes, want 32", i, len(raw))
		}
		mac, err := hkdf.Key(sha256.New, raw, nil, callbackTokenLabel, 32)
		if err != nil {
			return nil, fmt.Errorf("callback tokens: derive key %d: %w", i, err)
		}
		sum := sha256.Sum256(mac)
		c.keys = append(c.keys, tokenKey{id: hex.EncodeToString(sum[:8]), mac: mac})
	}
	return c, nil
}

// NewCallbackTokensFromConfig decodes secrets.keys (base64 as for
// NewSealer) and builds the tokens. Errors name a key by index only.
func NewCallbackTokensFromConfig(keysBase64 []string, ttl time.Duration, now func() time.Time) (*CallbackTokens, error) {
	raws := make([][]byte, 0, len(keysBase64))
	for i, k := range keysBase64 {
		raw, ok := decodeKey(strings.TrimSpace(k))
		if !ok || len(raw) != 32 {
			return nil, fmt.Errorf("secrets.keys[%d]: must be 32 bytes in base64", i)
		}
		raws = append(raws, raw)
	}
	return NewCallbackTokens(raws, ttl, now)
}

// TTL is the lifetime of an issued token.
func (c *CallbackTokens) TTL() time.Duration { return c.ttl }

// Issue signs a token for clientID of tenant with the first key. The caller
// has authenticated the client.
func (c *CallbackTokens) Issue(tenant, clientID string) (token string, expires time.Time, err error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", time.Time{}, fmt.Errorf("issue callback token for tenant %s: %w", tenant, err)
	}
	now := c.now()
	expires = now.Add(c.ttl)
	k := c.keys[0]
	header, _ := json.Marshal(tokenHeader{Alg: "HS256", Typ: "JWT", KID: k.id})
	claims, _ := json.Marshal(tokenClaims{
		Iss: callbackTokenIssuer, Aud: callbackTokenAudience, Sub: clientID, Tenant: tenant,
		Iat: now.Unix(), Exp: expires.Unix(), Jti: base64.RawURLEncoding.EncodeToString(id),
	})
	signed := b64(header) + "." + b64(claims)
	return signed + "." + b64(sign(k.mac, signed)), expires, nil
}

// Verify checks the signature (with whichever configured key signed it), the
// audience and the expiry, and returns the tenant the token was issued for.
func (c *CallbackTokens) Verify(token string) (tenant string, err error) {
	claims, err := c.verify(token)
	if err != nil {
		return "", err
	}
	return claims.Tenant, nil
}

func (c *CallbackTokens) verify(token string) (tokenClaims, error) {
	var claims tokenClaims
	refuse := func(why string) (tokenClaims, error) {
		return tokenClaims{}, fmt.Errorf("%w: %s", ErrCallbackToken, why)
	}
	if len(token) > 4096 {
		return refuse("too long")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return refuse("not a JWT")
	}
	var header tokenHeader
	if err := decodePart(parts[0], &header); err != nil {
		return refuse("malformed header")
	}
	// Only ever HS256: never let the token choose its own algorithm.
	if header.Alg != "HS256" {
		return refuse("algorithm is not HS256")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return refuse("malformed signature")
	}
	var key *tokenKey
	for i := range c.keys {
		if c.keys[i].id == header.KID {
			key = &c.keys[i]
			break
		}
	}
	if key == nil {
		return refuse("signed by a key that is not in secrets.keys")
	}
	if !hmac.Equal(sig, sign(key.mac, parts[0]+"."+parts[1])) {
		return refuse("bad signature")
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return refuse("malformed claims")
	}
	now := c.now()
	switch {
	case claims.Iss != callbackTokenIssuer || claims.Aud != callbackTokenAudience:
		return refuse("not a callback token")
	case claims.Tenant == "":
		return refuse("no tenant")
	case now.Add(callbackTokenSkew).Unix() < claims.Iat:
		return refuse("issued in the future")
	case now.Add(-callbackTokenSkew).Unix() >= claims.Exp:
		return refuse("expired")
	}
	return claims, nil
}

func sign(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodePart(part string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
