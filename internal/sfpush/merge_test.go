package sfpush

import (
	"testing"
	"time"

	"github.com/countersign/countersign/internal/callback"
)

func permutations(names []string) [][]string {
	if len(names) <= 1 {
		return [][]string{names}
	}
	var out [][]string
	for i := range names {
		rest := append(append([]string{}, names[:i]...), names[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{names[i]}, p...))
		}
	}
	return out
}

// OneSpan stamps events in milliseconds and a completion often shares its
// millisecond with the signatures before it: whatever order such events
// arrive in, one at a time, the transaction ends in the same state.
func TestMergeOfSameMillisecondEventsDoesNotDependOnArrivalOrder(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 544e6, time.UTC)
	names := []string{callback.PackageCreate, callback.PackageActivate, callback.DocumentSigned, callback.SignerComplete, callback.PackageComplete}
	for _, order := range permutations(names) {
		var st PackageState
		for _, name := range order {
			merge(&st, []*item{{ev: &callback.Event{Name: name, PackageID: "p", Created: at}}})
		}
		if st.Status != callback.StatusCompleted || st.LastEvent != callback.PackageComplete || !st.CompletedAt.Equal(at) {
			t.Fatalf("order %v: status %s, last event %s, completed %v", order, st.Status, st.LastEvent, st.CompletedAt)
		}
	}
	// An older event still never moves the status back, whatever its stage.
	st := PackageState{Status: callback.StatusSent, StatusAt: at, LastEvent: callback.PackageActivate, LastEventAt: at}
	merge(&st, []*item{{ev: &callback.Event{Name: callback.PackageComplete, Created: at.Add(-time.Millisecond)}}})
	if st.Status != callback.StatusSent {
		t.Errorf("an older completion applied: %s", st.Status)
	}
}
