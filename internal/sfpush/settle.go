package sfpush

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/fault"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/tracing"
)

// settle decides, in this one place and from the error's class alone, what
// happens to a message: ack, retry later, pause the tenant, or dead-letter.
func (tw *tenantWorker) settle(ctx context.Context, it *item) {
	m := tw.w.o.Metrics
	event := callback.Other
	if it.ev != nil {
		event = callback.Label(it.ev.Name)
	}
	// Log lines carry the trace id of the callback this message came from.
	lctx := tracing.Extract(ctx, it.msg.Headers())
	log := tw.log.With("seq", it.seq, "attempt", it.deliveries)
	if it.ev != nil {
		log = log.With("event", it.ev.Name, "package", it.ev.PackageID, "event_key", it.key)
	}
	if it.err == nil {
		if err := it.msg.Ack(); err != nil {
			log.WarnContext(lctx, "ack failed; the message will be redelivered and its writes repeated harmlessly", "error", err)
		}
		m.EventsProcessed.WithLabelValues(tw.t.ID, event, "delivered").Inc()
		tw.record(ctx, it, OutcomeDelivered, 0)
		// A replayed copy keeps its original receive time: its age is not a
		// delivery latency.
		if !it.receivedAt.IsZero() && it.msg.Headers().Get(queue.HeaderSource) != queue.SourceReplay {
			m.EventDelivery.WithLabelValues(tw.t.ID).Observe(tw.w.o.Now().Sub(it.receivedAt).Seconds())
		}
		log.DebugContext(lctx, "delivered")
		return
	}
	// Another worker is writing this package (or died doing so): wait for
	// its lease to end. That is nobody's failure, so it never counts
	// toward worker.max_deliver.
	var busy *busyError
	if errors.As(it.err, &busy) {
		delay := max(busy.until.Sub(tw.w.o.Now()), 100*time.Millisecond)
		_ = it.msg.NakWithDelay(delay)
		m.EventsProcessed.WithLabelValues(tw.t.ID, event, "retried").Inc()
		tw.record(ctx, it, OutcomeRetried, fault.Retryable)
		log.InfoContext(lctx, "package busy; retrying when its lease ends", "retry_in", delay.String())
		return
	}
	class := fault.ClassOf(it.err)
	switch {
	case class == fault.Permanent,
		(class == fault.Retryable || class == fault.AuthExpired) && int(it.deliveries) >= tw.w.o.Worker.MaxDeliver:
		if err := tw.deadLetter(ctx, it, class); err != nil {
			log.ErrorContext(lctx, "dead-letter failed; retrying the message", "error", err, "cause", it.err)
			_ = it.msg.NakWithDelay(tw.backoff(it.deliveries))
			m.EventsProcessed.WithLabelValues(tw.t.ID, event, "retried").Inc()
			tw.record(ctx, it, OutcomeRetried, class)
			return
		}
		m.EventsProcessed.WithLabelValues(tw.t.ID, event, "dead_lettered").Inc()
		tw.record(ctx, it, OutcomeDeadLettered, class)
		log.ErrorContext(lctx, "dead-lettered", "class", class.String(), "error", it.err)
	case class == fault.Reconnect:
		// The token machinery has marked the tenant needs_reconnect (or it
		// was never connected); the loop pauses until it is connected.
		// Nothing counts against the message.
		tw.awaitingConnect = true
		_ = it.msg.NakWithDelay(tw.backoff(1))
		m.EventsProcessed.WithLabelValues(tw.t.ID, event, "retried").Inc()
		tw.record(ctx, it, OutcomePaused, class)
		log.WarnContext(lctx, "tenant must be reconnected; event kept", "error", it.err)
	case class == fault.Throttled:
		until, _ := fault.ThrottledUntil(it.err)
		if !until.After(tw.w.o.Now()) {
			until = tw.w.o.Now().Add(tw.backoff(it.deliveries))
		}
		tw.throttle(ctx, until, it.err.Error())
		_ = it.msg.NakWithDelay(until.Sub(tw.w.o.Now()))
		m.EventsProcessed.WithLabelValues(tw.t.ID, event, "retried").Inc()
		tw.record(ctx, it, OutcomePaused, class)
	default:
		delay := tw.backoff(it.deliveries)
		_ = it.msg.NakWithDelay(delay)
		m.EventsProcessed.WithLabelValues(tw.t.ID, event, "retried").Inc()
		tw.record(ctx, it, OutcomeRetried, class)
		log.WarnContext(lctx, "delivery failed; will retry", "class", class.String(), "error", it.err, "retry_in", delay.String())
	}
}

// backoff is worker.backoff for the n-th delivery (the last step repeats).
func (tw *tenantWorker) backoff(n uint64) time.Duration {
	b := tw.w.o.Worker.Backoff
	i := int(n) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(b) {
		i = len(b) - 1
	}
	return b[i].D()
}

