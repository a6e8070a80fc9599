package sfpush_test

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/countersign/countersign/internal/sandbox/pipeline"
	"github.com/countersign/countersign/internal/tracing"
)

func TestOneTraceFromCallbackToSalesforceAndOneSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	shutdown, err := tracing.Setup(t.Context(), "", "test", exp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(t.Context()) })

	r := newRig(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	acme.NewPackage(t, "pkg-traced")
	if err := acme.OS.Activate(t.Context(), "pkg-traced"); err != nil {
		t.Fatal(err)
	}
	// Let the two callbacks be stored before the worker starts, then send
	// the completion alone so it is a batch of its own.
	r.Start()
	r.Eventually(10*time.Second, "SENT", func() bool { return acme.Status("pkg-traced") == "SENT" })
	exp.Reset()
	if err := acme.OS.Complete(t.Context(), "pkg-traced"); err != nil {
		t.Fatal(err)
	}
	r.Eventually(10*time.Second, "files", func() bool { return len(acme.SF.ContentVersions()) == 3 })
	r.Stop()

	var callbackTrace trace.TraceID
	for _, s := range exp.GetSpans() {
		if s.Name == "POST /v1/callbacks/:tenant" {
			callbackTrace = s.SpanContext.TraceID()
		}
	}
	if !callbackTrace.IsValid() {
		t.Fatalf("no callback span among %d spans", len(exp.GetSpans()))
	}
	var batch, sfCall, osCall bool
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() != callbackTrace {
			continue
		}
		switch {
		case s.Name == "deliver batch":
			batch = true
		case strings.HasPrefix(s.Name, "HTTP ") || strings.HasPrefix(s.Name, "PATCH") || strings.HasPrefix(s.Name, "GET") || strings.HasPrefix(s.Name, "POST"):
			for _, a := range s.Attributes {
				v := a.Value.Emit()
				if strings.Contains(v, acme.SF.URL()[len("http://"):]) {
					sfCall = true
				}
				if strings.Contains(v, acme.OS.URL()[len("http://"):]) {
					osCall = true
				}
			}
		}
	}
	if !batch || !sfCall || !osCall {
		names := []string{}
		for _, s := range exp.GetSpans() {
			names = append(names, s.Name)
		}
		t.Errorf("trace %s: batch %v, salesforce call %v, onespan call %v; spans: %v", callbackTrace, batch, sfCall, osCall, names)
	}
}
