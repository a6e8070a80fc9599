package replay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/replay"
	"github.com/countersign/countersign/internal/sandbox/pipeline"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

func newReplayer(t *testing.T, r *pipeline.Rig) (*replay.Replayer, *history.Store) {
	t.Helper()
	store := history.NewStore(r.Queue.JetStream(), r.Queue.Packages())
	rp, err := replay.New(replay.Options{JetStream: r.Queue.JetStream(), Packages: r.Queue.Packages(), History: store})
	if err != nil {
		t.Fatal(err)
	}
	return rp, store
}

func callbacksCount(t *testing.T, r *pipeline.Rig) uint64 {
	t.Helper()
	s, err := r.Queue.JetStream().Stream(t.Context(), queue.CallbacksStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// attempts is the number of attempts of an event in the history.
func attempts(t *testing.T, store *history.Store, key string) int {
	st, err := store.Story(t.Context(), "acme", key)
	if err != nil {
		return 0
	}
	return len(st.Attempts)
}

func TestReplayByEventKeyAndByFilter(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	rp, store := newReplayer(t, r)
	r.Start()
	t0 := time.Now()
	acme.CompletePackage(t, "pkg-a")
	acme.CompletePackage(t, "pkg-b")
	t1 := time.Now()
	r.Eventually(20*time.Second, "both packages delivered with files", func() bool {
		return acme.Status("pkg-a") == "COMPLETED" && acme.Status("pkg-b") == "COMPLETED" && len(acme.SF.ContentVersions()) == 6 &&
			acme.SF.Count(sfsandbox.ObjEvent) == 12
	})
	var completeKey string
	r.Eventually(5*time.Second, "the completion of pkg-a in the history", func() bool {
		page, err := store.Events(t.Context(), history.Filter{Tenant: "acme", PackageID: "pkg-a", Event: "PACKAGE_COMPLETE"}, history.Page{})
		if err != nil || len(page.Events) != 1 {
			return false
		}
		completeKey = page.Events[0].EventKey
		return true
	})

	// Dry runs count and store nothing.
	for _, tc := range []struct {
		name string
		f    replay.Filter
		want int
	}{
		{"package", replay.Filter{PackageID: "pkg-a"}, 6},
		{"event in window", replay.Filter{Event: "DOCUMENT_SIGNED", From: t0, To: t1.Add(time.Second)}, 4},
		{"window after everything", replay.Filter{From: time.Now().Add(time.Hour)}, 0},
		{"event key", replay.Filter{EventKeys: []string{completeKey}}, 1},
		{"sequence", replay.Filter{Seqs: []uint64{1, 2}}, 2},
		{"package and event", replay.Filter{PackageID: "pkg-b", Event: "PACKAGE_CREATE"}, 1},
		{"other tenant's sequence", replay.Filter{Tenant: "other", Seqs: []uint64{1}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.f.Tenant == "" {
				tc.f.Tenant = "acme"
			}
			res, err := rp.Replay(t.Context(), tc.f, true, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Matched != tc.want || res.Replayed != 0 || !res.DryRun {
				t.Errorf("dry run %+v, want %d matched", res, tc.want)
			}
		})
	}
	if n := callbacksCount(t, r); n != 12 {
		t.Fatalf("a dry run stored messages: %d", n)
	}

	// By event key: one copy, delivered again, updating the same records.
	var calls []string
	res, err := rp.Replay(t.Context(), replay.Filter{Tenant: "acme", EventKeys: []string{completeKey}}, false,
		func(done, total int) { calls = append(calls, fmt.Sprintf("%d/%d", done, total)) })
	if err != nil || res.Matched != 1 || res.Replayed != 1 || fmt.Sprint(calls) != "[1/1]" {
		t.Fatalf("replay by key: %+v %v progress %v", res, err, calls)
	}
	r.Eventually(15*time.Second, "the replayed completion delivered", func() bool {
		st, err := store.Story(t.Context(), "acme", completeKey)
		return err == nil && len(st.Attempts) == 2 && st.Attempts[1].Outcome == history.Delivered && st.Attempts[1].Source == queue.SourceReplay
	})
	st, _ := store.Story(t.Context(), "acme", completeKey)
	if len(st.Messages) != 2 || st.Messages[1].Source != queue.SourceReplay || string(st.Messages[0].Body) != string(st.Messages[1].Body) {
		t.Errorf("stored copies %+v", st.Messages)
	}
	s, _ := r.Queue.JetStream().Stream(t.Context(), queue.CallbacksStream)
	copyMsg, err := s.GetMsg(t.Context(), st.Messages[1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if copyMsg.Header.Get(replay.HeaderReplayOf) != fmt.Sprintf("CALLBACKS:%d", st.Messages[0].Seq) ||
		copyMsg.Header.Get(queue.HeaderPackage) != "pkg-a" || copyMsg.Header.Get("Nats-Msg-Id") == completeKey {
		t.Errorf("copy headers %v", copyMsg.Header)
	}

	// The same key again: two stored copies match, one is replayed.
	res, err = rp.Replay(t.Context(), replay.Filter{Tenant: "acme", EventKeys: []string{completeKey}}, false, nil)
	if err != nil || res.Matched != 2 || res.Replayed != 1 || res.Skipped != 1 {
		t.Fatalf("second replay by key: %+v %v", res, err)
	}

	// By filter: the signatures of both packages in the window.
	res, err = rp.Replay(t.Context(), replay.Filter{Tenant: "acme", Event: "DOCUMENT_SIGNED", From: t0, To: t1.Add(time.Second)}, false, nil)
	if err != nil || res.Matched != 4 || res.Replayed != 4 {
		t.Fatalf("replay by filter: %+v %v", res, err)
	}
	r.Eventually(15*time.Second, "replays delivered", func() bool {
		p, err := store.Events(t.Context(), history.Filter{Tenant: "acme", Source: queue.SourceReplay, Outcome: history.Delivered}, history.Page{})
		return err == nil && len(p.Events) == 5 && attempts(t, store, completeKey) == 3
	})
	if n := callbacksCount(t, r); n != 12+6 {
		t.Errorf("CALLBACKS holds %d messages, want 18", n)
	}
	// Idempotent writes: nothing doubled in Salesforce.
	if acme.SF.Count(sfsandbox.ObjEvent) != 12 || len(acme.SF.ContentVersions()) != 6 || acme.SF.Count(sfsandbox.ObjTransaction) != 2 {
		t.Errorf("records after replays: %d events, %d files, %d transactions",
			acme.SF.Count(sfsandbox.ObjEvent), len(acme.SF.ContentVersions()), acme.SF.Count(sfsandbox.ObjTransaction))
	}
	if _, err := rp.Replay(t.Context(), replay.Filter{}, true, nil); err == nil {
		t.Error("a replay without tenant was accepted")
	}
}

func TestReplayedDeadLetterIsDeliveredAndRemoved(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	rp, store := newReplayer(t, r)
	// The org lacks the event object: every event dead-letters.
	acme.Config.Salesforce.Objects.Event.Name = "No_Such_Object__c"
	r.Start()
	acme.NewPackage(t, "pkg-dl")
	if err := acme.OS.Activate(t.Context(), "pkg-dl"); err != nil {
		t.Fatal(err)
	}
	acme.NewPackage(t, "pkg-other")
	deadLetters := func() uint64 {
		n, _ := sfpush.DeadLetterCount(t.Context(), r.Queue.JetStream(), "acme")
		return n
	}
	r.Eventually(15*time.Second, "3 dead letters", func() bool { return deadLetters() == 3 })
	r.Stop()

	list, err := rp.ListDeadLetters(t.Context(), replay.Filter{Tenant: "acme"}, replay.Page{Limit: 2})
	if err != nil || len(list.DeadLetters) != 2 || list.Next == "" {
		t.Fatalf("first page %+v %v", list, err)
	}
	d := list.DeadLetters[0]
	if d.ErrorClass != "permanent" || d.Error == "" || d.Deliveries != 1 || d.OriginalSeq == 0 || d.ReceivedAt.IsZero() ||
		d.DeadAt.IsZero() || d.PackageID == "" || len(d.EventKey) != 64 || d.Body == nil || d.Source != queue.SourceCallback {
		t.Errorf("dead letter %+v", d)
	}
	next, err := rp.ListDeadLetters(t.Context(), replay.Filter{Tenant: "acme"}, replay.Page{Cursor: list.Next, Limit: 2})
	if err != nil || len(next.DeadLetters) != 1 || next.Next != "" || next.DeadLetters[0].Seq <= d.Seq {
		t.Fatalf("second page %+v %v", next, err)
	}
	only, err := rp.ListDeadLetters(t.Context(), replay.Filter{Tenant: "acme", PackageID: "pkg-dl", Event: "PACKAGE_ACTIVATE"}, replay.Page{})
	if err != nil || len(only.DeadLetters) != 1 || only.DeadLetters[0].Event != "PACKAGE_ACTIVATE" {
		t.Fatalf("filtered list %+v %v", only, err)
	}

	// Purge by filter: the other package's dead letter only.
	n, err := rp.PurgeDeadLetters(t.Context(), replay.Filter{Tenant: "acme", PackageID: "pkg-other"})
	if err != nil || n != 1 || deadLetters() != 2 {
		t.Fatalf("purge: %d %v, %d left", n, err, deadLetters())
	}

	// Fix the cause, then replay pkg-dl's dead letters.
	acme.Config.Salesforce.Objects.Event.Name = "OneSpan_Event__c"
	r.Start()
	f := replay.Filter{Tenant: "acme", Source: replay.SourceDeadLetters, PackageID: "pkg-dl"}
	dry, err := rp.Replay(t.Context(), f, true, nil)
	if err != nil || dry.Matched != 2 || dry.Replayed != 0 || deadLetters() != 2 {
		t.Fatalf("dry run %+v %v", dry, err)
	}
	res, err := rp.Replay(t.Context(), f, false, nil)
	if err != nil || res.Matched != 2 || res.Replayed != 2 {
		t.Fatalf("replay %+v %v", res, err)
	}
	if deadLetters() != 0 {
		t.Errorf("dead letters left after replay: %d", deadLetters())
	}
	r.Eventually(15*time.Second, "the replayed events in Salesforce", func() bool {
		return acme.Status("pkg-dl") == "SENT" && acme.Events("pkg-dl") == 2
	})
	key := only.DeadLetters[0].EventKey
	r.Eventually(5*time.Second, "the history of the replayed event", func() bool {
		st, err := store.Story(t.Context(), "acme", key)
		return err == nil && len(st.Attempts) == 2 && st.Attempts[0].Outcome == history.DeadLettered &&
			st.Attempts[1].Outcome == history.Delivered && st.Attempts[1].Source == queue.SourceReplay
	})
	if n, err := rp.PurgeDeadLetters(t.Context(), replay.Filter{Tenant: "acme"}); err != nil || n != 0 {
		t.Errorf("purge of nothing: %d %v", n, err)
	}
}
