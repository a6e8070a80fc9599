package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `make demo`'s program against a freshly built listener: what
// the demo prints is what Salesforce (the emulator) holds.
func TestDemo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "listener")
	if out, err := exec.Command("go", "build", "-o", bin, "../listener").CombinedOutput(); err != nil {
		t.Fatalf("build listener: %v\n%s", err, out)
	}
	var out bytes.Buffer
	start := time.Now()
	if err := run(t.Context(), options{listener: bin, timeout: 60 * time.Second}, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"all 22 callbacks delivered",
		"Kq3vT1m0cW_employment-2GiQ=  COMPLETED  PACKAGE_COMPLETE",
		"Zt5bH7w9Qe_supplier-0xPo=    DECLINED   PACKAGE_DECLINE",
		"Rf2kM6n1Ua_lease-5sWe=       EXPIRED    PACKAGE_EXPIRE",
		"Hy7cD3s8Vb_quote-9kLm=       SENT       DOCUMENT_SIGNED",
		`Message__c = "Payment terms must be net 60"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if n := strings.Count(s, "  yes\n"); n != 5 {
		t.Errorf("%d files match what OneSpan served, want 5", n)
	}
	if t.Failed() {
		t.Logf("output:\n%s", s)
	}
	t.Logf("demo took %s", time.Since(start).Round(time.Millisecond))
}
