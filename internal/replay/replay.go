// Package replay re-injects stored callbacks into CALLBACKS, from the stored
// history or from DEADLETTER, and manages dead letters. It sits above queue
// because it uses the indexes others keep (cs_packages for packages, the
// delivery history for event keys) to avoid scanning streams.
package replay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/sfpush"
)

// Where a replay reads from.
const (
	SourceHistory     = "history"     // CALLBACKS: every callback as received
	SourceDeadLetters = "deadletters" // DEADLETTER
)

// HeaderReplayOf names the message a replayed copy was made from
// ("CALLBACKS:<seq>" or "DEADLETTER:<seq>"), for audit.
const HeaderReplayOf = "Countersign-Replay-Of"

// Filter selects stored messages of one tenant. Every set field must match.
type Filter struct {
	Tenant    string // required
	PackageID string
	Event     string
	From, To  time.Time // when the message was stored; zero: unbounded
	Source    string    // SourceHistory (default) or SourceDeadLetters
	EventKeys []string
	Seqs      []uint64 // sequences in the source stream
}

// Result counts what a replay did. Matched = Replayed + Skipped (+ failures
// when an error is returned); a dry run replays nothing, so what it would
// replay is Matched - Skipped.
type Result struct {
	Matched  int  `json:"matched"`
	Replayed int  `json:"replayed"`
	Skipped  int  `json:"skipped"` // another matched message is the same event: one copy per event
	DryRun   bool `json:"dry_run"`
}

// Options configure a Replayer.
type Options struct {
	JetStream jetstream.JetStream
	Packages  jetstream.KeyValue // cs_packages: the index of a package's messages
	History   *history.Store     // optional: finds messages by event key without a scan
	Logger    *slog.Logger
	// MaxScan bounds the messages one selection reads (default history.DefaultMaxScan).
	MaxScan int
	// MaxMessages bounds the messages one replay or purge selects and holds
	// in memory (default 100000): a larger selection is refused, to be split.
	MaxMessages int
}

// Replayer replays and manages dead letters.
type Replayer struct {
	o   Options
	log *slog.Logger
}

