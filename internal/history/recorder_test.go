package history_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/queue"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	"github.com/countersign/countersign/internal/sandbox/pipeline"
)

func TestRecordNeverBlocksWhenNATSIsGone(t *testing.T) {
	cfg := config.Default()
	cfg.NATS.StoreDir = t.TempDir()
	cfg.NATS.SyncAlways = false
	q, err := queue.Open(t.Context(), queue.Options{NATS: cfg.NATS, Queue: cfg.Queue})
	if err != nil {
		t.Fatal(err)
	}
	rec := history.NewRecorder(history.RecorderOptions{JetStream: q.JetStream(), Packages: q.Packages(), MaxPending: 2, Timeout: time.Second})
	q.Close()
	start := time.Now()
	for i := range 50 {
		rec.Record(t.Context(), history.Attempt{Tenant: "acme", Seq: uint64(i + 1), EventKey: "k", Event: "PACKAGE_CREATE",
			PackageID: "pkg-1", Attempt: 1, Outcome: history.Delivered, Time: time.Now()})
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("50 records took %s with NATS gone", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.Failed() == 0 || rec.Dropped() == 0 || rec.Failed()+rec.Dropped() != 50 {
		t.Errorf("failed %d + dropped %d, want 50 with both counted", rec.Failed(), rec.Dropped())
	}
}

func TestPausedTenantIsRecordedAsPaused(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	acme.SF.SetAccessTokenTTL(time.Millisecond) // the next call refreshes, with a revoked grant
	acme.SF.RevokeAll()
	r.Start()
	ev := ossandbox.NewEvent("PACKAGE_CREATE", "sender-1", "pkg-paused", "", "", time.Now())
	if err := ossandbox.SendCallback(t.Context(), r.Ingest+"/v1/callbacks/acme", acme.Key, ev); err != nil {
		t.Fatal(err)
	}
	store := history.NewStore(r.Queue.JetStream(), r.Queue.Packages())
	r.Eventually(10*time.Second, "a paused attempt", func() bool {
		p, err := store.Events(t.Context(), history.Filter{Tenant: "acme", Outcome: history.Paused}, history.Page{})
		return err == nil && len(p.Events) == 1 && p.Events[0].ErrorClass == "reconnect" && p.Events[0].PackageID == "pkg-paused"
	})
}

func TestQueriesBeforeAnyAttemptAnswerEmpty(t *testing.T) {
	cfg := config.Default()
	cfg.NATS.StoreDir = t.TempDir()
	cfg.NATS.SyncAlways = false
	q, err := queue.Open(t.Context(), queue.Options{NATS: cfg.NATS, Queue: cfg.Queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	store := history.NewStore(q.JetStream(), q.Packages()) // HISTORY does not exist yet
	p, err := store.Events(t.Context(), history.Filter{Tenant: "acme"}, history.Page{})
	if err != nil || len(p.Events) != 0 {
		t.Errorf("events %+v %v", p, err)
	}
	if _, err := store.Story(t.Context(), "acme", "k"); !errors.Is(err, history.ErrNotFound) {
		t.Errorf("story: %v", err)
	}
	ps, err := store.PackageStory(t.Context(), "acme", "pkg-none")
	if err != nil || len(ps.Events) != 0 || ps.Indexed {
		t.Errorf("package story %+v %v", ps, err)
	}
	if _, err := store.Events(t.Context(), history.Filter{}, history.Page{}); err == nil {
		t.Error("events without a tenant")
	}
}
