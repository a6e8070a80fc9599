package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/tracing"
)

// Header names of ARCHITECTURE §4.
const (
	HeaderPackage     = "Countersign-Package"
	HeaderReceivedAt  = "Countersign-Received-At"
	HeaderSource      = "Countersign-Source"
	HeaderError       = "Countersign-Error"
	HeaderErrorClass  = "Countersign-Error-Class"
	HeaderOriginalSeq = "Countersign-Original-Seq"
	HeaderDeliveries  = "Countersign-Deliveries"
)

// Sources of a message in CALLBACKS.
const (
	SourceCallback  = "callback"
	SourceReconcile = "reconcile"
	SourceReplay    = "replay"
)

// Subject is callbacks.<tenant>.<EVENT>; ids stay out of subjects.
func Subject(tenant, event string) string {
	return "callbacks." + tenant + "." + callback.SubjectToken(event)
}

// Callback is one event ready to be stored.
type Callback struct {
	Tenant     string
	Event      *callback.Event
	Body       []byte // exactly as received
	MsgID      string // Nats-Msg-Id: the event key, or a fresh id for a replay
	Source     string
	ReceivedAt time.Time
}

// Published is the outcome of a stored publish.
type Published struct {
	Sequence  uint64
	Duplicate bool
}

// Publish stores the callback and returns only after JetStream's PubAck: the
// caller may answer 2xx exactly when err is nil.
func (q *Queue) Publish(ctx context.Context, c Callback) (Published, error) {
	msg := &nats.Msg{
		Subject: Subject(c.Tenant, c.Event.Name),
		Data:    c.Body,
		Header:  nats.Header{},
	}
	msg.Header.Set(HeaderPackage, c.Event.PackageID)
	msg.Header.Set(HeaderReceivedAt, c.ReceivedAt.UTC().Format(time.RFC3339Nano))
	msg.Header.Set(HeaderSource, c.Source)
	tracing.Inject(ctx, msg.Header) // traceparent: the worker continues the callback's trace
	ack, err := q.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(c.MsgID),
		jetstream.WithExpectStream(CallbacksStream),
		jetstream.WithRetryAttempts(0))
	if err != nil {
		return Published{}, fmt.Errorf("publish %s for package %s: %w", c.MsgID, c.Event.PackageID, err)
	}
	return Published{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}
