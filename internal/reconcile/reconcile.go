// Package reconcile recovers what OneSpan never delivered: it asks OneSpan
// which packages changed, compares each with what the worker applied
// (cs_packages), and stores a synthesized callback for every status change
// and every missing document set, which the worker then delivers like any
// other event.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/onespan"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/sfpush"
)

// Tenant is what reconciliation needs of one tenant.
type Tenant struct {
	ID      string
	Config  *config.Tenant // documents: which files a completed package must have
	OneSpan *onespan.Client
}

// Publisher stores a callback (queue.Queue).
type Publisher interface {
	Publish(ctx context.Context, c queue.Callback) (queue.Published, error)
}

// Options configure a Reconciler.
type Options struct {
	Publisher Publisher
	JetStream jetstream.JetStream
	Packages  jetstream.KeyValue // cs_packages
	Tenants   []Tenant
	Config    config.Reconcile // interval (0 = off) and lookback
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	// PageSize of the OneSpan listing (default onespan.DefaultPageSize).
	PageSize int
	// MaxPackages bounds the packages one run compares (default 100000).
	MaxPackages int
	// Grace leaves alone packages updated this recently (default 5m;
	// negative: none): their callbacks may still be on their way from
	// OneSpan, and are not in the queue yet for the waiting check to see.
	Grace time.Duration
	Now   func() time.Time
}

// Reconciler compares OneSpan with the applied state.
type Reconciler struct {
	o       Options
	log     *slog.Logger
	tenants map[string]*Tenant
}