// New returns a Replayer.
func New(o Options) (*Replayer, error) {
	if o.JetStream == nil || o.Packages == nil {
		return nil, errors.New("replay: jetstream and packages bucket are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxMessages <= 0 {
		o.MaxMessages = 100_000
	}
	return &Replayer{o: o, log: o.Logger.With("component", "replay")}, nil
}

// stored is one selected message.
type stored struct {
	stream  string
	seq     uint64
	subject string
	header  nats.Header
	data    []byte
	at      time.Time // when it was stored
	ev      *callback.Event
	key     string
}

func (s *stored) event() string { return s.subject[strings.LastIndexByte(s.subject, '.')+1:] }

// Replay stores a copy of every selected event in CALLBACKS with
// Countersign-Source: replay and a fresh Nats-Msg-Id, so the worker delivers
// it again; its idempotent writes (keys computed from the body) update the
// same Salesforce records. One copy per event: other matched copies of the
// same event are skipped. From DEADLETTER, the dead letters of an event are
// deleted only after its copy's PubAck. progress, if set, is called after
// each message.
func (r *Replayer) Replay(ctx context.Context, f Filter, dryRun bool, progress func(done, total int)) (Result, error) {
	res := Result{DryRun: dryRun}
	if f.Source == "" {
		f.Source = SourceHistory
	}
	msgs, err := r.selectMessages(ctx, f)
	if err != nil {
		return res, err
	}
	res.Matched = len(msgs)
	byKey := map[string][]*stored{}
	var keys []string
	for _, m := range msgs {
		if _, ok := byKey[m.key]; !ok {
			keys = append(keys, m.key)
		}
		byKey[m.key] = append(byKey[m.key], m)
	}
	done := 0
	for _, key := range keys {
		group := byKey[key]
		res.Skipped += len(group) - 1
		if !dryRun {
			if err := r.publishCopy(ctx, f.Tenant, group[0]); err != nil {
				return res, err
			}
			res.Replayed++
			if f.Source == SourceDeadLetters {
				for _, m := range group {
					if err := r.deleteMsg(ctx, queue.DeadLetterStream, m.seq); err != nil {
						return res, err
					}
				}
			}
		}
		done += len(group)
		if progress != nil {
			progress(done, len(msgs))
		}
	}
	r.log.Info("replay", "tenant", f.Tenant, "source", f.Source, "matched", res.Matched, "replayed", res.Replayed,
		"skipped", res.Skipped, "dry_run", dryRun)
	return res, nil
}

func (r *Replayer) publishCopy(ctx context.Context, tenant string, m *stored) error {
	out := nats.NewMsg(queue.Subject(tenant, m.event()))
	out.Data = m.data
	for k, v := range m.header {
		switch {
		case strings.HasPrefix(k, "Nats-"), k == queue.HeaderError, k == queue.HeaderErrorClass,
			k == queue.HeaderOriginalSeq, k == queue.HeaderDeliveries, k == HeaderReplayOf:
			continue
		}
		out.Header[k] = slices.Clone(v)
	}
	out.Header.Set(queue.HeaderSource, queue.SourceReplay)
	out.Header.Set(HeaderReplayOf, m.stream+":"+strconv.FormatUint(m.seq, 10))
	if out.Header.Get(queue.HeaderReceivedAt) == "" {
		out.Header.Set(queue.HeaderReceivedAt, m.at.UTC().Format(time.RFC3339Nano))
	}
	// A fresh id: the event key itself would be swallowed by deduplication.
	id := m.key + ":replay:" + nuid.Next()
	ack, err := r.o.JetStream.PublishMsg(ctx, out, jetstream.WithMsgID(id), jetstream.WithExpectStream(queue.CallbacksStream))
	if err != nil {
		return fmt.Errorf("replay %s message %d: %w", m.stream, m.seq, err)
	}
	r.log.Debug("replayed", "tenant", tenant, "from", m.stream, "seq", m.seq, "new_seq", ack.Sequence, "event_key", m.key)
	return nil
}

func (r *Replayer) deleteMsg(ctx context.Context, streamName string, seq uint64) error {
	s, err := r.o.JetStream.Stream(ctx, streamName)
	if err != nil {
		return fmt.Errorf("stream %s: %w", streamName, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete %s message %d: %w", streamName, seq, err)
	}
	return nil
}

// selectMessages finds the messages matching f, oldest first, using an
// index where one applies: explicit sequences, the package's sequences in
// cs_packages, the event keys' attempts in the history; otherwise a scan of
// the tenant's subjects in the window.
func (r *Replayer) selectMessages(ctx context.Context, f Filter) ([]*stored, error) {
	if f.Tenant == "" {
		return nil, errors.New("replay: tenant is required")
	}
	streamName, prefix := queue.CallbacksStream, "callbacks."
	switch f.Source {
	case SourceHistory:
	case SourceDeadLetters:
		streamName, prefix = queue.DeadLetterStream, "deadletter."
	default:
		return nil, fmt.Errorf("replay: source must be %s or %s, not %q", SourceHistory, SourceDeadLetters, f.Source)
	}
	prefix += f.Tenant + "."
	var out []*stored
	seen := map[uint64]bool{}
	tooMany := fmt.Errorf("replay: more than %d messages match; narrow the filter", r.o.MaxMessages)
	keep := func(m *stored) error {
		if !seen[m.seq] && r.matches(f, prefix, m) {
			if len(out) == r.o.MaxMessages {
				return tooMany
			}
			seen[m.seq] = true
			out = append(out, m)
		}
		return nil
	}
	seqs, indexed, err := r.indexed(ctx, f)
	if err != nil {
		return nil, err
	}
	if indexed {
		s, err := r.o.JetStream.Stream(ctx, streamName)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", streamName, err)
		}
		for _, seq := range seqs {
			raw, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // aged out or deleted
			}
			if err != nil {
				return nil, fmt.Errorf("read %s message %d: %w", streamName, seq, err)
			}
			if err := keep(r.fromRaw(streamName, f.Tenant, raw)); err != nil {
				return nil, err
			}
		}
	} else {
		token := ">"
		if f.Event != "" {
			token = callback.SubjectToken(f.Event)
		}
		o := history.ScanOptions{Subjects: []string{prefix + token}, From: f.From, Until: f.To, Max: r.o.MaxScan}
		res, err := history.Scan(ctx, r.o.JetStream, streamName, o, func(m jetstream.Msg) (bool, error) {
			md, err := m.Metadata()
			if err != nil {
				return true, nil
			}
			return true, keep(r.build(streamName, f.Tenant, md.Sequence.Stream, m.Subject(), m.Headers(), m.Data(), md.Timestamp))
		})
		if err != nil {
			return nil, err
		}
		if res.Truncated {
			return nil, fmt.Errorf("replay: more than %d messages in the window; narrow it", res.Scanned)
		}
	}
	slices.SortFunc(out, func(a, b *stored) int { return cmp.Compare(a.seq, b.seq) })
	return out, nil
}

