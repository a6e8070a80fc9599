package fault

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestClassOfFollowsWrapping(t *testing.T) {
	until := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	throttled := &Error{Class: Throttled, Op: "upsert", Until: until}
	cases := []struct {
		err  error
		want Class
	}{
		{New(Permanent, "upsert x", errors.New("bad field")), Permanent},
		{fmt.Errorf("batch: %w", New(Reconnect, "refresh", nil)), Reconnect},
		{fmt.Errorf("outer: %w", throttled), Throttled},
		{errors.New("mystery"), Retryable},
		{context.DeadlineExceeded, Retryable},
		{nil, 0},
	}
	for _, c := range cases {
		if got := ClassOf(c.err); got != c.want {
			t.Errorf("ClassOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if u, ok := ThrottledUntil(fmt.Errorf("x: %w", throttled)); !ok || !u.Equal(until) {
		t.Errorf("ThrottledUntil = %v %v", u, ok)
	}
	if !Is(New(AuthExpired, "call", nil), AuthExpired) || Is(nil, Retryable) {
		t.Error("Is")
	}
	e := &Error{Class: Permanent, Op: "upsert OneSpan_Event__c", Code: "INVALID_FIELD", Err: errors.New("no such column")}
	if e.Error() != "upsert OneSpan_Event__c: INVALID_FIELD: no such column" || Permanent.String() != "permanent" {
		t.Errorf("message %q", e.Error())
	}
}