// New validates options.
func New(o Options) (*Reconciler, error) {
	if o.Publisher == nil || o.JetStream == nil || o.Packages == nil || o.Metrics == nil {
		return nil, errors.New("reconcile: publisher, jetstream, packages bucket and metrics are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPackages <= 0 {
		o.MaxPackages = 100_000
	}
	if o.Grace == 0 {
		o.Grace = 5 * time.Minute
	}
	r := &Reconciler{o: o, log: o.Logger.With("component", "reconcile"), tenants: map[string]*Tenant{}}
	for i := range o.Tenants {
		r.tenants[o.Tenants[i].ID] = &o.Tenants[i]
	}
	return r, nil
}

// Result says what one run found and did.
type Result struct {
	Tenant  string `json:"tenant"`
	Checked int    `json:"checked"` // packages OneSpan listed
	// Synthesized events were stored; Duplicates had been stored already
	// (an earlier run or another replica: the message id is deterministic).
	Synthesized int `json:"synthesized"`
	Duplicates  int `json:"duplicates"`
	// Waiting packages were skipped: updated within the grace period, the
	// worker has not settled their stored events yet, or they are in
	// DEADLETTER (replay them instead).
	Waiting int           `json:"waiting"`
	Events  []Synthesized `json:"events"`
}

// Synthesized is one event a run stored (or found stored).
type Synthesized struct {
	PackageID string `json:"package_id"`
	Event     string `json:"event"`
	Reason    string `json:"reason"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// Run reconciles every tenant at start and then every reconcile.interval
// until ctx ends; with an interval of 0 it only waits for ctx.
func (r *Reconciler) Run(ctx context.Context) error {
	interval := r.o.Config.Interval.D()
	if interval <= 0 {
		r.log.Info("reconciliation off (reconcile.interval is 0)")
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, id := range r.ids() {
			rctx, cancel := context.WithTimeout(ctx, max(interval, time.Minute))
			res, err := r.RunOnce(rctx, id, r.o.Config.Lookback.D())
			cancel()
			if err != nil && ctx.Err() == nil {
				r.log.Warn("reconciliation failed", "tenant", id, "error", err)
			} else if err == nil {
				r.log.Info("reconciled", "tenant", id, "checked", res.Checked, "synthesized", res.Synthesized,
					"duplicates", res.Duplicates, "waiting", res.Waiting)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *Reconciler) ids() []string {
	ids := make([]string, 0, len(r.o.Tenants))
	for _, t := range r.o.Tenants {
		ids = append(ids, t.ID)
	}
	return ids
}

// RunOnce reconciles the packages OneSpan says changed within since.
func (r *Reconciler) RunOnce(ctx context.Context, tenant string, since time.Duration) (Result, error) {
	res := Result{Tenant: tenant, Events: []Synthesized{}}
	t, ok := r.tenants[tenant]
	if !ok {
		return res, fmt.Errorf("reconcile: unknown tenant %s", tenant)
	}
	if since <= 0 {
		return res, fmt.Errorf("reconcile tenant %s: lookback must be positive", tenant)
	}
	waiting, err := r.waiting(ctx, tenant)
	if err != nil {
		return res, err
	}
	now := r.o.Now()
	lo := onespan.ListOptions{UpdatedFrom: now.Add(-since)}
	settled := now.Add(-max(r.o.Grace, 0))
	err = t.OneSpan.EachPackage(ctx, lo, r.o.PageSize, func(p *onespan.Package) error {
		// Guards in case a listing ignores the date range: old packages and
		// templates are not reconciled, and one run reads a bounded number.
		if p.Type == "TEMPLATE" || (!p.Updated.IsZero() && p.Updated.Before(lo.UpdatedFrom.Truncate(time.Second))) {
			return nil
		}
		if res.Checked >= r.o.MaxPackages {
			return fmt.Errorf("more than %d packages changed within %s; shorten reconcile.lookback", r.o.MaxPackages, since)
		}
		res.Checked++
		st, _, err := packageState(ctx, r.o.Packages, tenant, p.ID)
		if err != nil {
			return err
		}
		if waiting.holds(p.ID, st) || p.Updated.After(settled) {
			res.Waiting++
			return nil
		}
		plan, err := r.plan(ctx, t, p, st)
		if err != nil {
			return err
		}
		for _, s := range plan {
			out, err := r.store(ctx, tenant, s)
			if err != nil {
				return err
			}
			res.Events = append(res.Events, out)
			if out.Duplicate {
				res.Duplicates++
			} else {
				res.Synthesized++
				r.o.Metrics.ReconciledEvents.WithLabelValues(tenant).Inc()
				r.log.Info("synthesized missed event", "tenant", tenant, "package", p.ID, "event", out.Event,
					"reason", out.Reason, "seq", out.Seq)
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("reconcile tenant %s: %w", tenant, err)
	}
	return res, nil
}

// synthetic is an event to store.
type synthetic struct {
	pkg, event, reason, msgID string
	at                        time.Time
}

// plan decides what a package is missing.
func (r *Reconciler) plan(ctx context.Context, t *Tenant, p *onespan.Package, st sfpush.PackageState) ([]synthetic, error) {
	status := p.Status
	if p.Trashed {
		status = callback.StatusTrashed
	}
	event, ok := callback.EventForStatus(status)
	if !ok {
		return nil, nil
	}
	updated := p.Updated.UTC()
	at := updated
	if status == callback.StatusCompleted && !p.Completed.IsZero() {
		at = p.Completed.UTC()
	}
	if st.Status != status {
		if status == callback.StatusDraft {
			if st.Status == "" {
				return nil, nil // a draft nobody signed: nothing was missed yet
			}
			event = callback.PackageDeactivate
		}
		// OneSpan's times have whole seconds: a state set later within
		// that second is still older than this status, so the synthesized
		// event is dated just after what was applied.
		if !st.StatusAt.IsZero() && updated.Add(time.Second).Before(st.StatusAt) {
			return nil, nil // the applied status is newer than OneSpan's listing
		}
		for _, seen := range []time.Time{st.StatusAt, st.LastEventAt} {
			if !seen.IsZero() && !at.After(seen) {
				at = seen.Add(time.Millisecond)
			}
		}
		reason := fmt.Sprintf("onespan status %s, delivered %s", status, orNone(st.Status))
		return []synthetic{{pkg: p.ID, event: event, reason: reason, at: at,
			msgID: fmt.Sprintf("reconcile:%s:%s:%s:%s", t.ID, p.ID, status, updated.Format(time.RFC3339Nano))}}, nil
	}
	if status != callback.StatusCompleted {
		return nil, nil
	}
	missing, err := missingDocuments(ctx, t, p, st)
	if err != nil || missing == 0 {
		return nil, err
	}
	return []synthetic{{pkg: p.ID, event: callback.PackageComplete, at: at,
		reason: fmt.Sprintf("%d documents missing", missing),
		msgID:  fmt.Sprintf("reconcile:%s:%s:documents:%s", t.ID, p.ID, updated.Format(time.RFC3339Nano))}}, nil
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// missingDocuments counts the files a completed package should have in
// Salesforce that its state does not list.
func missingDocuments(ctx context.Context, t *Tenant, p *onespan.Package, st sfpush.PackageState) (int, error) {
	missing := 0
	if t.Config.Documents.UploadEnabled() {
		if len(p.Documents) == 0 { // a listing may leave documents out
			full, err := t.OneSpan.GetPackage(ctx, p.ID)
			if err != nil {
				return 0, err
			}
			p = full
		}
		for _, d := range p.SignedDocuments() {
			if _, ok := st.Documents[sfpush.DocumentKey(p.ID, d.ID)]; !ok {
				missing++
			}
		}
	}
	if t.Config.Documents.EvidenceEnabled() {
		if _, ok := st.Documents[sfpush.DocumentKey(p.ID, sfpush.EvidenceSummaryKey)]; !ok {
			missing++
		}
	}
	return missing, nil
}

// store publishes a synthesized callback in OneSpan's wire format.
func (r *Reconciler) store(ctx context.Context, tenant string, s synthetic) (Synthesized, error) {
	out := Synthesized{PackageID: s.pkg, Event: s.event, Reason: s.reason}
	body, err := json.Marshal(onespan.NewCallbackEvent(s.event, "", s.pkg, "countersign reconcile: "+s.reason, "", s.at))
	if err != nil {
		return out, err
	}
	ev, err := callback.Parse(body)
	if err != nil {
		return out, fmt.Errorf("synthesized event for package %s: %w", s.pkg, err)
	}
	pub, err := r.o.Publisher.Publish(ctx, queue.Callback{Tenant: tenant, Event: ev, Body: body, MsgID: s.msgID,
		Source: queue.SourceReconcile, ReceivedAt: r.o.Now()})
	if err != nil {
		return out, err
	}
	out.Seq, out.Duplicate = pub.Sequence, pub.Duplicate
	return out, nil
}

// waiting is what the worker has not finished with: stored events past
// the tenant consumer's ack floor, and dead letters. Synthesizing for them
// would only add a second copy of what is on its way (or failed for a reason
// reconciliation cannot fix: replay it).
type waiting struct {
	tail map[string][]uint64 // package -> sequences past the ack floor
	dead map[string]bool
}

// holds reports whether a package must be left alone. A message past the
// floor whose sequence the package state lists was applied already (the
// floor can sit behind one message on a long retry).
func (w waiting) holds(pkg string, st sfpush.PackageState) bool {
	if w.dead[pkg] {
		return true
	}
	for _, seq := range w.tail[pkg] {
		if !slices.Contains(st.Sequences, seq) {
			return true
		}
	}
	return false
}

func (r *Reconciler) waiting(ctx context.Context, tenant string) (waiting, error) {
	w := waiting{tail: map[string][]uint64{}, dead: map[string]bool{}}
	tail := func(m jetstream.Msg) (bool, error) {
		if md, err := m.Metadata(); err == nil {
			if pkg := m.Headers().Get(queue.HeaderPackage); pkg != "" {
				w.tail[pkg] = append(w.tail[pkg], md.Sequence.Stream)
			}
		}
		return true, nil
	}
	var start uint64 = 1
	cons, err := r.o.JetStream.Consumer(ctx, queue.CallbacksStream, sfpush.ConsumerName(tenant))
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		// No worker ever ran: everything stored is still waiting.
	case err != nil:
		return w, fmt.Errorf("consumer of tenant %s: %w", tenant, err)
	default:
		info, err := cons.Info(ctx)
		if err != nil {
			return w, fmt.Errorf("consumer of tenant %s: %w", tenant, err)
		}
		start = info.AckFloor.Stream + 1
		if info.NumPending+uint64(info.NumAckPending) == 0 {
			start = 0
		}
	}
	if start > 0 {
		if _, err := history.Scan(ctx, r.o.JetStream, queue.CallbacksStream, history.ScanOptions{
			Subjects: []string{"callbacks." + tenant + ".>"}, StartSeq: start, HeadersOnly: true,
		}, tail); err != nil {
			return w, err
		}
	}
	if _, err := history.Scan(ctx, r.o.JetStream, queue.DeadLetterStream, history.ScanOptions{
		Subjects: []string{"deadletter." + tenant + ".>"}, HeadersOnly: true,
	}, func(m jetstream.Msg) (bool, error) {
		if pkg := m.Headers().Get(queue.HeaderPackage); pkg != "" {
			w.dead[pkg] = true
		}
		return true, nil
	}); err != nil {
		return w, err
	}
	return w, nil
}

func packageState(ctx context.Context, kv jetstream.KeyValue, tenant, pkg string) (sfpush.PackageState, bool, error) {
	e, err := kv.Get(ctx, sfpush.PackageKey(tenant, pkg))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return sfpush.PackageState{PackageID: pkg}, false, nil
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