// indexed returns the sequences to read when an index answers the filter.
// The package index lists messages whose transaction write succeeded: one
// that failed before it is in DEADLETTER, which SourceDeadLetters replays.
func (r *Replayer) indexed(ctx context.Context, f Filter) ([]uint64, bool, error) {
	if len(f.Seqs) > 0 {
		return f.Seqs, true, nil
	}
	if f.Source != SourceHistory {
		return nil, false, nil // DEADLETTER is small: scanning it is the index
	}
	if f.PackageID != "" {
		st, ok, err := packageState(ctx, r.o.Packages, f.Tenant, f.PackageID)
		if err != nil || !ok || len(st.Sequences) == 0 {
			return nil, false, err
		}
		return st.Sequences, true, nil
	}
	if len(f.EventKeys) > 0 && r.o.History != nil {
		var seqs []uint64
		for _, key := range f.EventKeys {
			st, err := r.o.History.Story(ctx, f.Tenant, key)
			if errors.Is(err, history.ErrNotFound) {
				return nil, false, nil // never attempted: only a scan finds it
			}
			if err != nil {
				return nil, false, err
			}
			for _, a := range st.Attempts {
				seqs = append(seqs, a.Seq)
			}
		}
		return seqs, true, nil
	}
	return nil, false, nil
}

func (r *Replayer) fromRaw(streamName, tenant string, raw *jetstream.RawStreamMsg) *stored {
	return r.build(streamName, tenant, raw.Sequence, raw.Subject, raw.Header, raw.Data, raw.Time)
}

func (r *Replayer) build(streamName, tenant string, seq uint64, subject string, h nats.Header, data []byte, at time.Time) *stored {
	m := &stored{stream: streamName, seq: seq, subject: subject, header: h, data: data, at: at}
	if ev, err := callback.Parse(data); err == nil {
		m.ev, m.key = ev, ev.Key(tenant)
	} else if id := h.Get(jetstream.MsgIDHeader); id != "" {
		m.key = id
	} else {
		m.key = fmt.Sprintf("%s-%d", streamName, seq)
	}
	return m
}

func (r *Replayer) matches(f Filter, prefix string, m *stored) bool {
	if !strings.HasPrefix(m.subject, prefix) {
		return false
	}
	if f.Event != "" {
		name := m.event()
		if m.ev != nil {
			name = m.ev.Name
		}
		if name != f.Event {
			return false
		}
	}
	if f.PackageID != "" && m.header.Get(queue.HeaderPackage) != f.PackageID {
		return false
	}
	if (!f.From.IsZero() && m.at.Before(f.From)) || (!f.To.IsZero() && m.at.After(f.To)) {
		return false
	}
	if len(f.EventKeys) > 0 && !slices.Contains(f.EventKeys, m.key) {
		return false
	}
	if len(f.Seqs) > 0 && !slices.Contains(f.Seqs, m.seq) {
		return false
	}
	return true
}

func packageState(ctx context.Context, kv jetstream.KeyValue, tenant, pkg string) (sfpush.PackageState, bool, error) {
	e, err := kv.Get(ctx, sfpush.PackageKey(tenant, pkg))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return sfpush.PackageState{}, false, nil
	}
	if err != nil {
		return sfpush.PackageState{}, false, fmt.Errorf("read state of package %s: %w", pkg, err)
	}
	var st sfpush.PackageState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return sfpush.PackageState{}, false, fmt.Errorf("decode state of package %s: %w", pkg, err)
	}
	return st, true, nil
}
