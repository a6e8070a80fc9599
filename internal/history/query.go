package history

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/queue"
)

// Store answers questions about the history.
//
// Cost, honestly: HISTORY has no secondary index. Events scans the window's
// attempts of the tenant (narrowed on the server by event name and start
// time); Story scans 1/16 of the tenant's history (the key's shard);
// PackageStory uses the package's CALLBACKS sequences kept in cs_packages,
// reads those messages by sequence and scans only the subjects of their
// events from the first one's arrival. Every scan is bounded (MaxScan).
type Store struct {
	js       jetstream.JetStream
	packages jetstream.KeyValue
	// MaxScan bounds the messages one query reads (default DefaultMaxScan).
	MaxScan int
}

// NewStore queries HISTORY, CALLBACKS and cs_packages.
func NewStore(js jetstream.JetStream, packages jetstream.KeyValue) *Store {
	return &Store{js: js, packages: packages}
}

// ErrNotFound: no attempt of that event is in the history.
var ErrNotFound = errors.New("not found in delivery history")

// Filter selects events. Tenant is required.
type Filter struct {
	Tenant    string
	PackageID string
	Event     string
	Outcome   string    // of the latest attempt
	Source    string    // any attempt came from this source (callback, reconcile, replay)
	From, To  time.Time // attempt times; zero: unbounded
}

// Page asks for one page: Cursor from the previous answer's Next.
type Page struct {
	Cursor string
	Limit  int // default 50, at most 1000
}

// EventSummary is one event: its latest attempt and how many there were.
type EventSummary struct {
	Tenant     string    `json:"tenant"`
	EventKey   string    `json:"event_key"`
	PackageID  string    `json:"package_id"`
	Event      string    `json:"event"`
	Outcome    string    `json:"outcome"`
	Attempts   int       `json:"attempts"`
	Sources    []string  `json:"sources"`
	FirstAt    time.Time `json:"first_at"`
	LastAt     time.Time `json:"last_at"`
	Seq        uint64    `json:"seq"` // CALLBACKS sequence of the latest attempt
	ErrorClass string    `json:"error_class,omitempty"`
	Error      string    `json:"error,omitempty"`
	RecordID   string    `json:"record_id,omitempty"`
}

// EventPage is one page of events, newest attempt first. Attempts counts
// only attempts inside [From, To].
type EventPage struct {
	Events    []EventSummary `json:"events"`
	Next      string         `json:"next,omitempty"` // empty on the last page
	Scanned   int            `json:"scanned"`
	Truncated bool           `json:"truncated"` // MaxScan was reached: results are partial
}

// Message is a stored copy of a callback in CALLBACKS.
type Message struct {
	Seq        uint64          `json:"seq"`
	Subject    string          `json:"subject"`
	Source     string          `json:"source,omitempty"`
	ReceivedAt time.Time       `json:"received_at,omitzero"`
	Body       json.RawMessage `json:"body,omitempty"`
	// Gone: the message aged out of CALLBACKS (or was never there).
	Gone bool `json:"gone,omitempty"`
}

// Story is everything known about one event.
type Story struct {
	Tenant    string    `json:"tenant"`
	EventKey  string    `json:"event_key"`
	PackageID string    `json:"package_id"`
	Event     string    `json:"event"`
	Attempts  []Attempt `json:"attempts"` // oldest first
	Messages  []Message `json:"messages"` // the stored copies (original, replays)
}

// PackageStory is everything known about one package.
type PackageStory struct {
	Tenant    string            `json:"tenant"`
	PackageID string            `json:"package_id"`
	RecordID  string            `json:"record_id,omitempty"`
	Status    string            `json:"status,omitempty"`
	StatusAt  time.Time         `json:"status_at,omitzero"`
	Files     map[string]string `json:"files,omitempty"`
	Events    []Story           `json:"events"` // by first arrival
	// Indexed is false when cs_packages had no sequences for the package and
	// the tenant's whole history was scanned instead.
	Indexed   bool `json:"indexed"`
	Scanned   int  `json:"scanned"`
	Truncated bool `json:"truncated"`
}

