package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ticketPrefix keeps connect tickets apart from the connector's OAuth states
// in cs_oauth (states are bare base64url, without a dot).
const ticketPrefix = "ticket."

// errTicket is every reason a ticket is refused: unknown, expired, used, or
// for another tenant. One error, so a refusal says nothing more.
var errTicket = errors.New("connect ticket is not valid")

var ticketFormat = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// tickets are single-use links that let an operator start the connect flow
// in any browser without an admin token there. Only a ticket's SHA-256 is a
// key in cs_oauth, so reading the bucket yields no usable ticket.
type tickets struct {
	kv  jetstream.KeyValue
	ttl time.Duration
	now func() time.Time
}

type ticketRecord struct {
	Tenant    string    `json:"tenant"`
	ExpiresAt time.Time `json:"expires_at"`
}

func ticketKey(ticket string) string {
	sum := sha256.Sum256([]byte(ticket))
	return ticketPrefix + hex.EncodeToString(sum[:])
}

// mint stores a new ticket for tenant and returns it with its expiry.
func (t *tickets) mint(ctx context.Context, tenant string) (string, time.Time, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, fmt.Errorf("tenant %s: connect ticket: %w", tenant, err)
	}
	ticket := base64.RawURLEncoding.EncodeToString(b)
	exp := t.now().Add(t.ttl).UTC().Truncate(time.Second)
	val, err := json.Marshal(ticketRecord{Tenant: tenant, ExpiresAt: exp})
	if err != nil {
		return "", time.Time{}, err
	}
	if _, err := t.kv.Create(ctx, ticketKey(ticket), val); err != nil {
		return "", time.Time{}, fmt.Errorf("tenant %s: store connect ticket: %w", tenant, err)
	}
	return ticket, exp, nil
}

// consume uses ticket for tenant exactly once: the entry is purged at the
// revision that was read, so of two concurrent uses only one succeeds. Any
// presentation burns the ticket, even for the wrong tenant.
func (t *tickets) consume(ctx context.Context, tenant, ticket string) error {
	if !ticketFormat.MatchString(ticket) {
		return errTicket
	}
	key := ticketKey(ticket)
	e, err := t.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return errTicket
	}
	if err != nil {
		return fmt.Errorf("load connect ticket: %w", err)
	}
	if err := t.kv.Purge(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return errTicket
		}
		return fmt.Errorf("consume connect ticket: %w", err)
	}
	var rec ticketRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return errTicket
	}
	if rec.Tenant != tenant || !t.now().Before(rec.ExpiresAt) {
		return errTicket
	}
	return nil
}
