package sfpush_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/queue"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	"github.com/countersign/countersign/internal/sandbox/pipeline"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

func TestCompletedPackageBecomesTransactionEventsAndFiles(t *testing.T) {
	r := newRig(t, pipeline.Options{StoreContent: 1 << 20})
	acme := r.Tenants["acme"]
	r.Start()
	acme.CompletePackage(t, "LWsUTvGgE4WpOvaQPT16idnxNj8=")
	pkg := "LWsUTvGgE4WpOvaQPT16idnxNj8="

	r.Eventually(15*time.Second, "completed transaction with 3 files", func() bool {
		return acme.Status(pkg) == "COMPLETED" && len(acme.SF.ContentVersions()) == 3 && acme.Events(pkg) == 6
	})
	txn := acme.Transaction(pkg)
	if txn["Last_Event__c"] != "PACKAGE_COMPLETE" || txn["Completed_At__c"] == nil || txn["Last_Event_At__c"] == nil {
		t.Errorf("transaction fields: %v", txn)
	}
	// Every event record carries its fields and points at the transaction.
	names := map[string]int{}
	for _, ev := range acme.SF.FindRecords(sfsandbox.ObjEvent, "Transaction__c", txn["Id"]) {
		names[ev["Event_Name__c"].(string)]++
		if len(ev["Event_Key__c"].(string)) != 64 || ev["Occurred_At__c"] == nil {
			t.Errorf("event record %v", ev)
		}
		if ev["Event_Name__c"] == "DOCUMENT_SIGNED" && ev["Document_Id__c"] == nil {
			t.Errorf("DOCUMENT_SIGNED without document id: %v", ev)
		}
	}
	want := map[string]int{"PACKAGE_CREATE": 1, "PACKAGE_ACTIVATE": 1, "DOCUMENT_SIGNED": 2, "SIGNER_COMPLETE": 1, "PACKAGE_COMPLETE": 1}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("event records %v, want %v", names, want)
	}
	// The signed PDFs (not the consent document) and the evidence summary,
	// byte for byte, linked to the transaction, keyed for idempotency.
	p, _ := acme.OS.Package(pkg)
	sizes := map[string]int64{ossandbox.EvidenceSummaryDocID: p.EvidenceSize}
	for _, d := range p.Documents {
		sizes[d.ID] = d.Size
	}
	for _, doc := range []string{"doc-1", "doc-2", ossandbox.EvidenceSummaryDocID} {
		cv, ok := acme.SF.FindContentVersion("OneSpan_Document_Key__c", pipeline.DocKey(pkg, doc))
		if !ok {
			t.Errorf("no file for %s", doc)
			continue
		}
		if cv.FirstPublishLocationID != txn["Id"] {
			t.Errorf("file %s linked to %s, want %s", doc, cv.FirstPublishLocationID, txn["Id"])
		}
		if want := ossandbox.ExpectedSHA256(pkg, doc, sizes[doc]); cv.SHA256 != want {
			t.Errorf("file %s sha256 %s, want %s (size %d)", doc, cv.SHA256, want, cv.Size)
		}
	}
	if _, ok := acme.SF.FindContentVersion("OneSpan_Document_Key__c", pipeline.DocKey(pkg, "default-consent")); ok {
		t.Error("the consent document was uploaded")
	}
	r.Eventually(5*time.Second, "metrics", func() bool {
		return testutil.ToFloat64(r.Metrics.EventsProcessed.WithLabelValues("acme", "PACKAGE_COMPLETE", "delivered")) == 1 &&
			testutil.ToFloat64(r.Metrics.DocumentsUploaded.WithLabelValues("acme")) == 3
	})
	if testutil.CollectAndCount(r.Metrics.EventDelivery) == 0 || testutil.ToFloat64(r.Metrics.SalesforceRequests.WithLabelValues("acme", "collection_upsert", "200")) == 0 {
		t.Error("delivery latency or salesforce request metrics missing")
	}
}

