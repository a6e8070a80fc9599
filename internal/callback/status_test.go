package callback

import "testing"

func TestEventForStatusInvertsTheStatusTable(t *testing.T) {
	for _, status := range []string{StatusDraft, StatusSent, StatusCompleted, StatusDeclined, StatusOptedOut,
		StatusExpired, StatusArchived, StatusTrashed, StatusDeleted} {
		name, ok := EventForStatus(status)
		if !ok {
			t.Errorf("no event for %s", status)
			continue
		}
		if eff, s := StatusFor(name); eff != SetStatus || s != status {
			t.Errorf("EventForStatus(%s) = %s, which sets %q", status, name, s)
		}
	}
	if name, _ := EventForStatus(StatusDraft); name != PackageCreate {
		t.Errorf("DRAFT -> %s, want %s", name, PackageCreate)
	}
	if _, ok := EventForStatus("NO_SUCH_STATUS"); ok {
		t.Error("an unknown status has an event")
	}
}
