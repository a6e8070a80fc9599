package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Tenant connection states stored in cs_tenants.
const (
	StateConnected      = "connected"
	StateNeedsReconnect = "needs_reconnect"
	StateDisconnected   = "disconnected"
)

// TenantState is the cs_tenants record of one tenant (JSON, not secret).
// State is empty when nothing was ever recorded for the tenant.
type TenantState struct {
	State          string    `json:"state"`
	Reason         string    `json:"reason"`
	ThrottledUntil string    `json:"throttled_until"` // RFC 3339, or empty
	UpdatedAt      time.Time `json:"updated_at"`
}

// Throttle returns throttled_until as a time (zero when not throttled).
func (s TenantState) Throttle() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s.ThrottledUntil)
	return t
}

// Paused reports whether the worker must not call Salesforce for the tenant
// at now: it must be reconnected, it was disconnected, or it is throttled.
func (s TenantState) Paused(now time.Time) bool {
	switch s.State {
	case StateNeedsReconnect, StateDisconnected:
		return true
	}
	return now.Before(s.Throttle())
}

// Tenants reads and writes tenant states in the cs_tenants bucket, by
// compare-and-swap so that the worker (throttling) and the token machinery
// (connection) never overwrite each other's fields.
type Tenants struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewTenants uses kv, the cs_tenants bucket.
func NewTenants(kv jetstream.KeyValue) *Tenants {
	return &Tenants{kv: kv, now: time.Now}
}

// Get returns the tenant's state and its revision; a tenant without a record
// has the zero TenantState and revision 0.
func (t *Tenants) Get(ctx context.Context, tenant string) (TenantState, uint64, error) {
	e, err := t.kv.Get(ctx, tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return TenantState{}, 0, nil
	}
	if err != nil {
		return TenantState{}, 0, fmt.Errorf("tenant %s: load state: %w", tenant, err)
	}
	var st TenantState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return TenantState{}, 0, fmt.Errorf("tenant %s: decode state: %w", tenant, err)
	}
	return st, e.Revision(), nil
}

// SetConnected marks the tenant connected and clears the reason (a
// needs_reconnect or disconnected tenant becomes connected). It keeps
// throttled_until.
func (t *Tenants) SetConnected(ctx context.Context, tenant string) error {
	return t.update(ctx, tenant, func(s *TenantState) {
		s.State, s.Reason = StateConnected, ""
	})
}

// SetNeedsReconnect marks the tenant as needing an operator to reconnect it.
func (t *Tenants) SetNeedsReconnect(ctx context.Context, tenant, reason string) error {
	return t.update(ctx, tenant, func(s *TenantState) {
		s.State, s.Reason = StateNeedsReconnect, reason
	})
}

// SetDisconnected marks the tenant disconnected on purpose.
func (t *Tenants) SetDisconnected(ctx context.Context, tenant, reason string) error {
	return t.update(ctx, tenant, func(s *TenantState) {
		s.State, s.Reason = StateDisconnected, reason
	})
}

// SetThrottled records that Salesforce must not be called for the tenant
// before until; a zero until clears the throttle.
func (t *Tenants) SetThrottled(ctx context.Context, tenant string, until time.Time) error {
	return t.update(ctx, tenant, func(s *TenantState) {
		if until.IsZero() {
			s.ThrottledUntil = ""
		} else {
			// Whole seconds, rounded up: never end a throttle early.
			s.ThrottledUntil = until.Add(time.Second - 1).Truncate(time.Second).UTC().Format(time.RFC3339)
		}
	})
}

// update applies fn by compare-and-swap, retrying on conflicts; it writes
// nothing when fn changes nothing.
func (t *Tenants) update(ctx context.Context, tenant string, fn func(*TenantState)) error {
	for {
		cur, rev, err := t.Get(ctx, tenant)
		if err != nil {
			return err
		}
		next := cur
		fn(&next)
		if rev != 0 && next.State == cur.State && next.Reason == cur.Reason && next.ThrottledUntil == cur.ThrottledUntil {
			return nil
		}
		next.UpdatedAt = t.now().UTC()
		val, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("tenant %s: encode state: %w", tenant, err)
		}
		if rev == 0 {
			_, err = t.kv.Create(ctx, tenant, val)
		} else {
			_, err = t.kv.Update(ctx, tenant, val, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("tenant %s: save state: %w", tenant, err)
		}
		return nil
	}
}

// Watch sends the tenant's current state, then every change, until ctx ends;
// the channel is closed then. A deleted record is sent as the zero state.
func (t *Tenants) Watch(ctx context.Context, tenant string) (<-chan TenantState, error) {
	w, err := t.kv.Watch(ctx, tenant)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: watch state: %w", tenant, err)
	}
	out := make(chan TenantState, 1)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		sentInitial := false
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				var st TenantState
				if e == nil { // end of the initial values: nothing stored yet
					if sentInitial {
						continue
					}
				} else if e.Operation() == jetstream.KeyValuePut {
					if err := json.Unmarshal(e.Value(), &st); err != nil {
						continue
					}
				}
				sentInitial = true
				select {
				case out <- st:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
