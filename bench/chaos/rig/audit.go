package rig

import (
	"context"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/callback"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// Report is what a run did, as OneSpan and the Salesforce admin would see it.
type Report struct {
	Sent        int
	OK          int // answered 2xx
	Unavailable int // answered 503
	NoAnswer    int // refused, reset or timed out (the listener was killed)
	Other       int // any other status
	Delivered   int // 2xx callbacks whose event record is in Salesforce
	Lost        int // 2xx callbacks whose event record is not
	Doubled     int // event keys with more than one record
	// Extra are non-2xx callbacks delivered anyway: stored before the answer
	// was lost. Allowed (OneSpan counts them as failed; nothing is wrong in
	// Salesforce).
	Extra int
	// WrongID are 2xx answers whose id is not the callback's event key.
	WrongID int
	// BadTransactions are packages whose transaction record disagrees with
	// their delivered events (status, last event, completion, lookup).
	BadTransactions     int
	DoubledTransactions int
	FilesMissing        int // documents of delivered completions not in Salesforce
	FilesDoubled        int // document keys with more than one ContentVersion
	Problems            []string
	// BadPackages are the ids behind BadTransactions and FilesMissing, for
	// diagnosis.
	BadPackages []string
}

// Settled is true when nothing accepted is missing or wrong.
func (r Report) Settled() bool {
	return r.Lost == 0 && r.Doubled == 0 && r.WrongID == 0 && r.BadTransactions == 0 &&
		r.DoubledTransactions == 0 && r.FilesMissing == 0 && r.FilesDoubled == 0
}

func (r *Report) problem(format string, args ...any) {
	if len(r.Problems) < 10 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Audit compares the ledger with the Salesforce emulators.
func Audit(entries []Entry, tenants []Tenant) Report {
	var r Report
	sf := map[string]*org{}
	for _, t := range tenants {
		sf[t.ID] = readOrg(t.SF, &r)
	}
	type pkgKey struct{ tenant, pkg string }
	delivered := map[pkgKey][]*Entry{}
	for i := range entries {
		e := &entries[i]
		r.Sent++
		ok := e.Status >= 200 && e.Status < 300
		switch {
		case ok:
			r.OK++
		case e.Status == 503:
			r.Unavailable++
		case e.Status == 0:
			r.NoAnswer++
		default:
			r.Other++
		}
		if ok && e.ID != e.Key {
			r.WrongID++
			r.problem("callback %s %s answered id %q, want the event key %s", e.Event, e.Package, e.ID, e.Key)
		}
		o := sf[e.Tenant]
		recs := o.events[e.Key]
		switch {
		case len(recs) > 0 && ok:
			r.Delivered++
		case len(recs) > 0:
			r.Extra++
		case ok:
			r.Lost++
			r.problem("lost: tenant %s %s %s (key %s) answered %d, no event record", e.Tenant, e.Event, e.Package, e.Key, e.Status)
		}
		if len(recs) > 0 {
			delivered[pkgKey{e.Tenant, e.Package}] = append(delivered[pkgKey{e.Tenant, e.Package}], e)
		}
	}
	for k, evs := range delivered {
		o := sf[k.tenant]
		txns := o.transactions[k.pkg]
		if len(txns) != 1 {
			r.BadTransactions++
			r.BadPackages = append(r.BadPackages, k.pkg)
			r.problem("package %s: %d transaction records", k.pkg, len(txns))
			continue
		}
		checkTransaction(&r, o, k.pkg, txns[0], evs)
	}
	return r
}

// checkTransaction applies the §6 rules to the delivered events: the status
// of the latest status event, the latest event's name, completion, files.
func checkTransaction(r *Report, o *org, pkg string, txn sfsandbox.Record, evs []*Entry) {
	var last, lastStatus *Entry
	completed := false
	for _, e := range evs {
		if last == nil || e.At.After(last.At) {
			last = e
		}
		if eff, _ := callback.StatusFor(e.Event); eff == callback.SetStatus && (lastStatus == nil || e.At.After(lastStatus.At)) {
			lastStatus = e
		}
		if e.Event == callback.PackageComplete {
			completed = true
		}
		for _, ev := range o.events[e.Key] {
			if ev["Transaction__c"] != txn["Id"] {
				r.BadTransactions++
				r.problem("event %s of %s links to %v, not its transaction %v", e.Event, pkg, ev["Transaction__c"], txn["Id"])
				return
			}
		}
	}
	want := ""
	if lastStatus != nil {
		_, want = callback.StatusFor(lastStatus.Event)
	}
	got, _ := txn["Status__c"].(string)
	gotLast, _ := txn["Last_Event__c"].(string)
	if got != want || gotLast != last.Event || completed != (txn["Completed_At__c"] != nil) {
		r.BadTransactions++
		r.BadPackages = append(r.BadPackages, pkg)
		r.problem("package %s: status %q last event %q completed_at %v; want %q, %q, completed %v",
			pkg, got, gotLast, txn["Completed_At__c"], want, last.Event, completed)
		return
	}
	if !completed {
		return
	}
	for _, doc := range []string{"doc-1", "evidence-summary"} {
		files := o.files[pkg+"/"+doc]
		if len(files) == 0 {
			r.FilesMissing++
			r.BadPackages = append(r.BadPackages, pkg)
			r.problem("package %s: no file %s", pkg, doc)
			continue
		}
		if files[0].FirstPublishLocationID != txn["Id"] {
			r.BadTransactions++
			r.problem("package %s: file %s published on %s, not on %v", pkg, doc, files[0].FirstPublishLocationID, txn["Id"])
		}
	}
}

type org struct {
	events       map[string][]sfsandbox.Record // by Event_Key__c
	transactions map[string][]sfsandbox.Record // by Package_Id__c
	files        map[string][]sfsandbox.ContentFile
}

func readOrg(sf *sfsandbox.Server, r *Report) *org {
	o := &org{events: map[string][]sfsandbox.Record{}, transactions: map[string][]sfsandbox.Record{},
		files: map[string][]sfsandbox.ContentFile{}}
	for _, rec := range sf.Records(sfsandbox.ObjEvent) {
		k, _ := rec["Event_Key__c"].(string)
		o.events[k] = append(o.events[k], rec)
		if len(o.events[k]) == 2 {
			r.Doubled++
			r.problem("event key %s has more than one record", k)
		}
	}
	for _, rec := range sf.Records(sfsandbox.ObjTransaction) {
		k, _ := rec["Package_Id__c"].(string)
		o.transactions[k] = append(o.transactions[k], rec)
		if len(o.transactions[k]) == 2 {
			r.DoubledTransactions++
			r.problem("package %s has more than one transaction record", k)
		}
	}
	for _, f := range sf.ContentVersions() {
		k, _ := f.Fields["OneSpan_Document_Key__c"].(string)
		o.files[k] = append(o.files[k], f)
		if len(o.files[k]) == 2 {
			r.FilesDoubled++
			r.problem("document %s has more than one file", k)
		}
	}
	return o
}

// WaitSettled audits every poll until the run is settled or within ends;
// it returns the last report either way.
func WaitSettled(ctx context.Context, entries []Entry, tenants []Tenant, within, poll time.Duration) (Report, bool) {
	deadline := time.Now().Add(within)
	for {
		r := Audit(entries, tenants)
		if r.Settled() {
			return r, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return r, false
		}
		select {
		case <-ctx.Done():
		case <-time.After(poll):
		}
	}
}
