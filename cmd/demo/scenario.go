package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// plan is one package's life in the demo.
type plan struct {
	pkg    ossandbox.Package
	steps  []step
	status string // expected Status__c once delivered
}

type step struct {
	event string // the callback it makes OneSpan send
	do    func(ctx context.Context, s *ossandbox.Server, id string) error
}

func signer(id, email string) ossandbox.Signer {
	return ossandbox.Signer{ID: id, Email: email}
}

func activate() step {
	return step{"PACKAGE_ACTIVATE", func(ctx context.Context, s *ossandbox.Server, id string) error { return s.Activate(ctx, id) }}
}

func sign(doc, who string) step {
	return step{"DOCUMENT_SIGNED", func(ctx context.Context, s *ossandbox.Server, id string) error {
		return s.SignDocument(ctx, id, doc, who)
	}}
}

func signerDone(who string) step {
	return step{"SIGNER_COMPLETE", func(ctx context.Context, s *ossandbox.Server, id string) error {
		return s.SignerComplete(ctx, id, who)
	}}
}

func complete() step {
	return step{"PACKAGE_COMPLETE", func(ctx context.Context, s *ossandbox.Server, id string) error { return s.Complete(ctx, id) }}
}

// scenario: two completed packages (with their PDFs copied), one declined,
// one expired, one still being signed. Package ids look like OneSpan's.
func scenario() []plan {
	return []plan{
		{
			pkg: ossandbox.Package{ID: "Kq3vT1m0cW_employment-2GiQ=", Name: "Employment contract — J. Rivera",
				Documents: []ossandbox.Document{{ID: "contract", Name: "Employment contract", Size: 2 << 20}, {ID: "policy", Name: "Remote work policy", Size: 180 << 10}},
				Signers:   []ossandbox.Signer{signer("jrivera", "j.rivera@example.com"), signer("hr-lead", "hr@acme.example")}},
			steps: []step{activate(), sign("contract", "jrivera"), sign("policy", "jrivera"), signerDone("jrivera"),
				sign("contract", "hr-lead"), signerDone("hr-lead"), complete()},
			status: "COMPLETED",
		},
		{
			pkg: ossandbox.Package{ID: "pN8xY2r4Lq_nda-77tA=", Name: "Mutual NDA — Globex",
				Documents: []ossandbox.Document{{ID: "nda", Name: "Mutual NDA", Size: 96 << 10}},
				Signers:   []ossandbox.Signer{signer("globex-cfo", "cfo@globex.example")}},
			steps:  []step{activate(), sign("nda", "globex-cfo"), signerDone("globex-cfo"), complete()},
			status: "COMPLETED",
		},
		{
			pkg: ossandbox.Package{ID: "Zt5bH7w9Qe_supplier-0xPo=", Name: "Supplier agreement — Initech",
				Documents: []ossandbox.Document{{ID: "msa", Name: "Master supply agreement"}},
				Signers:   []ossandbox.Signer{signer("initech-ops", "ops@initech.example")}},
			steps: []step{activate(), {"PACKAGE_DECLINE", func(ctx context.Context, s *ossandbox.Server, id string) error {
				return s.Decline(ctx, id, "Payment terms must be net 60")
			}}},
			status: "DECLINED",
		},
		{
			pkg: ossandbox.Package{ID: "Rf2kM6n1Ua_lease-5sWe=", Name: "Lease renewal — Unit 4B",
				Documents: []ossandbox.Document{{ID: "lease", Name: "Lease renewal"}},
				Signers:   []ossandbox.Signer{signer("tenant-4b", "tenant4b@example.com")}},
			steps: []step{activate(), {"PACKAGE_EXPIRE", func(ctx context.Context, s *ossandbox.Server, id string) error {
				return s.Expire(ctx, id)
			}}},
			status: "EXPIRED",
		},
		{
			pkg: ossandbox.Package{ID: "Hy7cD3s8Vb_quote-9kLm=", Name: "Quote Q-1042 — Umbrella",
				Documents: []ossandbox.Document{{ID: "quote", Name: "Quote Q-1042"}, {ID: "terms", Name: "Terms"}},
				Signers:   []ossandbox.Signer{signer("umbrella-buyer", "buyer@umbrella.example")}},
			steps:  []step{activate(), sign("quote", "umbrella-buyer")},
			status: "SENT",
		},
	}
}

// events is what OneSpan sends for a plan: PACKAGE_CREATE, then each step's.
func (p plan) events() int { return 1 + len(p.steps) }

func countEvents(plans []plan) int {
	n := 0
	for _, p := range plans {
		n += p.events()
	}
	return n
}

