package sfpush

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/fault"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/salesforce"
	"github.com/countersign/countersign/internal/tracing"
)

// item is one message of a batch and what became of it.
type item struct {
	msg        jetstream.Msg
	seq        uint64
	deliveries uint64
	ev         *callback.Event
	key        string // the event key: the Salesforce external id of its event record
	receivedAt time.Time
	// status is set for PACKAGE_RESTORE once re-read from OneSpan.
	status string
	err    error
}

func (it *item) fail(err error) {
	if it.err == nil {
		it.err = err
	}
}

// process delivers one batch and settles every message in it.
func (tw *tenantWorker) process(ctx context.Context, msgs []jetstream.Msg) {
	items := make([]*item, 0, len(msgs))
	for _, m := range msgs {
		items = append(items, tw.parse(m))
	}
	// The batch continues the first callback's trace (a lone callback is one
	// trace end to end) and links every other one.
	var links []trace.Link
	parent := ctx
	for i, it := range items {
		mctx := tracing.Extract(ctx, it.msg.Headers())
		if i == 0 {
			parent = mctx
		} else if sc := trace.SpanContextFromContext(mctx); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	bctx, span := tracing.Tracer().Start(parent, "deliver batch", trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("tenant", tw.t.ID), attribute.Int("messages", len(items))))
	defer span.End()
	tw.reread(bctx, items)
	tw.applyTransactions(bctx, items)
	tw.applyEvents(bctx, items)
	tw.applyDocuments(bctx, items)
	for _, it := range items {
		tw.settle(bctx, it)
		if it.err != nil {
			span.SetStatus(codes.Error, "some messages failed")
		}
	}
	if limit := tw.t.Salesforce.LastLimit(); limit.Known() && limit.Ratio() >= tw.w.o.Worker.MaxAPIUsage {
		tw.throttle(ctx, tw.w.o.Now().Add(tw.w.o.UsagePause),
			fmt.Sprintf("salesforce api usage %d/%d", limit.Used, limit.Max))
	}
}

func (tw *tenantWorker) parse(m jetstream.Msg) *item {
	it := &item{msg: m}
	if md, err := m.Metadata(); err == nil {
		it.seq, it.deliveries = md.Sequence.Stream, md.NumDelivered
	}
	if t, err := time.Parse(time.RFC3339Nano, m.Headers().Get(queue.HeaderReceivedAt)); err == nil {
		it.receivedAt = t
	}
	ev, err := callback.Parse(m.Data())
	if err != nil {
		// Ingest validated it, so this is a stored body we cannot read:
		// retrying changes nothing.
		it.fail(fault.New(fault.Permanent, fmt.Sprintf("parse message %d", it.seq), err))
		return it
	}
	it.ev, it.key = ev, ev.Key(tw.t.ID)
	return it
}

// live are the items still on their way.
func live(items []*item) []*item {
	var out []*item
	for _, it := range items {
		if it.err == nil {
			out = append(out, it)
		}
	}
	return out
}

// reread asks OneSpan for the status of restored packages.
func (tw *tenantWorker) reread(ctx context.Context, items []*item) {
	for _, it := range live(items) {
		if eff, _ := callback.StatusFor(it.ev.Name); eff != callback.Reread {
			continue
		}
		p, err := tw.t.OneSpan.GetPackage(ctx, it.ev.PackageID)
		if err != nil {
			it.fail(fmt.Errorf("re-read package %s from onespan: %w", it.ev.PackageID, err))
			continue
		}
		it.status = p.Status
	}
}

// merge applies the items' events to st in time order, following the
// monotonic rule: a status from an event older than the one that set the
// current status is not applied. Events of the same millisecond are ordered
// by the stage of the package's life they belong to, so the outcome does not
// depend on the order they arrive in. It reports whether Salesforce must
// change.
func merge(st *PackageState, items []*item) (sfChanged bool) {
	sorted := slices.Clone(items)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].ev.Created.Before(sorted[j].ev.Created) })
	for _, it := range sorted {
		ev := it.ev
		if later(ev.Created, callback.EventRank(ev.Name), st.LastEventAt, callback.EventRank(st.LastEvent), st.LastEvent == "") {
			if st.LastEvent != ev.Name || !st.LastEventAt.Equal(ev.Created) {
				st.LastEvent, st.LastEventAt = ev.Name, ev.Created
				sfChanged = true
			}
		}
		status := it.status
		if eff, s := callback.StatusFor(ev.Name); eff == callback.SetStatus {
			status = s
		}
		if status == "" || !later(ev.Created, callback.StatusRank(status), st.StatusAt, callback.StatusRank(st.Status), st.Status == "") {
			continue
		}
		if st.Status != status || !st.StatusAt.Equal(ev.Created) {
			st.Status, st.StatusAt = status, ev.Created
			sfChanged = true
		}
		if status == callback.StatusCompleted && st.CompletedAt.IsZero() {
			st.CompletedAt = ev.Created
			sfChanged = true
		}
	}
	return sfChanged || st.RecordID == ""
}

