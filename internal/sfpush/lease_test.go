package sfpush

import (
	"encoding/json"
	"testing"
	"time"

	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// A worker that died between a stale Salesforce write and recording its
// outcome leaves the record behind the state. The next delivery of any event
// of the package must repair it, even an event that changes nothing.
func TestStaleWriteOfADeadWorkerIsRepaired(t *testing.T) {
	for _, tc := range []struct {
		name  string
		taint func(st *PackageState)
	}{
		{"expired lease", func(st *PackageState) { st.Lease = &Lease{Holder: "dead-worker", Until: time.Now().Add(-time.Second)} }},
		{"dirty", func(st *PackageState) { st.Dirty = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{})
			acme := r.tenants["acme"]
			base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
			send := func(name string, at time.Time) {
				t.Helper()
				ev := ossandbox.NewEvent(name, "u1", "pkg-stale", "", "", at)
				if err := ossandbox.SendCallback(t.Context(), r.ingest+"/v1/callbacks/acme", acme.key, ev); err != nil {
					t.Fatal(err)
				}
			}
			r.start()
			send("PACKAGE_DECLINE", base.Add(time.Hour))
			r.eventually(10*time.Second, "DECLINED", func() bool { return acme.status("pkg-stale") == "DECLINED" })
			r.stop()

			// The dead worker's stale write reached Salesforce; its state did not.
			txn := acme.transaction("pkg-stale")
			if _, err := acme.tenant.Salesforce.Upsert(t.Context(), sfsandbox.ObjTransaction, "Package_Id__c", "pkg-stale",
				map[string]any{"Status__c": "SENT"}); err != nil {
				t.Fatal(err)
			}
			if acme.status("pkg-stale") != "SENT" {
				t.Fatalf("setup: status %q", acme.status("pkg-stale"))
			}
			e, _ := r.q.Packages().Get(t.Context(), PackageKey("acme", "pkg-stale"))
			var st PackageState
			_ = json.Unmarshal(e.Value(), &st)
			tc.taint(&st)
			b, _ := json.Marshal(st)
			if _, err := r.q.Packages().Update(t.Context(), PackageKey("acme", "pkg-stale"), b, e.Revision()); err != nil {
				t.Fatal(err)
			}

			r.start()
			send("DOCUMENT_VIEWED", base) // older than the decline: changes nothing by itself
			r.eventually(10*time.Second, "record repaired", func() bool { return acme.status("pkg-stale") == "DECLINED" })
			if acme.transaction("pkg-stale")["Id"] != txn["Id"] {
				t.Error("a second transaction record was made")
			}
			r.eventually(5*time.Second, "state clean", func() bool {
				e, _ := r.q.Packages().Get(t.Context(), PackageKey("acme", "pkg-stale"))
				var st PackageState
				_ = json.Unmarshal(e.Value(), &st)
				return !st.Dirty && st.Lease == nil
			})
		})
	}
}

// While another worker holds a package's lease, its events wait; they are
// delivered once the lease is released or expires.
func TestPackageLeasedByAnotherWorkerWaits(t *testing.T) {
	r := newRig(t, rigOpts{})
	acme := r.tenants["acme"]
	until := time.Now().Add(1500 * time.Millisecond)
	st := PackageState{PackageID: "pkg-busy", Lease: &Lease{Holder: "other-worker", Until: until}}
	b, _ := json.Marshal(st)
	if _, err := r.q.Packages().Create(t.Context(), PackageKey("acme", "pkg-busy"), b); err != nil {
		t.Fatal(err)
	}
	r.start()
	acme.newPackage(t, "pkg-busy")
	r.eventually(10*time.Second, "delivered after the lease expired", func() bool { return acme.status("pkg-busy") == "DRAFT" })
	if time.Now().Before(until) {
		t.Error("written while another worker held the lease")
	}
}
