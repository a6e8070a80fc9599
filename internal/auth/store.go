package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors of the KV-backed stores.
var (
	// ErrNotFound: no record for the tenant (never stored, or deleted).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the record changed since it was read (compare-and-swap lost).
	ErrConflict = errors.New("record changed concurrently")
)

// TokenSet is one tenant's Salesforce grant, stored sealed in cs_tokens under
// the tenant id. Every change is a compare-and-swap on the KV revision.
type TokenSet struct {
	RefreshToken string    `json:"refresh_token,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	InstanceURL  string    `json:"instance_url,omitempty"`
	ID           string    `json:"id,omitempty"` // identity URL: https://login.salesforce.com/id/<org>/<user>
	Scope        string    `json:"scope,omitempty"`
	IssuedAt     time.Time `json:"issued_at,omitzero"`    // provider's issued_at (epoch ms on Salesforce)
	Expiry       time.Time `json:"expiry,omitzero"`       // access-token expiry: expires_in, or issued_at + session_ttl
	RefreshedAt  time.Time `json:"refreshed_at,omitzero"` // last successful refresh
	ConnectedAt  time.Time `json:"connected_at,omitzero"` // connect, import or bootstrap
	// Generation counts stored grants and refreshes: it grows on every new
	// token pair, so a writer can tell whether someone else replaced the grant.
	Generation uint64 `json:"generation"`
	// Dead is set when the provider answered invalid_grant: the refresh token is
	// gone and only a reconnect helps. Kept (instead of deleting the record) so
	// that a bootstrap token from config is not replayed.
	Dead       bool   `json:"dead,omitempty"`
	DeadReason string `json:"dead_reason,omitempty"`
	// Lease is held by the one replica that is calling the token endpoint.
	Lease *Lease `json:"lease,omitempty"`
}

// Lease marks a refresh in progress. Other replicas wait for it to be released
// or to expire (a crashed holder blocks nobody for longer than the lease).
type Lease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// usable reports whether the access token can be handed out at now, margin
// before its expiry.
func (ts *TokenSet) usable(now time.Time, margin time.Duration) bool {
	if ts.Dead || ts.AccessToken == "" {
		return false
	}
	if ts.Expiry.IsZero() {
		return true
	}
	// A short-lived token (a provider's small expires_in) gets a margin in
	// proportion, or it would never be usable.
	if life := ts.Expiry.Sub(ts.RefreshedAt); !ts.RefreshedAt.IsZero() && life > 0 {
		margin = min(margin, life/10)
	}
	return now.Add(margin).Before(ts.Expiry)
}

// Store keeps TokenSets sealed in the cs_tokens bucket.
type Store struct {
	kv     jetstream.KeyValue
	sealer *Sealer
}

// NewStore uses kv (the cs_tokens bucket, created by the queue package) and
// seals with sealer.
func NewStore(kv jetstream.KeyValue, sealer *Sealer) *Store {
	return &Store{kv: kv, sealer: sealer}
}

// Load returns the tenant's token set and its KV revision, or ErrNotFound.
// When the record exists but cannot be opened (ErrUnsealable) it still
// returns the revision, so that a new grant can replace it.
func (s *Store) Load(ctx context.Context, tenant string) (*TokenSet, uint64, error) {
	e, err := s.kv.Get(ctx, tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("tenant %s: tokens: %w", tenant, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("tenant %s: load tokens: %w", tenant, err)
	}
	ts, err := s.decode(tenant, e.Value())
	if err != nil {
		return nil, e.Revision(), err
	}
	return ts, e.Revision(), nil
}

func (s *Store) decode(tenant string, blob []byte) (*TokenSet, error) {
	pt, _, err := s.sealer.Open(tenant, blob)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: open tokens: %w", tenant, err)
	}
	var ts TokenSet
	if err := json.Unmarshal(pt, &ts); err != nil {
		return nil, fmt.Errorf("tenant %s: decode tokens: %w", tenant, err)
	}
	return &ts, nil
}

func (s *Store) encode(tenant string, ts *TokenSet) ([]byte, error) {
	pt, err := json.Marshal(ts)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: encode tokens: %w", tenant, err)
	}
	return s.sealer.Seal(tenant, pt)
}

// Save writes ts by compare-and-swap: with rev 0 it creates the key (failing
// with ErrConflict if it exists), otherwise it updates only if the stored
// revision is still rev. It returns the new revision.
func (s *Store) Save(ctx context.Context, tenant string, ts *TokenSet, rev uint64) (uint64, error) {
	blob, err := s.encode(tenant, ts)
	if err != nil {
		return 0, err
	}
	var newRev uint64
	if rev == 0 {
		newRev, err = s.kv.Create(ctx, tenant, blob)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("tenant %s: create tokens: %w", tenant, ErrConflict)
		}
	} else {
		newRev, err = s.kv.Update(ctx, tenant, blob, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, fmt.Errorf("tenant %s: update tokens: %w", tenant, ErrConflict)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("tenant %s: save tokens: %w", tenant, err)
	}
	return newRev, nil
}

// Delete removes the tenant's token set if it is still at revision rev
// (0: whatever is stored). It purges the key, so the sealed older revisions
// kept as history go too.
func (s *Store) Delete(ctx context.Context, tenant string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := s.kv.Purge(ctx, tenant, opts...)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("tenant %s: delete tokens: %w", tenant, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("tenant %s: delete tokens: %w", tenant, err)
	}
	return nil
}

// Modify applies fn to the current token set (nil when none is stored, or
// when the stored one cannot be opened) and saves the result by
// compare-and-swap, retrying on conflicts. fn may be called several times and
// must not have side effects; returning a nil set leaves the store alone.
func (s *Store) Modify(ctx context.Context, tenant string, fn func(cur *TokenSet) (*TokenSet, error)) (*TokenSet, uint64, error) {
	for {
		cur, rev, err := s.Load(ctx, tenant)
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnsealable) {
			return nil, 0, err
		}
		next, err := fn(cur)
		if err != nil || next == nil {
			return cur, rev, err
		}
		newRev, err := s.Save(ctx, tenant, next, rev)
		if errors.Is(err, ErrConflict) {
			if ctx.Err() != nil {
				return nil, 0, ctx.Err()
			}
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		return next, newRev, nil
	}
}
