package reconcile_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/reconcile"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	"github.com/countersign/countersign/internal/sandbox/pipeline"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

func newReconciler(t *testing.T, r *pipeline.Rig, interval time.Duration) *reconcile.Reconciler {
	t.Helper()
	acme := r.Tenants["acme"]
	rc, err := reconcile.New(reconcile.Options{
		Publisher: r.Queue, JetStream: r.Queue.JetStream(), Packages: r.Queue.Packages(),
		Tenants: []reconcile.Tenant{{ID: "acme", Config: acme.Config, OneSpan: acme.Tenant.OneSpan}},
		Config:  config.Reconcile{Interval: config.Duration(interval), Lookback: config.Duration(time.Hour)},
		Metrics: r.Metrics, PageSize: 2, Grace: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func TestReconcileRepairsAPackageWhoseCallbacksWereNeverSent(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	rc := newReconciler(t, r, 0)
	r.Start()
	ctx := t.Context()
	acme.NewPackage(t, "pkg-missed")
	if err := acme.OS.Activate(ctx, "pkg-missed"); err != nil {
		t.Fatal(err)
	}
	r.Eventually(10*time.Second, "SENT", func() bool { return acme.Status("pkg-missed") == "SENT" && acme.Events("pkg-missed") == 2 })
	// The listener is "down" while the package is signed and completed.
	acme.OS.HoldCallbacks(true)
	for _, step := range []func() error{
		func() error { return acme.OS.SignDocument(ctx, "pkg-missed", "doc-1", "signer-1") },
		func() error { return acme.OS.SignDocument(ctx, "pkg-missed", "doc-2", "signer-1") },
		func() error { return acme.OS.SignerComplete(ctx, "pkg-missed", "signer-1") },
		func() error { return acme.OS.Complete(ctx, "pkg-missed") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if len(acme.OS.Held()) != 4 {
		t.Fatalf("held callbacks: %d", len(acme.OS.Held()))
	}
	// Another package OneSpan completed without any callback at all, and
	// one still in draft the listener never heard of (nothing to repair).
	now := time.Now()
	acme.OS.AddPackage(ossandbox.Package{ID: "pkg-silent", Status: "COMPLETED", Created: now.Add(-time.Minute), Completed: now,
		Updated: now, Documents: []ossandbox.Document{{ID: "doc-1", Name: "Contract", Signed: true}}})
	acme.OS.AddPackage(ossandbox.Package{ID: "pkg-draft"})

	res, err := rc.RunOnce(ctx, "acme", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range res.Events {
		got[e.PackageID] = e.Event
	}
	if res.Checked != 3 || res.Synthesized != 2 || got["pkg-missed"] != "PACKAGE_COMPLETE" || got["pkg-silent"] != "PACKAGE_COMPLETE" ||
		got["pkg-draft"] != "" {
		t.Fatalf("first run %+v", res)
	}
	r.Eventually(20*time.Second, "both completed with their files", func() bool {
		return acme.Status("pkg-missed") == "COMPLETED" && acme.Status("pkg-silent") == "COMPLETED" &&
			len(acme.SF.ContentVersions()) == 3+2
	})
	txn := acme.Transaction("pkg-missed")
	if txn["Last_Event__c"] != "PACKAGE_COMPLETE" || txn["Completed_At__c"] == nil {
		t.Errorf("transaction %v", txn)
	}
	for _, doc := range []string{"doc-1", "doc-2", ossandbox.EvidenceSummaryDocID} {
		if _, ok := acme.SF.FindContentVersion("OneSpan_Document_Key__c", pipeline.DocKey("pkg-missed", doc)); !ok {
			t.Errorf("no file %s", doc)
		}
	}
	// The synthesized event is stored as reconcile and logged in Salesforce.
	s, _ := r.Queue.JetStream().Stream(ctx, queue.CallbacksStream)
	m, err := s.GetMsg(ctx, res.Events[0].Seq)
	if err != nil || m.Header.Get(queue.HeaderSource) != queue.SourceReconcile {
		t.Errorf("stored synthesized event: %v %v", m, err)
	}
	if testutil.ToFloat64(r.Metrics.ReconciledEvents.WithLabelValues("acme")) != 2 {
		t.Errorf("countersign_reconciled_events_total = %v", testutil.ToFloat64(r.Metrics.ReconciledEvents.WithLabelValues("acme")))
	}

	// Once delivered there is nothing left to do.
	r.Eventually(10*time.Second, "queue drained", func() bool {
		res, err = rc.RunOnce(ctx, "acme", time.Hour)
		return err == nil && res.Waiting == 0
	})
	if res.Checked != 3 || res.Synthesized != 0 || res.Duplicates != 0 || len(res.Events) != 0 {
		t.Errorf("second run %+v", res)
	}
	events, files := acme.SF.Count(sfsandbox.ObjEvent), len(acme.SF.ContentVersions())

	// A file the state lost (say, a state restored from an old backup): a
	// completion is synthesized again and the worker finds the file.
	key := sfpush.PackageKey("acme", "pkg-silent")
	e, err := r.Queue.Packages().Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var st sfpush.PackageState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		t.Fatal(err)
	}
	delete(st.Documents, sfpush.DocumentKey("pkg-silent", sfpush.EvidenceSummaryKey))
	b, _ := json.Marshal(st)
	if _, err := r.Queue.Packages().Update(ctx, key, b, e.Revision()); err != nil {
		t.Fatal(err)
	}
	res, err = rc.RunOnce(ctx, "acme", time.Hour)
	if err != nil || res.Synthesized != 1 || res.Events[0].PackageID != "pkg-silent" || res.Events[0].Reason != "1 documents missing" {
		t.Fatalf("documents run %+v %v", res, err)
	}
	r.Eventually(10*time.Second, "the state lists the file again", func() bool {
		e, err := r.Queue.Packages().Get(ctx, key)
		if err != nil {
			return false
		}
		var st sfpush.PackageState
		return json.Unmarshal(e.Value(), &st) == nil && len(st.Documents) == 2
	})
	if got := len(acme.SF.ContentVersions()); got != files {
		t.Errorf("files %d -> %d: a second copy was uploaded", files, got)
	}
	if got := acme.SF.Count(sfsandbox.ObjEvent); got != events+1 {
		t.Errorf("event records %d -> %d, want one more (the synthesized completion)", events, got)
	}
}

func TestTwoReplicasReconcilingAtOnceStoreOneEvent(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	// No worker runs: the consumer does not exist yet either.
	now := time.Now()
	acme.OS.AddPackage(ossandbox.Package{ID: "pkg-twice", Status: "DECLINED", Updated: now})
	a, b := newReconciler(t, r, 0), newReconciler(t, r, 0)
	var wg sync.WaitGroup
	results := make([]reconcile.Result, 2)
	for i, rc := range []*reconcile.Reconciler{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := rc.RunOnce(t.Context(), "acme", time.Hour)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	if n := results[0].Synthesized + results[1].Synthesized; n != 1 {
		t.Errorf("synthesized %d events, want 1: %+v", n, results)
	}
	s, _ := r.Queue.JetStream().Stream(t.Context(), queue.CallbacksStream)
	info, _ := s.Info(t.Context())
	if info.State.Msgs != 1 {
		t.Errorf("CALLBACKS holds %d messages", info.State.Msgs)
	}
	// The stored event waits for the worker: a third run leaves it alone.
	res, err := a.RunOnce(t.Context(), "acme", time.Hour)
	if err != nil || res.Waiting != 1 || res.Synthesized != 0 {
		t.Errorf("run while the event waits: %+v %v", res, err)
	}
	r.Start()
	r.Eventually(10*time.Second, "DECLINED", func() bool { return acme.Status("pkg-twice") == "DECLINED" })
}

func TestRunReconcilesOnItsIntervalAndStopsWithTheContext(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	r.Start()
	acme.OS.AddPackage(ossandbox.Package{ID: "pkg-run", Status: "EXPIRED", Updated: time.Now()})
	rc := newReconciler(t, r, 50*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- rc.Run(ctx) }()
	r.Eventually(10*time.Second, "EXPIRED", func() bool { return acme.Status("pkg-run") == "EXPIRED" })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	// Off: Run waits for the context and does nothing.
	off := newReconciler(t, r, 0)
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := off.Run(ctx); err != nil || ctx.Err() == nil {
		t.Errorf("Run with interval 0 returned %v before the context ended", err)
	}
}

func TestDeadLetteredPackageIsLeftToReplay(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	acme.Config.Salesforce.Objects.Event.Name = "No_Such_Object__c"
	r.Start()
	acme.NewPackage(t, "pkg-dead")
	r.Eventually(10*time.Second, "a dead letter", func() bool {
		n, _ := sfpush.DeadLetterCount(t.Context(), r.Queue.JetStream(), "acme")
		return n == 1
	})
	acme.OS.HoldCallbacks(true)
	if err := acme.OS.Activate(t.Context(), "pkg-dead"); err != nil {
		t.Fatal(err)
	}
	res, err := newReconciler(t, r, 0).RunOnce(t.Context(), "acme", time.Hour)
	if err != nil || res.Checked != 1 || res.Waiting != 1 || res.Synthesized != 0 {
		t.Errorf("run %+v %v", res, err)
	}
}

func TestRecentlyUpdatedPackageWaitsForItsCallbacks(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	acme.OS.AddPackage(ossandbox.Package{ID: "pkg-fresh", Status: "COMPLETED", Updated: time.Now(), Completed: time.Now()})
	rc, err := reconcile.New(reconcile.Options{
		Publisher: r.Queue, JetStream: r.Queue.JetStream(), Packages: r.Queue.Packages(), Metrics: r.Metrics,
		Tenants: []reconcile.Tenant{{ID: "acme", Config: acme.Config, OneSpan: acme.Tenant.OneSpan}},
		// The default grace: a callback sent a moment ago may be in flight.
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := rc.RunOnce(t.Context(), "acme", time.Hour)
	if err != nil || res.Checked != 1 || res.Waiting != 1 || res.Synthesized != 0 {
		t.Errorf("run %+v %v", res, err)
	}
}