// later reports whether an event at t of stage rank may replace what was set
// at curT with curRank: it is not older, and at the same time not of an
// earlier stage.
func later(t time.Time, rank int, curT time.Time, curRank int, none bool) bool {
	switch {
	case none || t.After(curT):
		return true
	case t.Equal(curT):
		return rank >= curRank
	}
	return false
}

// applyTransactions upserts the batch's transaction records in collection
// calls. Each package's record is written under its lease in cs_packages, so
// writes of one package never interleave across workers: a stale write cannot
// land after a newer one. The new state is recorded, and the lease released,
// only after Salesforce committed; a write whose outcome is unknown leaves
// the state Dirty, and the next writer rewrites the record from it.
func (tw *tenantWorker) applyTransactions(ctx context.Context, items []*item) {
	byPkg := map[string][]*item{}
	for _, it := range live(items) {
		byPkg[it.ev.PackageID] = append(byPkg[it.ev.PackageID], it)
	}
	if len(byPkg) == 0 {
		return
	}
	holder := tw.w.replica + "/" + nuid.Next()
	ttl := tw.w.o.LeaseTTL
	type claim struct {
		st    PackageState // leased state with the batch merged in
		write bool
	}
	claims := map[string]*claim{}
	for pkg, l := range tw.store.leaseMany(ctx, slices.Sorted(maps.Keys(byPkg)), holder, ttl, tw.w.o.Now) {
		if l.err != nil {
			failAll(byPkg[pkg], fault.New(fault.Retryable, "lease package "+pkg, l.err))
			continue
		}
		st := l.st
		changed := merge(&st, byPkg[pkg])
		for _, it := range byPkg[pkg] {
			st.addSequences(it.seq)
		}
		claims[pkg] = &claim{st: st, write: changed || l.forced}
	}

	// Bounded so that a write cannot reach Salesforce after the lease ends.
	wctx, cancel := context.WithTimeout(ctx, ttl/2)
	defer cancel()
	var toWrite []string
	for _, pkg := range slices.Sorted(maps.Keys(claims)) {
		if claims[pkg].write {
			toWrite = append(toWrite, pkg)
		}
	}
	// dirty: the outcome is unknown (no answer); committed: Salesforce has it.
	dirty, committed := map[string]bool{}, map[string]bool{}
	for chunk := range slices.Chunk(toWrite, salesforce.MaxCollectionRecords) {
		records := make([]map[string]any, len(chunk))
		for i, pkg := range chunk {
			records[i] = tw.transactionRecord(&claims[pkg].st)
		}
		o := tw.t.Config.Salesforce.Objects.Transaction
		results, err := tw.t.Salesforce.UpsertCollection(wctx, o.Name, o.PackageID, records, false)
		for i, pkg := range chunk {
			switch {
			case err != nil:
				failAll(byPkg[pkg], fmt.Errorf("upsert transaction %s: %w", pkg, err))
				dirty[pkg] = true
			case !results[i].Success:
				failAll(byPkg[pkg], fmt.Errorf("upsert transaction %s: %w", pkg, results[i].Err))
			default:
				committed[pkg] = true
				if results[i].ID != "" {
					claims[pkg].st.RecordID = results[i].ID
				}
			}
		}
	}

	// Release even when shutting down: a lease left behind blocks the
	// package until it expires.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer fcancel()
	done := tw.store.finishMany(fctx, slices.Sorted(maps.Keys(claims)), holder, func(pkg string, st *PackageState) {
		c := claims[pkg]
		if committed[pkg] || !c.write {
			st.RecordID = c.st.RecordID
			st.Status, st.StatusAt = c.st.Status, c.st.StatusAt
			st.LastEvent, st.LastEventAt = c.st.LastEvent, c.st.LastEventAt
			st.CompletedAt = c.st.CompletedAt
			st.addSequences(c.st.Sequences...)
			st.Dirty = false
			st.UpdatedAt = tw.w.o.Now()
			return
		}
		st.Dirty = st.Dirty || dirty[pkg]
	})
	for pkg, f := range done {
		switch {
		case f.err != nil:
			// The lease stays until it expires; the next writer rewrites.
			failAll(byPkg[pkg], fault.New(fault.Retryable, "record package state", f.err))
		case f.lost:
			failAll(byPkg[pkg], fault.Errorf(fault.Retryable, "package "+pkg, "lease expired during the write"))
		}
	}
}