// Events lists events matching f, one summary per event key.
func (s *Store) Events(ctx context.Context, f Filter, p Page) (EventPage, error) {
	if f.Tenant == "" {
		return EventPage{}, errors.New("history events: tenant is required")
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return EventPage{}, err
	}
	agg := newAggregate()
	var page EventPage
	if f.PackageID != "" {
		ps, err := s.PackageStory(ctx, f.Tenant, f.PackageID)
		if err != nil {
			return EventPage{}, err
		}
		for _, st := range ps.Events {
			for _, a := range st.Attempts {
				if inWindow(a.Time, f.From, f.To) {
					agg.add(a)
				}
			}
		}
		page.Scanned, page.Truncated = ps.Scanned, ps.Truncated
	} else {
		subject := "history." + f.Tenant + ".>"
		if f.Event != "" {
			subject = "history." + f.Tenant + "." + callback.SubjectToken(f.Event) + ".*"
		}
		o := ScanOptions{Subjects: []string{subject}, From: f.From, Max: s.MaxScan}
		if !f.To.IsZero() {
			o.Until = f.To.Add(time.Minute) // stored a little after it happened
		}
		res, err := Scan(ctx, s.js, Stream, o, func(m jetstream.Msg) (bool, error) {
			var a Attempt
			if json.Unmarshal(m.Data(), &a) == nil && inWindow(a.Time, f.From, f.To) {
				agg.add(a)
			}
			return true, nil
		})
		if err != nil {
			return EventPage{}, err
		}
		page.Scanned, page.Truncated = res.Scanned, res.Truncated
	}
	var list []EventSummary
	for _, sum := range agg.byKey {
		if (f.Event == "" || sum.Event == f.Event) && (f.Outcome == "" || sum.Outcome == f.Outcome) &&
			(f.Source == "" || slices.Contains(sum.Sources, f.Source)) {
			list = append(list, *sum)
		}
	}
	slices.SortFunc(list, newestFirst)
	start := 0
	if after != nil {
		start, _ = slices.BinarySearchFunc(list, *after, func(e EventSummary, c cursor) int {
			return newestFirst(e, EventSummary{LastAt: c.at, EventKey: c.key})
		})
		if start < len(list) && list[start].EventKey == after.key && list[start].LastAt.Equal(after.at) {
			start++
		}
	}
	end := min(start+limit, len(list))
	page.Events = list[start:end]
	if page.Events == nil {
		page.Events = []EventSummary{}
	}
	if end < len(list) {
		last := list[end-1]
		page.Next = encodeCursor(cursor{at: last.LastAt, key: last.EventKey})
	}
	return page, nil
}

func newestFirst(a, b EventSummary) int {
	if c := b.LastAt.Compare(a.LastAt); c != 0 {
		return c
	}
	return cmp.Compare(a.EventKey, b.EventKey)
}

func inWindow(t, from, to time.Time) bool {
	return (from.IsZero() || !t.Before(from)) && (to.IsZero() || !t.After(to))
}

// cursor is the position after the last event of a page (keyset paging, so
// events recorded meanwhile shift nothing already seen).
type cursor struct {
	at  time.Time
	key string
}

func encodeCursor(c cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.at.UnixNano(), 10) + "." + c.key))
}

func decodeCursor(s string) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if ns, key, ok := strings.Cut(string(b), "."); ok {
			if n, err := strconv.ParseInt(ns, 10, 64); err == nil {
				return &cursor{at: time.Unix(0, n), key: key}, nil
			}
		}
	}
	return nil, fmt.Errorf("history events: bad cursor %q", s)
}

type aggregate struct {
	byKey  map[string]*EventSummary
	latest map[string]Attempt
}

