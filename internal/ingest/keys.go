package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
)

// keyring holds digests of a tenant's accepted Authorization values. Both
// sides of the comparison are 32-byte digests, so neither a key's length nor
// the position of the first differing byte shows in the timing.
type keyring struct {
	digests [][32]byte
}

func newKeyring(keys []string) *keyring {
	k := &keyring{}
	for _, key := range keys {
		k.digests = append(k.digests, sha256.Sum256([]byte("Basic "+key)))
	}
	return k
}

// decoy makes an unknown tenant cost the same as a known one.
var decoy = newKeyring([]string{"no tenant has this key: it only spends the same time"})

// match compares against every key without stopping early.
func (k *keyring) match(header string) bool {
	d := sha256.Sum256([]byte(header))
	ok := 0
	for i := range k.digests {
		ok |= subtle.ConstantTimeCompare(d[:], k.digests[i][:])
	}
	return ok == 1
}
