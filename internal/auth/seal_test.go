package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestSealRoundTripBindsTenant(t *testing.T) {
	s := newSealer(t)
	blob, err := s.Seal("acme", []byte("secret refresh token"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, []byte("secret refresh token")) {
		t.Fatal("plaintext visible in the sealed blob")
	}
	pt, stale, err := s.Open("acme", blob)
	if err != nil || stale || string(pt) != "secret refresh token" {
		t.Fatalf("Open = %q, %v, %v", pt, stale, err)
	}
	if _, _, err := s.Open("globex", blob); !errors.Is(err, ErrUnsealable) {
		t.Fatalf("a blob moved to another tenant opened: %v", err)
	}
}

func TestSealKeyRotation(t *testing.T) {
	oldKey, newKey := newKey(t), newKey(t)
	before := newSealer(t, oldKey)
	oldBlob, err := before.Seal("acme", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	after := newSealer(t, newKey, oldKey)
	pt, stale, err := after.Open("acme", oldBlob)
	if err != nil || string(pt) != "v1" || !stale {
		t.Fatalf("old key must still open (and report stale): %q %v %v", pt, stale, err)
	}
	newBlob, err := after.Seal("acme", []byte("v2"))
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(newBlob, &env); err != nil {
		t.Fatal(err)
	}
	if env.KID != after.KeyID() || env.KID == before.KeyID() || env.V != 1 {
		t.Fatalf("new blob sealed by %s v%d, want the first key %s", env.KID, env.V, after.KeyID())
	}
	if _, _, err := before.Open("acme", newBlob); !errors.Is(err, ErrUnsealable) {
		t.Fatalf("a sealer without the new key opened its blob: %v", err)
	}
	if _, _, err := newSealer(t, newKey).Open("acme", oldBlob); err == nil || !strings.Contains(err.Error(), before.KeyID()) {
		t.Fatalf("dropping the old key must make its blobs unopenable, naming the key id: %v", err)
	}
}

func TestSealDetectsTampering(t *testing.T) {
	s := newSealer(t)
	blob, err := s.Seal("acme", []byte("token set"))
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(blob, &env); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(e *envelope){
		"ciphertext bit": func(e *envelope) { e.CT[0] ^= 1 },
		"tag bit":        func(e *envelope) { e.CT[len(e.CT)-1] ^= 1 },
		"nonce":          func(e *envelope) { e.Nonce[0] ^= 1 },
		"truncated":      func(e *envelope) { e.CT = e.CT[:len(e.CT)-3] },
		"version":        func(e *envelope) { e.V = 2 },
		"key id":         func(e *envelope) { e.KID = "0000000000000000" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := env
			e.CT = append([]byte(nil), env.CT...)
			e.Nonce = append([]byte(nil), env.Nonce...)
			mutate(&e)
			b, _ := json.Marshal(e)
			if _, _, err := s.Open("acme", b); !errors.Is(err, ErrUnsealable) {
				t.Fatalf("tampered blob opened: %v", err)
			}
		})
	}
	if _, _, err := s.Open("acme", []byte("not json")); !errors.Is(err, ErrUnsealable) {
		t.Fatalf("garbage opened: %v", err)
	}
}

func TestNewSealerRejectsBadKeysWithoutEchoingThem(t *testing.T) {
	short := base64.StdEncoding.EncodeToString([]byte("sixteen-byte-key"))
	good := newKey(t)
	cases := []struct {
		name string
		keys []string
		want string
	}{
		{"none", nil, "at least one key"},
		{"empty", []string{""}, "secrets.keys[0]: empty"},
		{"not base64", []string{"not*base64*at*all!"}, "secrets.keys[0]: not valid base64"},
		{"wrong length", []string{good, short}, "secrets.keys[1]: decodes to 16 bytes, want 32"},
		{"duplicate", []string{good, good}, "secrets.keys[1]: same key as secrets.keys[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewSealer(c.keys)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			for _, k := range c.keys {
				if k != "" && strings.Contains(err.Error(), k) {
					t.Fatalf("error echoes the key: %v", err)
				}
			}
		})
	}
	// URL-safe and unpadded encodings of a good key are accepted.
	raw, _ := base64.StdEncoding.DecodeString(good)
	if _, err := NewSealer([]string{base64.RawURLEncoding.EncodeToString(raw)}); err != nil {
		t.Fatal(err)
	}
}