func (tw *tenantWorker) transactionRecord(st *PackageState) map[string]any {
	o := tw.t.Config.Salesforce.Objects.Transaction
	r := map[string]any{o.PackageID: st.PackageID}
	if st.Status != "" {
		r[o.Status] = st.Status
	}
	if st.LastEvent != "" {
		r[o.LastEvent] = st.LastEvent
		r[o.LastEventAt] = sfTime(st.LastEventAt)
	}
	if !st.CompletedAt.IsZero() {
		r[o.CompletedAt] = sfTime(st.CompletedAt)
	}
	return r
}

// applyEvents upserts one event record per event key, so a redelivery or a
// replay updates the same record. A key twice in one collection call would
// fail both records, so copies of one event in a batch share one record.
func (tw *tenantWorker) applyEvents(ctx context.Context, items []*item) {
	o := tw.t.Config.Salesforce.Objects.Event
	txn := tw.t.Config.Salesforce.Objects.Transaction
	byKey := map[string][]*item{}
	var keys []string
	for _, it := range live(items) {
		if _, seen := byKey[it.key]; !seen {
			keys = append(keys, it.key)
		}
		byKey[it.key] = append(byKey[it.key], it)
	}
	for chunk := range slices.Chunk(keys, salesforce.MaxCollectionRecords) {
		records := make([]map[string]any, len(chunk))
		for i, key := range chunk {
			ev := byKey[key][0].ev
			records[i] = map[string]any{
				o.EventKey:    key,
				o.Transaction: map[string]any{txn.PackageID: ev.PackageID},
				o.EventName:   truncate(ev.Name, 255),
				o.OccurredAt:  sfTime(ev.Created),
				o.SessionUser: truncate(ev.SessionUser, 255),
				o.DocumentID:  nullable(truncate(ev.Doc(), 255)),
				o.Message:     nullable(truncate(ev.Msg(), 255)),
			}
		}
		results, err := tw.t.Salesforce.UpsertCollection(ctx, o.Name, o.EventKey, records, false)
		for i, key := range chunk {
			switch {
			case err != nil:
				failAll(byKey[key], fmt.Errorf("upsert event %s: %w", key, err))
			case !results[i].Success:
				failAll(byKey[key], fmt.Errorf("upsert event %s: %w", key, results[i].Err))
			}
		}
	}
}

// applyDocuments copies the signed documents of completed packages. It runs
// after the status step, so a OneSpan outage never holds a status back: the
// message is retried for its documents alone (the status writes it repeats
// are idempotent and usually skipped).
func (tw *tenantWorker) applyDocuments(ctx context.Context, items []*item) {
	if !tw.t.Config.Documents.UploadEnabled() && !tw.t.Config.Documents.EvidenceEnabled() {
		return
	}
	byPkg := map[string][]*item{}
	for _, it := range live(items) {
		if it.ev.Name == callback.PackageComplete {
			byPkg[it.ev.PackageID] = append(byPkg[it.ev.PackageID], it)
		}
	}
	var wg sync.WaitGroup
	for pkg, its := range byPkg {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tw.docSem <- struct{}{}
			defer func() { <-tw.docSem }()
			stop := keepInProgress(ctx, its, tw.w.o.Worker.AckWait.D())
			err := tw.uploadDocuments(ctx, pkg)
			stop()
			if err != nil {
				failAll(its, err)
			}
		}()
	}
	wg.Wait()
}

// keepInProgress tells JetStream the messages are still being worked on, so a
// long upload does not get them redelivered to another worker.
func keepInProgress(ctx context.Context, its []*item, ackWait time.Duration) (stop func()) {
	every := max(ackWait/3, 100*time.Millisecond)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				for _, it := range its {
					_ = it.msg.InProgress()
				}
			}
		}
	}()
	return func() { close(done) }
}

func failAll(items []*item, err error) {
	for _, it := range items {
		it.fail(err)
	}
}

func sfTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
