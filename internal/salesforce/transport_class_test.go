package salesforce

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/countersign/countersign/internal/fault"
)

type failingTransport struct{ err error }

func (f failingTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// The auth transport says why it could not add a token; the client must not
// turn "the grant is gone" into "try again".
func TestTransportAndInstanceErrorsKeepTheirClass(t *testing.T) {
	ctx := context.Background()
	for _, class := range []fault.Class{fault.Reconnect, fault.Retryable, fault.Throttled} {
		c := New(Config{InstanceURL: "http://127.0.0.1:1", HTTPClient: &http.Client{
			Transport: failingTransport{fault.New(class, "tenant acme: token", errors.New("refused"))}}})
		_, err := c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", "p", map[string]any{"Status__c": "SENT"})
		if got := fault.ClassOf(err); got != class {
			t.Errorf("transport %v: client error class %v (%v)", class, got, err)
		}
		c = New(Config{InstanceURLSource: func(context.Context) (string, error) {
			return "", fault.New(class, "tenant acme: token", errors.New("refused"))
		}})
		_, err = c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", "p", map[string]any{"Status__c": "SENT"})
		if got := fault.ClassOf(err); got != class {
			t.Errorf("instance source %v: client error class %v (%v)", class, got, err)
		}
	}
	// A plain network failure is transient.
	c := New(Config{InstanceURL: "http://127.0.0.1:1", HTTPClient: &http.Client{Transport: failingTransport{errors.New("connection refused")}}})
	_, err := c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", "p", map[string]any{"Status__c": "SENT"})
	if fault.ClassOf(err) != fault.Retryable {
		t.Errorf("network error class %v", fault.ClassOf(err))
	}
}
