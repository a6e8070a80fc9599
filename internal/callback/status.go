package callback

// Transaction statuses written to Status__c (ARCHITECTURE §6).
const (
	StatusDraft     = "DRAFT"
	StatusSent      = "SENT"
	StatusCompleted = "COMPLETED"
	StatusDeclined  = "DECLINED"
	StatusOptedOut  = "OPTED_OUT"
	StatusExpired   = "EXPIRED"
	StatusArchived  = "ARCHIVED"
	StatusTrashed   = "TRASHED"
	StatusDeleted   = "DELETED"
)

// Effect is what an event does to its transaction's status.
type Effect int

const (
	// LogOnly records the event and leaves the status alone.
	LogOnly Effect = iota
	// SetStatus sets the status in the table.
	SetStatus
	// Reread asks OneSpan for the package's current status.
	Reread
)

// statusTable is the one place that maps events to statuses.
var statusTable = map[string]string{
	PackageCreate:     StatusDraft,
	PackageDeactivate: StatusDraft,
	PackageActivate:   StatusSent,
	PackageComplete:   StatusCompleted,
	PackageDecline:    StatusDeclined,
	PackageOptOut:     StatusOptedOut,
	PackageExpire:     StatusExpired,
	PackageArchive:    StatusArchived,
	PackageTrash:      StatusTrashed,
	PackageDelete:     StatusDeleted,
}

// StatusFor says what the event does to the status and, for SetStatus, which.
func StatusFor(name string) (Effect, string) {
	if name == PackageRestore {
		return Reread, ""
	}
	if s, ok := statusTable[name]; ok {
		return SetStatus, s
	}
	return LogOnly, ""
}

// EventForStatus is the event that moves a transaction to status: the
// inverse of the status table, for events synthesized by reconciliation.
// DRAFT answers PACKAGE_CREATE (PACKAGE_DEACTIVATE also leads there).
func EventForStatus(status string) (string, bool) {
	if status == StatusDraft {
		return PackageCreate, true
	}
	for name, s := range statusTable {
		if s == status {
			return name, true
		}
	}
	return "", false
}
