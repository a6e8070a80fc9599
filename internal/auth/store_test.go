package auth

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/fault"
)

func TestStoreSealsAndUsesCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	k := newTestKV(t)
	st := NewStore(k.tokens, newSealer(t))
	if _, _, err := st.Load(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty store: %v", err)
	}
	ts := &TokenSet{RefreshToken: "fake-refresh-1", AccessToken: "fake-access-1", InstanceURL: "https://acme.example",
		IssuedAt: time.UnixMilli(1700000000000).UTC(), Generation: 1}
	rev, err := st.Save(ctx, "acme", ts, 0)
	if err != nil {
		t.Fatal(err)
	}
	e, err := k.tokens.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(e.Value(), []byte("fake-refresh-1")) || bytes.Contains(e.Value(), []byte("fake-access-1")) {
		t.Fatal("token stored in clear")
	}
	if _, err := st.Save(ctx, "acme", ts, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	got, gotRev, err := st.Load(ctx, "acme")
	if err != nil || gotRev != rev || got.RefreshToken != "fake-refresh-1" || !got.IssuedAt.Equal(ts.IssuedAt) {
		t.Fatalf("Load = %+v rev %d, %v", got, gotRev, err)
	}
	got.RefreshToken = "fake-refresh-2"
	rev2, err := st.Save(ctx, "acme", got, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Save(ctx, "acme", got, rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("update with a stale revision: %v", err)
	}
	if err := st.Delete(ctx, "acme", rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete with a stale revision: %v", err)
	}
	if err := st.Delete(ctx, "acme", rev2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Load(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := st.Save(ctx, "acme", ts, 0); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
}

func TestStoreRefusesBlobOfAnotherTenant(t *testing.T) {
	ctx := context.Background()
	k := newTestKV(t)
	st := NewStore(k.tokens, newSealer(t))
	if _, err := st.Save(ctx, "acme", &TokenSet{RefreshToken: "fake-refresh"}, 0); err != nil {
		t.Fatal(err)
	}
	e, _ := k.tokens.Get(ctx, "acme")
	if _, err := k.tokens.Put(ctx, "globex", e.Value()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Load(ctx, "globex"); !errors.Is(err, ErrUnsealable) {
		t.Fatalf("acme's blob opened as globex's: %v", err)
	}
}

func TestStoreModifyLosesNoConcurrentUpdate(t *testing.T) {
	ctx := context.Background()
	k := newTestKV(t)
	sealer := newSealer(t)
	var wg sync.WaitGroup
	var calls atomic.Int64
	for range 8 {
		st := NewStore(k.tokens, sealer) // separate stores: separate "replicas"
		wg.Go(func() {
			for range 10 {
				_, _, err := st.Modify(ctx, "acme", func(cur *TokenSet) (*TokenSet, error) {
					calls.Add(1)
					n := &TokenSet{}
					if cur != nil {
						*n = *cur
					}
					n.Generation++
					return n, nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got, _, err := NewStore(k.tokens, sealer).Load(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got.Generation != 80 {
		t.Fatalf("generation = %d after 80 increments (%d attempts): an update was lost", got.Generation, calls.Load())
	}
}

// A record sealed by a key that was removed pauses the tenant (Reconnect, not
// an endless retry) and a new grant can replace it.
func TestUnopenableTokensNeedReconnectAndCanBeReplaced(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	old := h.source(nil)
	h.grant(old)
	h.sealer = newSealer(t) // the old key is gone
	s := h.source(nil)
	_, _, err := s.Token(ctx)
	if !fault.Is(err, fault.Reconnect) || !strings.Contains(err.Error(), "secrets.keys") {
		t.Fatalf("err = %v (class %v)", err, fault.ClassOf(err))
	}
	h.grant(s)
	if _, _, err := s.Token(ctx); err != nil {
		t.Fatalf("after a new grant: %v", err)
	}
}
