package auth

import (
	"context"
	"errors"
	"time"
)

// GrantInfo is what an operator may see of a tenant's stored grant: dates and
// places, never a token.
type GrantInfo struct {
	Stored      bool // a record exists in cs_tokens
	Unsealable  bool // it exists but secrets.keys cannot open it
	Usable      bool // it holds a refresh token and is not dead
	Dead        bool // Salesforce refused it (or the operator disconnected)
	DeadReason  string
	InstanceURL string
	IdentityURL string // https://login.salesforce.com/id/<org>/<user>: who approved
	Scope       string
	ConnectedAt time.Time // connect, import or bootstrap
	RefreshedAt time.Time // last successful refresh
	// SessionExpiry is when the current access token is assumed to expire.
	SessionExpiry time.Time
	// Refreshing is true while a replica holds the refresh lease.
	Refreshing bool
}

// Info reads the tenant's stored grant without refreshing or caching it.
func (s *Source) Info(ctx context.Context) (GrantInfo, error) {
	ts, _, err := s.store.Load(ctx, s.tenant)
	switch {
	case errors.Is(err, ErrNotFound):
		return GrantInfo{}, nil
	case errors.Is(err, ErrUnsealable):
		return GrantInfo{Stored: true, Unsealable: true}, nil
	case err != nil:
		return GrantInfo{}, err
	}
	return GrantInfo{
		Stored:        true,
		Usable:        !ts.Dead && ts.RefreshToken != "",
		Dead:          ts.Dead,
		DeadReason:    ts.DeadReason,
		InstanceURL:   ts.InstanceURL,
		IdentityURL:   ts.ID,
		Scope:         ts.Scope,
		ConnectedAt:   ts.ConnectedAt,
		RefreshedAt:   ts.RefreshedAt,
		SessionExpiry: ts.Expiry,
		Refreshing:    ts.Lease != nil && s.now().Before(ts.Lease.Until),
	}, nil
}