func newAggregate() *aggregate {
	return &aggregate{byKey: map[string]*EventSummary{}, latest: map[string]Attempt{}}
}

func (g *aggregate) add(a Attempt) {
	s, ok := g.byKey[a.EventKey]
	if !ok {
		s = &EventSummary{Tenant: a.Tenant, EventKey: a.EventKey, FirstAt: a.Time}
		g.byKey[a.EventKey] = s
	}
	s.Attempts++
	if a.Time.Before(s.FirstAt) {
		s.FirstAt = a.Time
	}
	if a.Source != "" && !slices.Contains(s.Sources, a.Source) {
		s.Sources = append(s.Sources, a.Source)
		slices.Sort(s.Sources)
	}
	if a.RecordID != "" {
		s.RecordID = a.RecordID
	}
	if l, ok := g.latest[a.EventKey]; ok && later(l, a) {
		return
	}
	g.latest[a.EventKey] = a
	s.PackageID, s.Event, s.Outcome, s.LastAt, s.Seq = a.PackageID, a.Event, a.Outcome, a.Time, a.Seq
	s.ErrorClass, s.Error = a.ErrorClass, a.Error
}

// later reports whether a happened after b (attempts are stored out of order).
func later(a, b Attempt) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	if a.Seq != b.Seq {
		return a.Seq > b.Seq
	}
	return a.Attempt > b.Attempt
}

// Story returns every attempt of one event and its stored copies.
func (s *Store) Story(ctx context.Context, tenant, eventKey string) (Story, error) {
	st := Story{Tenant: tenant, EventKey: eventKey}
	_, err := Scan(ctx, s.js, Stream, ScanOptions{Subjects: []string{"history." + tenant + ".*." + Shard(eventKey)}, Max: s.MaxScan},
		func(m jetstream.Msg) (bool, error) {
			var a Attempt
			if json.Unmarshal(m.Data(), &a) == nil && a.EventKey == eventKey {
				st.Attempts = append(st.Attempts, a)
			}
			return true, nil
		})
	if err != nil {
		return st, err
	}
	if len(st.Attempts) == 0 {
		return st, fmt.Errorf("event %s of tenant %s: %w", eventKey, tenant, ErrNotFound)
	}
	sortAttempts(st.Attempts)
	last := st.Attempts[len(st.Attempts)-1]
	st.PackageID, st.Event = last.PackageID, last.Event
	for _, seq := range attemptSeqs(st.Attempts) {
		st.Messages = append(st.Messages, s.message(ctx, tenant, seq))
	}
	return st, nil
}

