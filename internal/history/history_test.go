package history_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/queue"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	"github.com/countersign/countersign/internal/sandbox/pipeline"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

func TestHistoryKeepsEveryAttemptOfAFlakyDeliveryAcrossARestart(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	// The first two transaction upserts fail: two retries, then delivery.
	acme.SF.FailNext("collection_upsert", sfsandbox.FaultUnavailable, sfsandbox.FaultServerError)
	r.Start()
	ev := ossandbox.NewEvent("PACKAGE_ACTIVATE", "sender-1", "pkg-flaky", "", "", time.Now())
	if err := ossandbox.SendCallback(t.Context(), r.Ingest+"/v1/callbacks/acme", acme.Key, ev); err != nil {
		t.Fatal(err)
	}
	r.Eventually(15*time.Second, "SENT", func() bool { return acme.Status("pkg-flaky") == "SENT" && acme.Events("pkg-flaky") == 1 })
	r.Stop() // flushes the history
	check := func(store *history.Store, when string) {
		t.Helper()
		evKey := pipeline.EventKey(t, "acme", ev)
		st, err := store.Story(t.Context(), "acme", evKey)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		var got []string
		for _, a := range st.Attempts {
			got = append(got, fmt.Sprintf("%d:%s", a.Attempt, a.Outcome))
			if a.Seq != 1 || a.Source != queue.SourceCallback || a.PackageID != "pkg-flaky" || a.Event != "PACKAGE_ACTIVATE" || a.Tenant != "acme" {
				t.Errorf("%s: attempt %+v", when, a)
			}
		}
		if want := "1:retried 2:retried 3:delivered"; strings.Join(got, " ") != want {
			t.Fatalf("%s: attempts %v, want %s", when, got, want)
		}
		if st.Attempts[0].ErrorClass != "retryable" || st.Attempts[0].Error == "" || st.Attempts[2].Error != "" {
			t.Errorf("%s: error fields %+v", when, st.Attempts)
		}
		if id, _ := acme.Transaction("pkg-flaky")["Id"].(string); id == "" || st.Attempts[2].RecordID != id {
			t.Errorf("%s: record id %q, want the transaction's %q", when, st.Attempts[2].RecordID, id)
		}
		if len(st.Messages) != 1 || st.Messages[0].Gone || !strings.Contains(string(st.Messages[0].Body), `"packageId":"pkg-flaky"`) ||
			st.Messages[0].Source != queue.SourceCallback {
			t.Errorf("%s: messages %+v", when, st.Messages)
		}
		page, err := store.Events(t.Context(), history.Filter{Tenant: "acme"}, history.Page{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != 1 || page.Events[0].Attempts != 3 || page.Events[0].Outcome != history.Delivered || page.Events[0].EventKey != evKey {
			t.Errorf("%s: events %+v", when, page.Events)
		}
	}
	check(history.NewStore(r.Queue.JetStream(), r.Queue.Packages()), "before restart")

	r.Queue.Close()
	q, err := queue.Open(t.Context(), queue.Options{NATS: r.Config.NATS, Queue: r.Config.Queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	check(history.NewStore(q.JetStream(), q.Packages()), "after restart")
}

func TestEventsFilterAndPage(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	// A package whose event records cannot be written: dead letters.
	acme.Config.Salesforce.Objects.Event.Name = "No_Such_Object__c"
	r.Start()
	acme.NewPackage(t, "pkg-bad")
	r.Eventually(10*time.Second, "dead letter", func() bool {
		n, _ := sfpush.DeadLetterCount(t.Context(), r.Queue.JetStream(), "acme")
		return n == 1
	})
	r.Stop()
	acme.Config.Salesforce.Objects.Event.Name = "OneSpan_Event__c"
	mid := time.Now()
	r.Start()
	for i := range 3 {
		acme.CompletePackage(t, fmt.Sprintf("pkg-ok-%d", i))
	}
	store := history.NewStore(r.Queue.JetStream(), r.Queue.Packages())
	r.Eventually(20*time.Second, "19 events in the history", func() bool {
		p, err := store.Events(t.Context(), history.Filter{Tenant: "acme"}, history.Page{Limit: 100})
		return err == nil && len(p.Events) == 19
	})
	count := func(f history.Filter) int {
		t.Helper()
		if f.Tenant == "" {
			f.Tenant = "acme"
		}
		p, err := store.Events(t.Context(), f, history.Page{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Events)
	}
	for _, tc := range []struct {
		name string
		f    history.Filter
		want int
	}{
		{"all", history.Filter{}, 19},
		{"by event", history.Filter{Event: "PACKAGE_COMPLETE"}, 3},
		{"by package", history.Filter{PackageID: "pkg-ok-1"}, 6},
		{"by package and event", history.Filter{PackageID: "pkg-ok-1", Event: "DOCUMENT_SIGNED"}, 2},
		{"dead lettered", history.Filter{Outcome: history.DeadLettered}, 1},
		{"dead lettered package", history.Filter{PackageID: "pkg-bad"}, 1},
		{"delivered", history.Filter{Outcome: history.Delivered}, 18},
		{"from the middle", history.Filter{From: mid}, 18},
		{"until the middle", history.Filter{To: mid}, 1},
		{"by source", history.Filter{Source: queue.SourceCallback}, 19},
		{"replays", history.Filter{Source: queue.SourceReplay}, 0},
		{"other tenant", history.Filter{Tenant: "other"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := count(tc.f); got != tc.want {
				t.Errorf("%d events, want %d", got, tc.want)
			}
		})
	}

	// Pages of 5: every event once, newest first, then no cursor.
	seen := map[string]bool{}
	var last time.Time
	cursor, pages := "", 0
	for pages = 1; pages < 10; pages++ {
		p, err := store.Events(t.Context(), history.Filter{Tenant: "acme"}, history.Page{Cursor: cursor, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			if seen[e.EventKey] {
				t.Errorf("event %s on two pages", e.EventKey)
			}
			seen[e.EventKey] = true
			if !last.IsZero() && e.LastAt.After(last) {
				t.Errorf("page %d not newest first", pages)
			}
			last = e.LastAt
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if len(seen) != 19 || pages != 4 {
		t.Errorf("%d events over %d pages, want 19 over 4", len(seen), pages)
	}
	if _, err := store.Events(t.Context(), history.Filter{Tenant: "acme"}, history.Page{Cursor: "%%%"}); err == nil {
		t.Error("a bad cursor was accepted")
	}

	// The package's story: its six events in arrival order, each with its
	// attempt and body, and the files of the completion.
	ps, err := store.PackageStory(t.Context(), "acme", "pkg-ok-2")
	if err != nil {
		t.Fatal(err)
	}
	if !ps.Indexed || ps.Status != "COMPLETED" || ps.RecordID == "" || len(ps.Files) != 3 || len(ps.Events) != 6 {
		t.Fatalf("package story %+v", ps)
	}
	var names []string
	for _, st := range ps.Events {
		names = append(names, st.Event)
		if len(st.Attempts) != 1 || st.Attempts[0].Outcome != history.Delivered || len(st.Messages) != 1 || st.Messages[0].Body == nil {
			t.Errorf("event %s: %+v", st.Event, st)
		}
		if st.Event == "PACKAGE_COMPLETE" && len(st.Attempts[0].Files) != 3 {
			t.Errorf("completion attempt without its files: %+v", st.Attempts[0])
		}
	}
	if want := "PACKAGE_CREATE PACKAGE_ACTIVATE DOCUMENT_SIGNED DOCUMENT_SIGNED SIGNER_COMPLETE PACKAGE_COMPLETE"; strings.Join(names, " ") != want {
		t.Errorf("events %v", names)
	}
	if _, err := store.Story(t.Context(), "acme", strings.Repeat("0", 64)); err == nil {
		t.Error("story of an unknown event")
	}
}
