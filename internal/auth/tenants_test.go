package auth

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestTenantStateTransitionsKeepTheOtherFields(t *testing.T) {
	ctx := context.Background()
	k := newTestKV(t)
	tn := NewTenants(k.tenants)
	st, rev, err := tn.Get(ctx, "acme")
	if err != nil || rev != 0 || st.State != "" || st.Paused(time.Now()) {
		t.Fatalf("unknown tenant: %+v %d %v", st, rev, err)
	}
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := tn.SetThrottled(ctx, "acme", until.Add(-300*time.Millisecond)); err != nil { // rounded up
		t.Fatal(err)
	}
	if err := tn.SetNeedsReconnect(ctx, "acme", "refresh refused: invalid_grant"); err != nil {
		t.Fatal(err)
	}
	st, _, _ = tn.Get(ctx, "acme")
	if st.State != StateNeedsReconnect || st.Reason == "" || !st.Throttle().Equal(until) || !st.Paused(time.Now()) {
		t.Fatalf("state = %+v", st)
	}
	if err := tn.SetConnected(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := tn.SetThrottled(ctx, "acme", time.Time{}); err != nil {
		t.Fatal(err)
	}
	st, _, _ = tn.Get(ctx, "acme")
	if st.State != StateConnected || st.Reason != "" || st.ThrottledUntil != "" || st.Paused(time.Now()) || st.UpdatedAt.IsZero() {
		t.Fatalf("state = %+v", st)
	}
}

func TestTenantStateConcurrentWritersDoNotOverwriteEachOther(t *testing.T) {
	ctx := context.Background()
	k := newTestKV(t)
	until := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 20 {
			if err := NewTenants(k.tenants).SetNeedsReconnect(ctx, "acme", "x"); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			if err := NewTenants(k.tenants).SetThrottled(ctx, "acme", until); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	st, _, _ := NewTenants(k.tenants).Get(ctx, "acme")
	if st.State != StateNeedsReconnect || st.ThrottledUntil == "" {
		t.Fatalf("a field was lost: %+v", st)
	}
}

func TestTenantWatchSeesChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k := newTestKV(t)
	tn := NewTenants(k.tenants)
	ch, err := tn.Watch(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if st := <-ch; st.State != "" {
		t.Fatalf("initial state = %+v", st)
	}
	if err := tn.SetNeedsReconnect(ctx, "acme", "revoked"); err != nil {
		t.Fatal(err)
	}
	if st := <-ch; st.State != StateNeedsReconnect || st.Reason != "revoked" {
		t.Fatalf("after needs_reconnect: %+v", st)
	}
	if err := tn.SetConnected(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if st := <-ch; st.State != StateConnected {
		t.Fatalf("after connect: %+v", st)
	}
	// A watch started later gets the current state first.
	ch2, err := tn.Watch(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if st := <-ch2; st.State != StateConnected {
		t.Fatalf("initial state of a late watch: %+v", st)
	}
	cancel()
	for range ch {
	}
}
