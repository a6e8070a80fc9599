package rig

import (
	"testing"
	"time"

	"github.com/countersign/countersign/internal/callback"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// The audit is the judge of the cluster test and the chaos runs, so it must
// see a lost event, a wrong status and a missing file.
func TestAuditFindsLostEventsAndWrongTransactions(t *testing.T) {
	sf := sfsandbox.NewTestServer(t, sfsandbox.DefaultOptions())
	tenants := []Tenant{{ID: "acme", SF: sf}}
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	entries := []Entry{
		{Tenant: "acme", Package: "p1", Event: callback.PackageCreate, At: at, Key: "k1", ID: "k1", Status: 200},
		{Tenant: "acme", Package: "p1", Event: callback.PackageActivate, At: at.Add(time.Second), Key: "k2", ID: "k2", Status: 200},
		{Tenant: "acme", Package: "p1", Event: callback.SignerComplete, At: at.Add(2 * time.Second), Key: "k3", ID: "k3", Status: 503},
		{Tenant: "acme", Package: "p2", Event: callback.PackageComplete, At: at, Key: "k4", ID: "k4", Status: 200},
	}
	r := Audit(entries, tenants)
	if r.Lost != 3 || r.Delivered != 0 || r.Unavailable != 1 || r.Settled() {
		t.Fatalf("empty org: %+v", r)
	}

	txn, err := sf.Insert(sfsandbox.ObjTransaction, map[string]any{"Package_Id__c": "p1", "Status__c": "DRAFT", "Last_Event__c": callback.SignerComplete})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k1", "k2", "k3"} {
		if _, err := sf.Insert(sfsandbox.ObjEvent, map[string]any{"Event_Key__c": k, "Transaction__c": txn}); err != nil {
			t.Fatal(err)
		}
	}
	txn2, _ := sf.Insert(sfsandbox.ObjTransaction, map[string]any{"Package_Id__c": "p2", "Status__c": "COMPLETED",
		"Last_Event__c": callback.PackageComplete, "Completed_At__c": "2026-11-01T10:00:00.000Z"})
	if _, err := sf.Insert(sfsandbox.ObjEvent, map[string]any{"Event_Key__c": "k4", "Transaction__c": txn2}); err != nil {
		t.Fatal(err)
	}
	r = Audit(entries, tenants)
	// p1's status must be SENT (the activation is the latest status event);
	// p2 completed without its files.
	if r.Lost != 0 || r.Delivered != 3 || r.Extra != 1 || r.BadTransactions != 1 || r.FilesMissing != 2 || r.Settled() {
		t.Fatalf("delivered org: %+v", r)
	}
}
