// Package auth holds Countersign's credentials machinery: the sealing of
// secrets at rest, the Salesforce OAuth token store shared by all replicas
// through NATS KV, the per-tenant token source with cross-replica
// single-flight refresh, the tenant connection state and the connect flow.
package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// sealVersion is the envelope format. It is authenticated (part of the AAD),
// so a blob cannot be replayed under another format.
const sealVersion = 1

// ErrUnsealable is returned by Open when no configured key opens a blob: it was
// tampered with, sealed for another tenant, or sealed by a key that has been
// removed from secrets.keys.
var ErrUnsealable = errors.New("sealed data cannot be opened")

// Sealer encrypts small secrets with AES-256-GCM. The first key seals, every
// key opens, so keys rotate by prepending the new one and dropping the old one
// once every blob has been rewritten (each token refresh rewrites the blob).
type Sealer struct {
	keys []sealKey
}

type sealKey struct {
	id   string // first 8 bytes of SHA-256 of the key, hex: names the key, reveals nothing
	aead cipher.AEAD
}

// envelope is what is stored. JSON keeps it inspectable (kid, version) without
// revealing anything.
type envelope struct {
	V     int    `json:"v"`
	KID   string `json:"kid"`
	Nonce []byte `json:"n"`
	CT    []byte `json:"ct"`
}

// NewSealer builds a sealer from secrets.keys: base64 (standard or URL, padded
// or not) encodings of 32-byte keys. Errors name the key by its index and
// never echo it.
func NewSealer(keysBase64 []string) (*Sealer, error) {
	if len(keysBase64) == 0 {
		return nil, errors.New("secrets.keys: at least one key is required")
	}
	s := &Sealer{}
	seen := map[string]int{}
	var errs []error
	for i, k := range keysBase64 {
		raw, ok := decodeKey(strings.TrimSpace(k))
		switch {
		case strings.TrimSpace(k) == "":
			errs = append(errs, fmt.Errorf("secrets.keys[%d]: empty", i))
			continue
		case !ok:
			errs = append(errs, fmt.Errorf("secrets.keys[%d]: not valid base64", i))
			continue
		case len(raw) != 32:
			errs = append(errs, fmt.Errorf("secrets.keys[%d]: decodes to %d bytes, want 32 (AES-256)", i, len(raw)))
			continue
		}
		sum := sha256.Sum256(raw)
		id := hex.EncodeToString(sum[:8])
		if j, dup := seen[id]; dup {
			errs = append(errs, fmt.Errorf("secrets.keys[%d]: same key as secrets.keys[%d]", i, j))
			continue
		}
		seen[id] = i
		block, err := aes.NewCipher(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("secrets.keys[%d]: %v", i, err))
			continue
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			errs = append(errs, fmt.Errorf("secrets.keys[%d]: %v", i, err))
			continue
		}
		s.keys = append(s.keys, sealKey{id: id, aead: aead})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func decodeKey(k string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(k); err == nil {
			return raw, true
		}
	}
	return nil, false
}

// KeyID returns the id of the sealing (first) key, e.g. for logs and status.
func (s *Sealer) KeyID() string { return s.keys[0].id }

// Seal encrypts plaintext bound to aad (the tenant id for token sets): the blob
// opens only with the same aad, so it cannot be moved to another tenant.
func (s *Sealer) Seal(aad string, plaintext []byte) ([]byte, error) {
	k := s.keys[0]
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: read nonce: %w", err)
	}
	env := envelope{V: sealVersion, KID: k.id, Nonce: nonce}
	env.CT = k.aead.Seal(nil, nonce, plaintext, additionalData(sealVersion, k.id, aad))
	return json.Marshal(env)
}

// Open decrypts a blob made by Seal with the same aad, with whichever
// configured key sealed it. It also reports whether the blob was sealed by an
// older key, so callers can reseal it.
func (s *Sealer) Open(aad string, blob []byte) (plaintext []byte, stale bool, err error) {
	var env envelope
	if err := json.Unmarshal(blob, &env); err != nil {
		return nil, false, fmt.Errorf("%w: not a sealed envelope", ErrUnsealable)
	}
	if env.V != sealVersion {
		return nil, false, fmt.Errorf("%w: envelope version %d not supported", ErrUnsealable, env.V)
	}
	for i, k := range s.keys {
		if k.id != env.KID {
			continue
		}
		if len(env.Nonce) != k.aead.NonceSize() {
			return nil, false, fmt.Errorf("%w: bad nonce", ErrUnsealable)
		}
		pt, err := k.aead.Open(nil, env.Nonce, env.CT, additionalData(env.V, env.KID, aad))
		if err != nil {
			return nil, false, fmt.Errorf("%w: authentication failed (tampered, or sealed for another tenant)", ErrUnsealable)
		}
		return pt, i > 0, nil
	}
	return nil, false, fmt.Errorf("%w: sealed by key %s which is not in secrets.keys", ErrUnsealable, env.KID)
}

// additionalData binds the ciphertext to its format, key id and owner.
func additionalData(version int, kid, aad string) []byte {
	return fmt.Appendf(nil, "countersign-seal/v%d/%s/%s", version, kid, aad)
}