// play creates every package and walks the packages through their steps
// round-robin, the way callbacks of concurrent packages interleave.
func (e *env) play(ctx context.Context, plans []plan, out io.Writer) error {
	for _, p := range plans {
		if err := e.os.CreatePackage(ctx, p.pkg); err != nil {
			return fmt.Errorf("create %s: %w", p.pkg.ID, err)
		}
		fmt.Fprintf(out, "onespan  PACKAGE_CREATE       %s  %q\n", p.pkg.ID, p.pkg.Name)
	}
	for i := 0; ; i++ {
		more := false
		for _, p := range plans {
			if i >= len(p.steps) {
				continue
			}
			more = true
			st := p.steps[i]
			if err := st.do(ctx, e.os, p.pkg.ID); err != nil {
				return fmt.Errorf("%s of %s: %w", st.event, p.pkg.ID, err)
			}
			fmt.Fprintf(out, "onespan  %-20s %s\n", st.event, p.pkg.ID)
		}
		if !more {
			break
		}
	}
	if failed := e.os.Failed(); len(failed) > 0 {
		return fmt.Errorf("%d callbacks refused by the listener, first: %v", len(failed), failed[0].Err)
	}
	return nil
}

// files are the ContentVersion keys a plan's completion produces: every
// document but the consent one, and the evidence summary.
func (p plan) files() []string {
	if p.status != "COMPLETED" {
		return nil
	}
	var keys []string
	for _, d := range p.pkg.Documents {
		keys = append(keys, p.pkg.ID+"/"+d.ID)
	}
	return append(keys, p.pkg.ID+"/evidence-summary")
}

func (e *env) transaction(id string) (sfsandbox.Record, bool) {
	return e.sf.FindRecord(sfsandbox.ObjTransaction, "Package_Id__c", id)
}

func (e *env) eventCount(rec sfsandbox.Record) int {
	return len(e.sf.FindRecords(sfsandbox.ObjEvent, "Transaction__c", rec["Id"]))
}

// waitDelivered polls Salesforce until every transaction has its status, all
// its events and its files.
func (e *env) waitDelivered(ctx context.Context, plans []plan) error {
	var missing string
	err := poll(ctx, 30*time.Second, "delivery", func() bool {
		for _, p := range plans {
			rec, ok := e.transaction(p.pkg.ID)
			if !ok || rec["Status__c"] != p.status {
				missing = "status of " + p.pkg.ID
				return false
			}
			if n := e.eventCount(rec); n != p.events() {
				missing = fmt.Sprintf("events of %s (%d of %d)", p.pkg.ID, n, p.events())
				return false
			}
			for _, key := range p.files() {
				if _, ok := e.sf.FindContentVersion("OneSpan_Document_Key__c", key); !ok {
					missing = "file " + key
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("%w: still missing %s", err, missing)
	}
	return nil
}

// print shows what Salesforce holds, checking each file against the bytes
// OneSpan served.
func (e *env) print(out io.Writer, plans []plan) error {
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(out, "Salesforce: OneSpan_Transaction__c")
	fmt.Fprintln(tw, "PACKAGE_ID__C\tSTATUS__C\tLAST_EVENT__C\tLAST_EVENT_AT__C\tCOMPLETED_AT__C\tEVENTS\tFILES")
	var bad []string
	for _, p := range plans {
		rec, _ := e.transaction(p.pkg.ID)
		files := 0
		for _, cv := range e.sf.ContentVersions() {
			if cv.FirstPublishLocationID == rec["Id"] {
				files++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", p.pkg.ID, str(rec["Status__c"]), str(rec["Last_Event__c"]),
			str(rec["Last_Event_At__c"]), str(rec["Completed_At__c"]), e.eventCount(rec), files)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nSalesforce: ContentVersion (files linked to their transaction)")
	fmt.Fprintln(tw, "TITLE\tONESPAN_DOCUMENT_KEY__C\tSIZE\tSHA-256\tMATCHES ONESPAN")
	for _, p := range plans {
		for _, key := range p.files() {
			cv, _ := e.sf.FindContentVersion("OneSpan_Document_Key__c", key)
			docID := key[strings.LastIndexByte(key, '/')+1:]
			size := p.pkg.EvidenceSize
			if size == 0 {
				size = 16 << 10 // the emulator's default evidence summary
			}
			if i := slices.IndexFunc(p.pkg.Documents, func(d ossandbox.Document) bool { return d.ID == docID }); i >= 0 {
				size = p.pkg.Documents[i].Size
				if size == 0 {
					size = 32 << 10 // the emulator's default document
				}
			}
			ok := cv.Size == size && cv.SHA256 == ossandbox.ExpectedSHA256(p.pkg.ID, docID, size)
			if !ok {
				bad = append(bad, key)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s…\t%s\n", cv.Title, key, human(cv.Size), cv.SHA256[:16], yes(ok))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	decline, _ := e.sf.FindRecord(sfsandbox.ObjEvent, "Event_Name__c", "PACKAGE_DECLINE")
	fmt.Fprintf(out, "\nThe decline reason is on its event record: Message__c = %q\n", str(decline["Message__c"]))
	if len(bad) > 0 {
		return fmt.Errorf("files differ from what OneSpan served: %s", strings.Join(bad, ", "))
	}
	return nil
}

func str(v any) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(v)
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