func TestLateEventsNeverMoveStatusBackwards(t *testing.T) {
	r := newRig(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	send := func(name string, at time.Time) {
		t.Helper()
		ev := ossandbox.NewEvent(name, "u1", "pkg-late", "", "", at)
		if err := ossandbox.SendCallback(t.Context(), r.Ingest+"/v1/callbacks/acme", acme.Key, ev); err != nil {
			t.Fatal(err)
		}
	}
	r.Start()
	send("PACKAGE_COMPLETE", base.Add(3*time.Minute))
	r.Eventually(10*time.Second, "COMPLETED", func() bool { return acme.Status("pkg-late") == "COMPLETED" })
	// Older events arrive afterwards, in two separate batches.
	send("PACKAGE_ACTIVATE", base.Add(time.Minute))
	r.Eventually(10*time.Second, "2 events", func() bool { return acme.Events("pkg-late") == 2 })
	send("PACKAGE_CREATE", base)
	send("DOCUMENT_VIEWED", base.Add(2*time.Minute))
	r.Eventually(10*time.Second, "4 events", func() bool { return acme.Events("pkg-late") == 4 })
	txn := acme.Transaction("pkg-late")
	if txn["Status__c"] != "COMPLETED" || txn["Last_Event__c"] != "PACKAGE_COMPLETE" {
		t.Errorf("late events moved the transaction back: %v", txn)
	}
	// A newer status still applies.
	send("PACKAGE_ARCHIVE", base.Add(time.Hour))
	r.Eventually(10*time.Second, "ARCHIVED", func() bool { return acme.Status("pkg-late") == "ARCHIVED" })
}

func TestResentEventAfterDuplicateWindowMakesNoSecondRecordOrFile(t *testing.T) {
	r := newRig(t, pipeline.Options{DuplicateWindow: 200 * time.Millisecond})
	acme := r.Tenants["acme"]
	r.Start()
	acme.CompletePackage(t, "pkg-dup")
	r.Eventually(15*time.Second, "files", func() bool { return len(acme.SF.ContentVersions()) == 3 })
	before := acme.SF.Count(sfsandbox.ObjEvent)
	time.Sleep(300 * time.Millisecond) // let the duplicate window pass: that is the behaviour under test
	for _, ev := range acme.OS.Sent() {
		if err := ossandbox.SendCallback(t.Context(), r.Ingest+"/v1/callbacks/acme", acme.Key, ev); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := r.Queue.JetStream().Stream(t.Context(), queue.CallbacksStream)
	info, _ := s.Info(t.Context())
	if info.State.Msgs != 12 {
		t.Fatalf("stream holds %d messages; the resend was deduplicated by JetStream, so the test proves nothing", info.State.Msgs)
	}
	r.Eventually(15*time.Second, "resent events processed", func() bool {
		return testutil.ToFloat64(r.Metrics.EventsProcessed.WithLabelValues("acme", "PACKAGE_COMPLETE", "delivered")) == 2
	})
	if got := acme.SF.Count(sfsandbox.ObjEvent); got != before {
		t.Errorf("event records %d -> %d", before, got)
	}
	if got := len(acme.SF.ContentVersions()); got != 3 {
		t.Errorf("files = %d, want 3", got)
	}
	if got := acme.SF.Count(sfsandbox.ObjTransaction); got != 1 {
		t.Errorf("transactions = %d", got)
	}
}

func TestWorkerStoppedMidBatchLeavesNothingDoubled(t *testing.T) {
	r := newRig(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	// Slow Salesforce so the stop lands while a batch is in flight.
	acme.SF.SetFaults(sfsandbox.Faults{Latency: 300 * time.Millisecond})
	for i := range 5 {
		acme.CompletePackage(t, fmt.Sprintf("pkg-stop-%d", i))
	}
	// A worker that took a batch and died: the messages were delivered and
	// never acked nor naked. They must come back after ack_wait.
	cons, err := sfpush.EnsureConsumer(t.Context(), r.Queue.JetStream(), "acme", r.Config.Worker)
	if err != nil {
		t.Fatal(err)
	}
	taken, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	abandoned := 0
	for range taken.Messages() {
		abandoned++
	}
	if abandoned == 0 {
		t.Fatal("nothing to abandon")
	}
	r.Start()
	r.Eventually(10*time.Second, "a first write", func() bool { return acme.SF.Count(sfsandbox.ObjTransaction) > 0 })
	r.Stop() // cancels mid-flight: unacked messages come back after ack_wait
	acme.SF.SetFaults(sfsandbox.Faults{})
	r.Start()
	r.Eventually(30*time.Second, "every event and file", func() bool {
		return len(acme.SF.ContentVersions()) == 15 && acme.SF.Count(sfsandbox.ObjEvent) == 30
	})
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 5; i++ {
		pkg := fmt.Sprintf("pkg-stop-%d", i)
		for acme.Status(pkg) != "COMPLETED" && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := acme.Status(pkg); got != "COMPLETED" {
			st := sfpush.PackageState{PackageID: pkg}
			if e, err := r.Queue.Packages().Get(t.Context(), sfpush.PackageKey("acme", pkg)); err == nil {
				_ = json.Unmarshal(e.Value(), &st)
			}
			t.Errorf("%s: salesforce status %q, state %+v", pkg, got, st)
		}
	}
	if got := acme.SF.Count(sfsandbox.ObjTransaction); got != 5 {
		t.Errorf("transactions = %d, want 5", got)
	}
}

func TestEveryEventDeliveredOnceDespiteFailingSalesforce(t *testing.T) {
	r := newRig(t, pipeline.Options{Salesforce: func(o *sfsandbox.Options) { o.Seed = 7 }})
	acme := r.Tenants["acme"]
	acme.SF.SetFaults(sfsandbox.Faults{
		Rate: 0.3,
		Kinds: []sfsandbox.FaultKind{sfsandbox.FaultUnavailable, sfsandbox.FaultLockRow, sfsandbox.FaultLockSomeRecords,
			sfsandbox.FaultTimeout, sfsandbox.FaultInvalidSession, sfsandbox.FaultServerError,
			sfsandbox.FaultCommitThenUnavailable, sfsandbox.FaultCommitThenReset},
		Hold: 500 * time.Millisecond,
	})
	const n = 12
	for i := range n {
		acme.CompletePackage(t, fmt.Sprintf("pkg-chaos-%d", i))
	}
	r.Start()
	r.Eventually(60*time.Second, "all delivered", func() bool {
		return testutil.ToFloat64(r.Metrics.EventsProcessed.WithLabelValues("acme", "PACKAGE_COMPLETE", "delivered")) == n &&
			acme.SF.Count(sfsandbox.ObjEvent) == 6*n && len(acme.SF.ContentVersions()) == 3*n
	})
	if got := acme.SF.Count(sfsandbox.ObjTransaction); got != n {
		t.Errorf("transactions = %d, want %d", got, n)
	}
	for i := range n {
		if s := acme.Status(fmt.Sprintf("pkg-chaos-%d", i)); s != "COMPLETED" {
			t.Errorf("pkg-chaos-%d is %s", i, s)
		}
	}
	keys := map[string]bool{}
	for _, cv := range acme.SF.ContentVersions() {
		k := cv.Fields["OneSpan_Document_Key__c"].(string)
		if keys[k] {
			t.Errorf("file %s uploaded twice", k)
		}
		keys[k] = true
	}
	if dl, _ := sfpush.DeadLetterCount(t.Context(), r.Queue.JetStream(), "acme"); dl != 0 {
		t.Errorf("%d dead letters with only transient faults", dl)
	}
	if acme.SF.FaultsInjected()[sfsandbox.FaultUnavailable] == 0 {
		t.Error("no faults were injected")
	}
}

func TestPermanentErrorLandsInDeadLetterWithReason(t *testing.T) {
	r := newRig(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	// The org lacks the event object (its metadata was never deployed):
	// a permanent error.
	acme.Config.Salesforce.Objects.Event.Name = "No_Such_Object__c"
	r.Start()
	acme.NewPackage(t, "pkg-perm")
	if err := acme.OS.Activate(t.Context(), "pkg-perm"); err != nil {
		t.Fatal(err)
	}
	r.Eventually(10*time.Second, "dead letters", func() bool {
		n, _ := sfpush.DeadLetterCount(t.Context(), r.Queue.JetStream(), "acme")
		return n == 2
	})
	s, _ := r.Queue.JetStream().Stream(t.Context(), queue.DeadLetterStream)
	m, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Subject, "deadletter.acme.PACKAGE_") || m.Header.Get(queue.HeaderErrorClass) != "permanent" ||
		!strings.Contains(m.Header.Get(queue.HeaderError), "No_Such_Object__c") || m.Header.Get(queue.HeaderOriginalSeq) == "" ||
		m.Header.Get(queue.HeaderDeliveries) != "1" || m.Header.Get(queue.HeaderPackage) != "pkg-perm" || !strings.Contains(string(m.Data), `"packageId":"pkg-perm"`) {
		t.Errorf("dead letter %s %v %s", m.Subject, m.Header, m.Data)
	}
	if got := testutil.ToFloat64(r.Metrics.EventsProcessed.WithLabelValues("acme", "PACKAGE_ACTIVATE", "dead_lettered")); got != 1 {
		t.Errorf("dead_lettered metric = %v", got)
	}
	// The transaction itself was written; only the event log failed.
	if acme.Status("pkg-perm") != "SENT" {
		t.Errorf("status = %q", acme.Status("pkg-perm"))
	}
	r.Eventually(5*time.Second, "dead letter gauge", func() bool {
		return testutil.ToFloat64(r.Metrics.DeadLetters.WithLabelValues("acme")) == 2
	})
}

func TestRevokedTenantPausesAloneAndDrainsAfterReconnect(t *testing.T) {
	r := newRig(t, pipeline.Options{Tenants: []string{"acme", "beta"}})
	acme, beta := r.Tenants["acme"], r.Tenants["beta"]
	acme.SF.SetAccessTokenTTL(time.Millisecond) // force a refresh on the next call
	acme.SF.RevokeAll()
	r.Start()
	acme.CompletePackage(t, "pkg-a")
	beta.CompletePackage(t, "pkg-b")
	r.Eventually(15*time.Second, "beta delivered", func() bool {
		return beta.Status("pkg-b") == "COMPLETED" && len(beta.SF.ContentVersions()) == 3
	})
	r.Eventually(10*time.Second, "acme needs reconnect", func() bool {
		st, _, _ := auth.NewTenants(r.Queue.Tenants()).Get(t.Context(), "acme")
		return st.State == auth.StateNeedsReconnect
	})
	if testutil.ToFloat64(r.Metrics.TenantConnected.WithLabelValues("acme")) != 0 {
		t.Error("acme connected metric is not 0")
	}
	if acme.SF.Count(sfsandbox.ObjTransaction) != 0 {
		t.Error("acme wrote with a revoked grant")
	}
	// Events wait in the queue, not in a dead letter.
	if dl, _ := sfpush.DeadLetterCount(t.Context(), r.Queue.JetStream(), "acme"); dl != 0 {
		t.Fatalf("%d acme events dead-lettered while waiting for a reconnect", dl)
	}
	cons, _ := r.Queue.JetStream().Consumer(t.Context(), queue.CallbacksStream, sfpush.ConsumerName("acme"))
	info, _ := cons.Info(t.Context())
	if info.NumPending+uint64(info.NumAckPending) == 0 {
		t.Error("acme's events are not pending")
	}
	// Reconnect: a new grant is stored; the worker resumes by itself.
	acme.SF.SetAccessTokenTTL(time.Hour)
	_, refresh := acme.SF.IssueTokens("api refresh_token")
	if err := acme.Source.Import(t.Context(), refresh, acme.SF.URL()); err != nil {
		t.Fatal(err)
	}
	r.Eventually(20*time.Second, "acme drained", func() bool {
		return acme.Status("pkg-a") == "COMPLETED" && len(acme.SF.ContentVersions()) == 3 && acme.Events("pkg-a") == 6
	})
}

func TestBurstIsBatchedIntoCollectionCalls(t *testing.T) {
	r := newRig(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	// 600 events for 30 packages, stored before the worker starts.
	ctx := t.Context()
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i := range 600 {
		ev := ossandbox.NewEvent("DOCUMENT_VIEWED", fmt.Sprintf("u%d", i), fmt.Sprintf("pkg-%d", i%30), "", "doc-1", base.Add(time.Duration(i)*time.Second))
		if err := ossandbox.SendCallback(ctx, r.Ingest+"/v1/callbacks/acme", acme.Key, ev); err != nil {
			t.Fatal(err)
		}
	}
	acme.SF.ResetCalls()
	r.Start()
	r.Eventually(20*time.Second, "600 event records", func() bool { return acme.SF.Count(sfsandbox.ObjEvent) == 600 })
	calls := acme.SF.CallCounts()
	total := 0
	for _, n := range calls {
		total += n
	}
	// 3 batches of 200: one transaction call and one event call each.
	if calls["upsert"] != 0 || calls["collection_upsert"] > 8 || total > 10 {
		t.Errorf("calls %v for 600 events: not batched", calls)
	}
	t.Logf("600 events -> %d Salesforce calls (%.4f per event): %v", total, float64(total)/600, calls)
}

func TestNeverConnectedTenantWaitsForItsFirstConnect(t *testing.T) {
	r := newRig(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	// Forget the grant the rig imported: the tenant was never connected.
	if err := r.Queue.Tokens().Purge(t.Context(), "acme"); err != nil {
		t.Fatal(err)
	}
	if err := r.Queue.Tenants().Purge(t.Context(), "acme"); err != nil {
		t.Fatal(err)
	}
	acme.Source = newSource(t, r, "acme")
	tenant, err := sfpush.NewTenant("acme", acme.Config, acme.Source, r.Metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	acme.Tenant = tenant
	r.Start()
	acme.NewPackage(t, "pkg-wait")
	r.Eventually(10*time.Second, "a paused tenant", func() bool {
		return strings.Contains(r.Logs.String(), "tenant paused")
	})
	cons, _ := r.Queue.JetStream().Consumer(t.Context(), queue.CallbacksStream, sfpush.ConsumerName("acme"))
	before, _ := cons.Info(t.Context())
	time.Sleep(500 * time.Millisecond) // a paused tenant must not spin on its messages meanwhile
	after, _ := cons.Info(t.Context())
	if after.NumRedelivered > before.NumRedelivered+1 {
		t.Errorf("paused tenant kept redelivering: %d -> %d", before.NumRedelivered, after.NumRedelivered)
	}
	_, refresh := acme.SF.IssueTokens("api refresh_token")
	if err := acme.Source.Import(t.Context(), refresh, acme.SF.URL()); err != nil {
		t.Fatal(err)
	}
	r.Eventually(10*time.Second, "delivered after the first connect", func() bool { return acme.Status("pkg-wait") == "DRAFT" })
}

// newRig is the shared pipeline rig with the lease these tests were written
// for: short enough that an abandoned lease expires within a test.
func newRig(t *testing.T, o pipeline.Options) *pipeline.Rig {
	t.Helper()
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 3 * time.Second
	}
	return pipeline.New(t, o)
}

// newSource is a fresh token source for tenant id over the rig's stores, as
// a replica that has not imported any grant would have.
func newSource(t *testing.T, r *pipeline.Rig, id string) *auth.Source {
	t.Helper()
	rt := r.Tenants[id]
	src, err := auth.NewSource(auth.Options{Tenant: id, App: auth.AppFromConfig(rt.Config.Salesforce, r.Config.Server.PublicURL),
		Sealer: r.Sealer, Tokens: r.Queue.Tokens(), Tenants: r.Queue.Tenants(), Metrics: r.Metrics})
	if err != nil {
		t.Fatal(err)
	}
	return src
}