// deadLetter copies the message to DEADLETTER with the reason, then
// terminates it. The copy is published first: a crash in between leaves the
// message to be redelivered and dead-lettered again, never lost; its message
// id makes the second copy a duplicate.
func (tw *tenantWorker) deadLetter(ctx context.Context, it *item, class fault.Class) error {
	reason := truncate(it.err.Error(), 1024)
	if err := PublishDeadLetter(ctx, tw.w.o.JetStream, tw.t.ID, it.msg, reason, class, it.seq, it.deliveries); err != nil {
		return err
	}
	return it.msg.TermWithReason(truncate(reason, 256))
}

// PublishDeadLetter stores a copy of m in DEADLETTER with the §4 headers.
func PublishDeadLetter(ctx context.Context, js jetstream.JetStream, tenant string, m jetstream.Msg, reason string, class fault.Class, seq, deliveries uint64) error {
	event := m.Subject()
	if i := strings.LastIndexByte(event, '.'); i >= 0 {
		event = event[i+1:]
	}
	out := nats.NewMsg("deadletter." + tenant + "." + event)
	out.Data = m.Data()
	for k, v := range m.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		out.Header[k] = v
	}
	out.Header.Set(queue.HeaderError, reason)
	out.Header.Set(queue.HeaderErrorClass, class.String())
	out.Header.Set(queue.HeaderOriginalSeq, strconv.FormatUint(seq, 10))
	out.Header.Set(queue.HeaderDeliveries, strconv.FormatUint(deliveries, 10))
	_, err := js.PublishMsg(ctx, out, jetstream.WithMsgID(fmt.Sprintf("dlq-%d", seq)), jetstream.WithExpectStream(queue.DeadLetterStream))
	if err != nil {
		return fmt.Errorf("publish dead letter for message %d: %w", seq, err)
	}
	return nil
}

// Outcomes of one delivery attempt, as the delivery history records them.
const (
	OutcomeDelivered    = "delivered"
	OutcomeRetried      = "retried"
	OutcomeDeadLettered = "dead_lettered"
	// OutcomePaused: the tenant was paused (reconnect or throttling); the
	// event waits without counting against it.
	OutcomePaused = "paused"
)

// Attempt is one settle decision about one message: the unit of the
// delivery history (internal/history stores and queries them).
type Attempt struct {
	Time      time.Time `json:"time"`
	Tenant    string    `json:"tenant"`
	EventKey  string    `json:"event_key"`
	Seq       uint64    `json:"seq"` // CALLBACKS stream sequence
	PackageID string    `json:"package_id,omitempty"`
	Event     string    `json:"event,omitempty"`
	Source    string    `json:"source,omitempty"` // callback, reconcile, replay
	// Attempt is the delivery count of this stored message (a replayed copy
	// starts again at 1).
	Attempt    uint64    `json:"attempt"`
	Outcome    string    `json:"outcome"`
	ErrorClass string    `json:"error_class,omitempty"`
	Error      string    `json:"error,omitempty"`
	ReceivedAt time.Time `json:"received_at,omitzero"`
	// RecordID is the transaction's Salesforce Id and Files the uploaded
	// ContentVersion Ids by document key, when known.
	RecordID string            `json:"record_id,omitempty"`
	Files    map[string]string `json:"files,omitempty"`
}

// Recorder keeps the delivery history. Record must return at once and never
// fail delivery; Flush waits, within ctx, until what was recorded is stored.
type Recorder interface {
	Record(ctx context.Context, a Attempt)
	Flush(ctx context.Context) error
}

// record hands the attempt to the history, if there is one.
func (tw *tenantWorker) record(ctx context.Context, it *item, outcome string, class fault.Class) {
	h := tw.w.o.History
	if h == nil {
		return
	}
	hdr := it.msg.Headers()
	a := Attempt{
		Time: tw.w.o.Now().UTC(), Tenant: tw.t.ID, Seq: it.seq, Attempt: it.deliveries, Outcome: outcome,
		Source: hdr.Get(queue.HeaderSource), PackageID: hdr.Get(queue.HeaderPackage),
		EventKey: hdr.Get(jetstream.MsgIDHeader), ReceivedAt: it.receivedAt,
	}
	if subj := it.msg.Subject(); strings.Contains(subj, ".") {
		a.Event = subj[strings.LastIndexByte(subj, '.')+1:]
	}
	if it.ev != nil {
		a.EventKey, a.Event, a.PackageID = it.key, it.ev.Name, it.ev.PackageID
	}
	if it.err != nil {
		a.ErrorClass, a.Error = class.String(), truncate(it.err.Error(), 1024)
	}
	h.Record(ctx, a)
}
