package salesforce

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/fault"
)

// observed records Observer calls.
type observed struct {
	mu    sync.Mutex
	calls []observation
}

type observation struct {
	op     string
	status int
	limit  LimitInfo
}

func (o *observed) observe(op string, status int, limit LimitInfo, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, observation{op, status, limit})
}

func (o *observed) list() []observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]observation(nil), o.calls...)
}

// deadURL returns the URL of a loopback port that nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func TestBadInputsFailPermanentBeforeAnyCall(t *testing.T) {
	obs := &observed{}
	c := New(Config{InstanceURL: deadURL(t), Observer: obs.observe})
	ctx := context.Background()
	tooMany := make([]map[string]any, MaxCollectionRecords+1)
	for i := range tooMany {
		tooMany[i] = map[string]any{"Event_Key__c": i}
	}
	checks := map[string]error{}
	_, checks["201 records"] = c.UpsertCollection(ctx, "OneSpan_Event__c", "Event_Key__c", tooMany, false)
	_, checks["object with a slash"] = c.Upsert(ctx, "Account/001", "Ext__c", "v", nil)
	_, checks["field with a dot"] = c.Upsert(ctx, "Account", "Ext__c.x", "v", nil)
	_, checks["empty value"] = c.Upsert(ctx, "Account", "Ext__c", "", nil)
	_, checks["dot-dot value"] = c.Upsert(ctx, "Account", "Ext__c", "..", nil)
	_, checks["ext field in body"] = c.Upsert(ctx, "Account", "Ext__c", "v", map[string]any{"ext__c": "v"})
	_, checks["id in body"] = c.Upsert(ctx, "Account", "Ext__c", "v", map[string]any{"Id": "001"})
	checks["query into a non-slice"] = c.Query(ctx, "SELECT Id FROM Account", &struct{}{})
	_, _, checks["bad key field"] = c.FindContentVersion(ctx, "Key__c = 'x' OR Id", "k")
	_, checks["no file name"] = c.InsertContentVersion(ctx, nil, "", strings.NewReader("x"))
	for name, err := range checks {
		if !fault.Is(err, fault.Permanent) {
			t.Errorf("%s: got %v, want a permanent error", name, err)
		}
		if err != nil && err.Error() != strings.ToLower(err.Error()[:1])+err.Error()[1:] {
			t.Errorf("%s: message starts upper case: %q", name, err)
		}
	}
	if calls := obs.list(); len(calls) != 0 {
		t.Fatalf("bad inputs reached the network: %v", calls)
	}
	if res, err := c.UpsertCollection(ctx, "OneSpan_Event__c", "Event_Key__c", nil, false); err != nil || res != nil {
		t.Fatalf("empty collection = %v, %v; want no call", res, err)
	}
}

func TestConnectionFailureIsRetryableAndObserved(t *testing.T) {
	obs := &observed{}
	c := New(Config{InstanceURL: deadURL(t), Observer: obs.observe})
	_, err := c.Upsert(context.Background(), "OneSpan_Transaction__c", "Package_Id__c", "pkg-1", map[string]any{"Status__c": "SENT"})
	if !fault.Is(err, fault.Retryable) {
		t.Fatalf("got %v, want retryable", err)
	}
	if !strings.HasPrefix(err.Error(), "salesforce upsert OneSpan_Transaction__c Package_Id__c=pkg-1: ") {
		t.Fatalf("message = %q", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Fatalf("the network error is not wrapped: %v", err)
	}
	if calls := obs.list(); len(calls) != 1 || calls[0].op != OpUpsert || calls[0].status != 0 {
		t.Fatalf("observer calls = %v", calls)
	}
}

func TestMissingInstanceURLAsksForReconnect(t *testing.T) {
	c := New(Config{InstanceURLFunc: func() string { return "" }})
	err := c.Query(context.Background(), "SELECT Id FROM Account", &[]map[string]any{})
	if !fault.Is(err, fault.Reconnect) {
		t.Fatalf("got %v, want reconnect", err)
	}
}

func TestAPIVersionDefaults(t *testing.T) {
	for in, want := range map[string]string{"": "v62.0", "63.0": "v63.0", "v64.0": "v64.0"} {
		if got := New(Config{APIVersion: in}).APIVersion(); got != want {
			t.Errorf("APIVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEscapeSegment(t *testing.T) {
	for in, want := range map[string]string{
		"pkg-1_A":          "pkg-1_A",
		"a/b":              "a%2Fb",
		"x@y.inc":          "x@y%2Einc",
		"sp ace?#":         "sp%20ace%3F%23",
		"ZmFrZS1wYWNrYWdl": "ZmFrZS1wYWNrYWdl",
	} {
		if got := escapeSegment(in); got != want {
			t.Errorf("escapeSegment(%q) = %q, want %q", in, got, want)
		}
	}
}
