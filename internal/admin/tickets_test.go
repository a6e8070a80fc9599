package admin

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Of many browsers opening one link at once, exactly one starts a flow.
func TestTicketWorksOnceUnderConcurrentUse(t *testing.T) {
	r := newRig(t, nil)
	link := r.mint("acme")
	var started, refused atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			resp, err := noFollow().Get(link.URL)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusFound:
				started.Add(1)
			case http.StatusUnauthorized:
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if started.Load() != 1 || refused.Load() != 7 {
		t.Fatalf("%d started, %d refused; want 1 and 7", started.Load(), refused.Load())
	}
}

func TestTicketExpiresAndIsBoundToItsTenant(t *testing.T) {
	r := newRig(t, nil)
	now := time.Now()
	tk := &tickets{kv: r.q.OAuth(), ttl: 10 * time.Minute, now: func() time.Time { return now }}
	ctx := t.Context()

	late, _, err := tk.mint(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	fresh, _, _ := tk.mint(ctx, "acme")
	if _, err := r.q.OAuth().Get(ctx, ticketPrefix+late); err == nil {
		t.Fatal("the ticket itself is a key in cs_oauth; only its hash may be")
	}
	now = now.Add(10*time.Minute + time.Second)
	if err := tk.consume(ctx, "acme", late); err != errTicket {
		t.Fatalf("expired ticket: %v", err)
	}
	now = now.Add(-2 * time.Minute)
	if err := tk.consume(ctx, "globex", fresh); err != errTicket {
		t.Fatalf("ticket for another tenant: %v", err)
	}
	if err := tk.consume(ctx, "acme", fresh); err != errTicket {
		t.Fatalf("a ticket presented for the wrong tenant must be burnt: %v", err)
	}
	ok, _, _ := tk.mint(ctx, "acme")
	if err := tk.consume(ctx, "acme", ok); err != nil {
		t.Fatalf("valid ticket: %v", err)
	}
	for _, bad := range []string{"", "short", "has space" + ok[9:], ok + "x", "*"} {
		if err := tk.consume(ctx, "acme", bad); err != errTicket {
			t.Errorf("consume(%q): %v", bad, err)
		}
	}
}
