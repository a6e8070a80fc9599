package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/sfpush"
)

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	JetStream jetstream.JetStream
	// Packages is cs_packages: the transaction record Id and uploaded files
	// are read from it, off the delivery path.
	Packages  jetstream.KeyValue
	Retention time.Duration // of CALLBACKS (queue.retention)
	Replicas  int
	Logger    *slog.Logger
	// MaxPending bounds attempts being stored at once (default 256); beyond
	// it an attempt is dropped and logged rather than slowing delivery.
	MaxPending int
	// Timeout bounds storing one attempt (default 5s).
	Timeout time.Duration
}

// Recorder stores attempts in HISTORY. Record never blocks and never fails:
// each attempt is stored by a goroutine of its own (at most MaxPending).
type Recorder struct {
	o       RecorderOptions
	log     *slog.Logger
	sem     chan struct{}
	pending atomic.Int64
	dropped atomic.Int64
	failed  atomic.Int64
	// lastDropLog is when a drop was last logged (unix ns).
	lastDropLog atomic.Int64

	mu      sync.Mutex
	ensured bool
}

// NewRecorder returns a recorder; the stream is created on first use.
func NewRecorder(o RecorderOptions) *Recorder {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	return &Recorder{o: o, log: o.Logger.With("component", "history"), sem: make(chan struct{}, o.MaxPending)}
}

// Record stores a in the background. It is safe for concurrent use.
func (r *Recorder) Record(_ context.Context, a Attempt) {
	select {
	case r.sem <- struct{}{}:
	default:
		n := r.dropped.Add(1)
		// One line per dropped burst, not one per attempt.
		if last := r.lastDropLog.Load(); time.Since(time.Unix(0, last)) > 10*time.Second &&
			r.lastDropLog.CompareAndSwap(last, time.Now().UnixNano()) {
			r.log.Warn("delivery history busy; attempts not recorded", "tenant", a.Tenant, "seq", a.Seq, "dropped_total", n)
		}
		return
	}
	r.pending.Add(1)
	go func() {
		defer func() { <-r.sem; r.pending.Add(-1) }()
		// Not the delivery's context: an attempt settled during shutdown
		// is still worth keeping.
		ctx, cancel := context.WithTimeout(context.Background(), r.o.Timeout)
		defer cancel()
		if err := r.store(ctx, a); err != nil {
			r.failed.Add(1)
			r.log.Warn("delivery history not stored", "tenant", a.Tenant, "seq", a.Seq, "outcome", a.Outcome, "error", err)
		}
	}()
}

// Flush waits until every recorded attempt is stored (or failed), or ctx ends.
func (r *Recorder) Flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for r.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("flush delivery history: %d attempts pending: %w", r.pending.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Dropped counts attempts not recorded because MaxPending were in flight.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Failed counts attempts whose publish failed.
func (r *Recorder) Failed() int64 { return r.failed.Load() }

func (r *Recorder) ensure(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ensured {
		return nil
	}
	if err := Ensure(ctx, r.o.JetStream, r.o.Retention, r.o.Replicas); err != nil {
		return err
	}
	r.ensured = true
	return nil
}

func (r *Recorder) store(ctx context.Context, a Attempt) error {
	if err := r.ensure(ctx); err != nil {
		return err
	}
	r.enrich(ctx, &a)
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(Subject(a.Tenant, a.Event, a.EventKey))
	msg.Data = b
	// One record per settle decision, even if a publish is retried.
	id := fmt.Sprintf("%s:%d:%d:%s", a.Tenant, a.Seq, a.Attempt, a.Outcome)
	if _, err := r.o.JetStream.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(Stream)); err != nil {
		return fmt.Errorf("publish attempt of message %d: %w", a.Seq, err)
	}
	return nil
}

// enrich adds the transaction record Id and, for a delivered completion, the
// files, from the package state the worker keeps.
func (r *Recorder) enrich(ctx context.Context, a *Attempt) {
	if r.o.Packages == nil || a.PackageID == "" {
		return
	}
	st, ok, err := readState(ctx, r.o.Packages, a.Tenant, a.PackageID)
	if err != nil || !ok {
		return
	}
	if a.RecordID == "" {
		a.RecordID = st.RecordID
	}
	if a.Outcome == Delivered && a.Event == callback.PackageComplete && len(st.Documents) > 0 {
		a.Files = maps.Clone(st.Documents)
	}
}

// readState reads a package's cs_packages record.
func readState(ctx context.Context, kv jetstream.KeyValue, tenant, pkg string) (sfpush.PackageState, bool, error) {
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
