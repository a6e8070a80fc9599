package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/queue"
)

// DeadLetter is one message in DEADLETTER.
type DeadLetter struct {
	Seq         uint64          `json:"seq"` // in DEADLETTER
	Tenant      string          `json:"tenant"`
	Event       string          `json:"event"`
	PackageID   string          `json:"package_id"`
	EventKey    string          `json:"event_key"`
	Error       string          `json:"error"`
	ErrorClass  string          `json:"error_class"`
	Deliveries  int             `json:"deliveries"`
	OriginalSeq uint64          `json:"original_seq"` // in CALLBACKS
	Source      string          `json:"source,omitempty"`
	ReceivedAt  time.Time       `json:"received_at,omitzero"`
	DeadAt      time.Time       `json:"dead_at"`
	Body        json.RawMessage `json:"body,omitempty"`
}

// Page asks for one page of dead letters: Cursor from the previous Next.
type Page struct {
	Cursor string
	Limit  int // default 50, at most 1000
}

// DeadLetterPage is one page, oldest first.
type DeadLetterPage struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
	Next        string       `json:"next,omitempty"` // empty on the last page
}

// ListDeadLetters lists the tenant's dead letters matching f (Source is
// ignored). Pages follow DEADLETTER sequences, so deleting or replaying
// between pages shifts nothing. Cost: a scan of the tenant's dead letters
// from the cursor (DEADLETTER holds only failures).
func (r *Replayer) ListDeadLetters(ctx context.Context, f Filter, p Page) (DeadLetterPage, error) {
	out := DeadLetterPage{DeadLetters: []DeadLetter{}}
	if f.Tenant == "" {
		return out, errors.New("dead letters: tenant is required")
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	var start uint64
	if p.Cursor != "" {
		n, err := strconv.ParseUint(p.Cursor, 10, 64)
		if err != nil || n == 0 {
			return out, fmt.Errorf("dead letters: bad cursor %q", p.Cursor)
		}
		start = n
	}
	f.Source = SourceDeadLetters
	prefix := "deadletter." + f.Tenant + "."
	token := ">"
	if f.Event != "" {
		token = callback.SubjectToken(f.Event)
	}
	o := history.ScanOptions{Subjects: []string{prefix + token}, StartSeq: start, From: f.From, Until: f.To, Max: r.o.MaxScan}
	_, err := history.Scan(ctx, r.o.JetStream, queue.DeadLetterStream, o, func(m jetstream.Msg) (bool, error) {
		md, err := m.Metadata()
		if err != nil {
			return true, nil
		}
		s := r.build(queue.DeadLetterStream, f.Tenant, md.Sequence.Stream, m.Subject(), m.Headers(), m.Data(), md.Timestamp)
		if !r.matches(f, prefix, s) {
			return true, nil
		}
		if len(out.DeadLetters) == limit {
			out.Next = strconv.FormatUint(s.seq, 10)
			return false, nil
		}
		out.DeadLetters = append(out.DeadLetters, deadLetter(f.Tenant, s))
		return true, nil
	})
	return out, err
}

func deadLetter(tenant string, s *stored) DeadLetter {
	h := s.header
	d := DeadLetter{
		Seq: s.seq, Tenant: tenant, Event: s.event(), PackageID: h.Get(queue.HeaderPackage), EventKey: s.key,
		Error: h.Get(queue.HeaderError), ErrorClass: h.Get(queue.HeaderErrorClass), Source: h.Get(queue.HeaderSource),
		DeadAt: s.at,
	}
	if s.ev != nil {
		d.Event = s.ev.Name
	}
	d.Deliveries, _ = strconv.Atoi(h.Get(queue.HeaderDeliveries))
	d.OriginalSeq, _ = strconv.ParseUint(h.Get(queue.HeaderOriginalSeq), 10, 64)
	d.ReceivedAt, _ = time.Parse(time.RFC3339Nano, h.Get(queue.HeaderReceivedAt))
	if json.Valid(s.data) {
		d.Body = json.RawMessage(s.data)
	}
	return d
}

// PurgeDeadLetters deletes the tenant's dead letters matching f (Source is
// ignored) and returns how many. The history keeps their attempts.
func (r *Replayer) PurgeDeadLetters(ctx context.Context, f Filter) (int, error) {
	f.Source = SourceDeadLetters
	msgs, err := r.selectMessages(ctx, f)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range msgs {
		if err := r.deleteMsg(ctx, queue.DeadLetterStream, m.seq); err != nil {
			return n, err
		}
		n++
	}
	r.log.Info("dead letters purged", "tenant", f.Tenant, "count", n)
	return n, nil
}
