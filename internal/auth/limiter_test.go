package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestFailureLimiterBlocksAnAddressUntilItsWindowEnds(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := NewFailureLimiter(3, time.Minute, 0, c.now)
	for i := range 3 {
		if blocked, _ := l.Blocked("198.51.100.7"); blocked {
			t.Fatalf("blocked after %d failures, want after 3", i)
		}
		l.Fail("198.51.100.7")
	}
	blocked, left := l.Blocked("198.51.100.7")
	if !blocked || left != time.Minute {
		t.Fatalf("after 3 failures: blocked %v for %v, want true for 1m", blocked, left)
	}
	if blocked, _ := l.Blocked("198.51.100.8"); blocked {
		t.Fatal("another address is blocked")
	}
	c.add(40 * time.Second)
	if blocked, left := l.Blocked("198.51.100.7"); !blocked || left != 20*time.Second {
		t.Fatalf("40s later: blocked %v for %v, want true for 20s", blocked, left)
	}
	// The window is fixed: more failures do not extend it.
	l.Fail("198.51.100.7")
	c.add(20 * time.Second)
	if blocked, left := l.Blocked("198.51.100.7"); blocked || left != 0 {
		t.Fatalf("at the window's end: blocked %v for %v", blocked, left)
	}
	// A new window starts from the next failure.
	l.Fail("198.51.100.7")
	if blocked, left := l.Blocked("198.51.100.7"); blocked || left != time.Minute {
		t.Fatalf("one failure in a new window: blocked %v for %v", blocked, left)
	}
}

func TestFailureLimiterMemoryIsBounded(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := NewFailureLimiter(1, time.Minute, 4, c.now)
	l.Fail("old")
	c.add(2 * time.Minute)
	for i := range 3 {
		l.Fail(fmt.Sprintf("fresh-%d", i))
	}
	// Full (4): the expired entry goes first, the fresh ones stay.
	l.Fail("fresh-3")
	for i := range 4 {
		if blocked, _ := l.Blocked(fmt.Sprintf("fresh-%d", i)); !blocked {
			t.Fatalf("fresh-%d forgotten when only an expired entry had to go", i)
		}
	}
	// Full of live entries: everything is reset rather than growing.
	l.Fail("fresh-4")
	if blocked, _ := l.Blocked("fresh-0"); blocked {
		t.Fatal("fresh-0 still counted after a reset")
	}
	if blocked, _ := l.Blocked("fresh-4"); !blocked {
		t.Fatal("the address that triggered the reset is not counted")
	}
}
