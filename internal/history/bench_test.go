package history_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/queue"
)

// BenchmarkQueries measures the scans behind Events and Story over a
// tenant history of 50,000 attempts (one per event, 5 event names). On the
// shared 2-core CI VM: Events over all ~0.3-1 s (a scan of the whole tenant),
// Events of one event name ~0.1 s, Story ~30 ms (one shard of 16).
func BenchmarkQueries(b *testing.B) {
	cfg := config.Default()
	cfg.NATS.StoreDir = b.TempDir()
	cfg.NATS.SyncAlways = false
	q, err := queue.Open(b.Context(), queue.Options{NATS: cfg.NATS, Queue: cfg.Queue})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	js := q.JetStream()
	if err := history.Ensure(b.Context(), js, time.Hour, 1); err != nil {
		b.Fatal(err)
	}
	const n = 50_000
	names := []string{"PACKAGE_CREATE", "PACKAGE_ACTIVATE", "DOCUMENT_SIGNED", "SIGNER_COMPLETE", "PACKAGE_COMPLETE"}
	start := time.Now()
	var key string
	for i := range n {
		key = fmt.Sprintf("%064x", i)
		a := history.Attempt{Time: start.Add(time.Duration(i) * time.Millisecond), Tenant: "acme", EventKey: key, Seq: uint64(i + 1),
			PackageID: fmt.Sprintf("pkg-%d", i/5), Event: names[i%len(names)], Source: queue.SourceCallback, Attempt: 1,
			Outcome: history.Delivered, RecordID: "a00000000000001AAA"}
		data, _ := json.Marshal(a)
		m := nats.NewMsg(history.Subject("acme", a.Event, key))
		m.Data = data
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish timed out")
	}
	store := history.NewStore(js, q.Packages())
	b.Run("Events/all", func(b *testing.B) {
		for b.Loop() {
			p, err := store.Events(b.Context(), history.Filter{Tenant: "acme"}, history.Page{Limit: 50})
			if err != nil || p.Scanned != n {
				b.Fatalf("%d scanned, %v", p.Scanned, err)
			}
		}
	})
	b.Run("Events/one-event-name", func(b *testing.B) {
		for b.Loop() {
			if _, err := store.Events(b.Context(), history.Filter{Tenant: "acme", Event: "PACKAGE_COMPLETE"}, history.Page{Limit: 50}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Story", func(b *testing.B) {
		for b.Loop() {
			if _, err := store.Story(b.Context(), "acme", key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
