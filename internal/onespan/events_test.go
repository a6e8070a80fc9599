package onespan_test

import (
	"slices"
	"testing"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/onespan"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
)

// The onespan copy of the event list exists only to avoid a dependency race
// between packages; this keeps the three copies from drifting apart.
func TestEventListsAgree(t *testing.T) {
	want := slices.Sorted(slices.Values(callback.Names))
	for name, got := range map[string][]string{"onespan.AllEvents": onespan.AllEvents, "ossandbox.Events": ossandbox.Events} {
		if s := slices.Sorted(slices.Values(got)); !slices.Equal(s, want) {
			t.Errorf("%s = %v\nwant callback.Names = %v", name, s, want)
		}
	}
	if onespan.ConsentDocumentID != callback.ConsentDocumentID || ossandbox.ConsentDocumentID != callback.ConsentDocumentID {
		t.Error("consent document ids differ")
	}
}
