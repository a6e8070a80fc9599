// Package history is the delivery history: every settle decision of the
// worker (an Attempt), kept in the HISTORY stream as long as CALLBACKS keeps
// the callbacks, and the queries operators ask of it.
package history

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/sfpush"
)

// Stream is the history stream. Subjects are
// history.<tenant>.<EVENT>.<shard>: ids stay out of subjects, and <shard>
// (one hex digit of a hash of the event key) lets the server narrow a lookup
// by event key to 1/16 of a tenant's history. More shards would narrow it
// further but slow every wildcard scan: the server matches each message load
// against every subject of the block (measured: 256 shards made a tenant
// scan 5x slower, 16 shards about 1.2x).
const Stream = "HISTORY"

// Attempt is one recorded delivery attempt (defined by the worker).
type Attempt = sfpush.Attempt

// Outcomes, as the worker records them.
const (
	Delivered    = sfpush.OutcomeDelivered
	Retried      = sfpush.OutcomeRetried
	DeadLettered = sfpush.OutcomeDeadLettered
	Paused       = sfpush.OutcomePaused
)

// Ensure creates or updates the HISTORY stream with the retention and
// replicas of CALLBACKS.
func Ensure(ctx context.Context, js jetstream.JetStream, retention time.Duration, replicas int) error {
	if retention <= 0 {
		retention = 720 * time.Hour
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "delivery history: every attempt of every event",
		Subjects:    []string{"history.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      retention,
		Duplicates:  min(2*time.Minute, retention),
		Replicas:    max(replicas, 1),
		// History explains deliveries; it is not what must never be lost.
		// Without a per-message fsync it costs the worker nothing under
		// nats.sync_always (an OS crash may lose its last moments).
		PersistMode: jetstream.AsyncPersistMode,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", Stream, err)
	}
	return nil
}

// Subject is where an attempt of one event is stored.
func Subject(tenant, event, eventKey string) string {
	return "history." + tenant + "." + callback.SubjectToken(event) + "." + Shard(eventKey)
}

// Shard is the subject token of an event key: 16 values, whatever the key.
func Shard(eventKey string) string {
	sum := sha256.Sum256([]byte(eventKey))
	return hex.EncodeToString(sum[:1])[:1]
}