// PackageStory returns every event of a package with its attempts. The
// index (cs_packages) lists a message once the worker wrote its transaction;
// an event that never got that far (dead-lettered at the transaction write)
// is missed unless another event of the same name and shard brings its
// subject in. Without any index entry the tenant's whole history is scanned.
func (s *Store) PackageStory(ctx context.Context, tenant, packageID string) (PackageStory, error) {
	ps := PackageStory{Tenant: tenant, PackageID: packageID, Events: []Story{}}
	state, ok, err := readState(ctx, s.packages, tenant, packageID)
	if err != nil {
		return ps, err
	}
	if ok {
		ps.RecordID, ps.Status, ps.StatusAt, ps.Files = state.RecordID, state.Status, state.StatusAt, state.Documents
	}
	stories := map[string]*Story{}
	var order []string
	story := func(key string) *Story {
		if st, ok := stories[key]; ok {
			return st
		}
		st := &Story{Tenant: tenant, EventKey: key, PackageID: packageID}
		stories[key] = st
		order = append(order, key)
		return st
	}
	// The index: the package's messages, read by sequence.
	seen := map[uint64]bool{}
	subjects := map[string]bool{}
	var first time.Time
	for _, seq := range state.Sequences {
		m, ev, stored := s.messageEvent(ctx, tenant, seq)
		seen[seq] = true
		if ev == nil || ev.PackageID != packageID {
			continue
		}
		key := ev.Key(tenant)
		st := story(key)
		st.Event = ev.Name
		st.Messages = append(st.Messages, m)
		subjects[Subject(tenant, ev.Name, key)] = true
		if first.IsZero() || stored.Before(first) {
			first = stored
		}
	}
	o := ScanOptions{Max: s.MaxScan, From: first}
	switch {
	case len(subjects) == 0:
		o.Subjects = []string{"history." + tenant + ".>"}
	case len(subjects) > 256:
		o.Subjects = []string{"history." + tenant + ".>"}
		ps.Indexed = true
	default:
		for subj := range subjects {
			o.Subjects = append(o.Subjects, subj)
		}
		ps.Indexed = true
	}
	res, err := Scan(ctx, s.js, Stream, o, func(m jetstream.Msg) (bool, error) {
		var a Attempt
		if json.Unmarshal(m.Data(), &a) == nil && a.PackageID == packageID {
			st := story(a.EventKey)
			st.Attempts = append(st.Attempts, a)
		}
		return true, nil
	})
	if err != nil {
		return ps, err
	}
	ps.Scanned, ps.Truncated = res.Scanned, res.Truncated
	for _, key := range order {
		st := stories[key]
		sortAttempts(st.Attempts)
		if n := len(st.Attempts); n > 0 {
			st.Event = cmp.Or(st.Event, st.Attempts[n-1].Event)
		}
		for _, seq := range attemptSeqs(st.Attempts) {
			if !seen[seq] {
				seen[seq] = true
				st.Messages = append(st.Messages, s.message(ctx, tenant, seq))
			}
		}
		slices.SortFunc(st.Messages, func(a, b Message) int { return cmp.Compare(a.Seq, b.Seq) })
		if st.Attempts == nil {
			st.Attempts = []Attempt{}
		}
		ps.Events = append(ps.Events, *st)
	}
	slices.SortStableFunc(ps.Events, func(a, b Story) int { return cmp.Compare(firstSeq(a), firstSeq(b)) })
	return ps, nil
}

func firstSeq(st Story) uint64 {
	if len(st.Messages) > 0 {
		return st.Messages[0].Seq
	}
	return 0
}

func sortAttempts(as []Attempt) {
	slices.SortStableFunc(as, func(a, b Attempt) int {
		if later(a, b) {
			return 1
		}
		if later(b, a) {
			return -1
		}
		return 0
	})
}

func attemptSeqs(as []Attempt) []uint64 {
	var seqs []uint64
	for _, a := range as {
		if a.Seq > 0 && !slices.Contains(seqs, a.Seq) {
			seqs = append(seqs, a.Seq)
		}
	}
	slices.Sort(seqs)
	return seqs
}

// message reads one stored callback of the tenant by sequence.
func (s *Store) message(ctx context.Context, tenant string, seq uint64) Message {
	m, _, _ := s.messageEvent(ctx, tenant, seq)
	return m
}

func (s *Store) messageEvent(ctx context.Context, tenant string, seq uint64) (Message, *callback.Event, time.Time) {
	out := Message{Seq: seq, Gone: true}
	stream, err := s.js.Stream(ctx, queue.CallbacksStream)
	if err != nil {
		return out, nil, time.Time{}
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil || !strings.HasPrefix(raw.Subject, "callbacks."+tenant+".") {
		return out, nil, time.Time{}
	}
	out.Gone, out.Subject = false, raw.Subject
	out.Source = raw.Header.Get(queue.HeaderSource)
	out.ReceivedAt, _ = time.Parse(time.RFC3339Nano, raw.Header.Get(queue.HeaderReceivedAt))
	if json.Valid(raw.Data) {
		out.Body = json.RawMessage(raw.Data)
	}
	ev, _ := callback.Parse(raw.Data)
	return out, ev, raw.Time
}
