package sfpush_test

import (
	"encoding/json"
	"testing"
	"time"

	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	"github.com/countersign/countersign/internal/sandbox/pipeline"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

// A worker that died between a stale Salesforce write and recording its
// outcome leaves the record behind the state. The next delivery of any event
// of the package must repair it, even an event that changes nothing.
func TestStaleWriteOfADeadWorkerIsRepaired(t *testing.T) {
	for _, tc := range []struct {
		name  string
		taint func(st *sfpush.PackageState)
	}{
		{"expired lease", func(st *sfpush.PackageState) {
			st.Lease = &sfpush.Lease{Holder: "dead-worker", Until: time.Now().Add(-time.Second)}
		}},
		{"dirty", func(st *sfpush.PackageState) { st.Dirty = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, pipeline.Options{})
			acme := r.Tenants["acme"]
			base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
			send := func(name string, at time.Time) {
				t.Helper()
				ev := ossandbox.NewEvent(name, "u1", "pkg-stale", "", "", at)
				if err := ossandbox.SendCallback(t.Context(), r.Ingest+"/v1/callbacks/acme", acme.Key, ev); err != nil {
					t.Fatal(err)
				}
			}
			r.Start()
			send("PACKAGE_DECLINE", base.Add(time.Hour))
			r.Eventually(10*time.Second, "DECLINED", func() bool { return acme.Status("pkg-stale") == "DECLINED" })
			r.Stop()

			// The dead worker's stale write reached Salesforce; its state did not.
			txn := acme.Transaction("pkg-stale")
			if _, err := acme.Tenant.Salesforce.Upsert(t.Context(), sfsandbox.ObjTransaction, "Package_Id__c", "pkg-stale",
				map[string]any{"Status__c": "SENT"}); err != nil {
				t.Fatal(err)
			}
			if acme.Status("pkg-stale") != "SENT" {
				t.Fatalf("setup: status %q", acme.Status("pkg-stale"))
			}
			e, _ := r.Queue.Packages().Get(t.Context(), sfpush.PackageKey("acme", "pkg-stale"))
			var st sfpush.PackageState
			_ = json.Unmarshal(e.Value(), &st)
			tc.taint(&st)
			b, _ := json.Marshal(st)
			if _, err := r.Queue.Packages().Update(t.Context(), sfpush.PackageKey("acme", "pkg-stale"), b, e.Revision()); err != nil {
				t.Fatal(err)
			}

			r.Start()
			send("DOCUMENT_VIEWED", base) // older than the decline: changes nothing by itself
			r.Eventually(10*time.Second, "record repaired", func() bool { return acme.Status("pkg-stale") == "DECLINED" })
			if acme.Transaction("pkg-stale")["Id"] != txn["Id"] {
				t.Error("a second transaction record was made")
			}
			r.Eventually(5*time.Second, "state clean", func() bool {
				e, _ := r.Queue.Packages().Get(t.Context(), sfpush.PackageKey("acme", "pkg-stale"))
				var st sfpush.PackageState
				_ = json.Unmarshal(e.Value(), &st)
				return !st.Dirty && st.Lease == nil
			})
		})
	}
}

// While another worker holds a package's lease, its events wait; they are
// delivered once the lease is released or expires.
func TestPackageLeasedByAnotherWorkerWaits(t *testing.T) {
	r := newRig(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	until := time.Now().Add(1500 * time.Millisecond)
	st := sfpush.PackageState{PackageID: "pkg-busy", Lease: &sfpush.Lease{Holder: "other-worker", Until: until}}
	b, _ := json.Marshal(st)
	if _, err := r.Queue.Packages().Create(t.Context(), sfpush.PackageKey("acme", "pkg-busy"), b); err != nil {
		t.Fatal(err)
	}
	r.Start()
	acme.NewPackage(t, "pkg-busy")
	r.Eventually(10*time.Second, "delivered after the lease expired", func() bool { return acme.Status("pkg-busy") == "DRAFT" })
	if time.Now().Before(until) {
		t.Error("written while another worker held the lease")
	}
}
