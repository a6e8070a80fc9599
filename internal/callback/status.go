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

// statusRank orders statuses along a package's life. It only breaks ties
// between events with the same createdDate (OneSpan stamps in milliseconds,
// and a completion often shares its millisecond with the last signature):
// the later stage wins, whatever order the events arrive in.
var statusRank = map[string]int{
	StatusDraft:     0,
	StatusSent:      1,
	StatusCompleted: 2,
	StatusDeclined:  2,
	StatusOptedOut:  2,
	StatusExpired:   2,
	StatusArchived:  3,
	StatusTrashed:   4,
	StatusDeleted:   5,
}

// StatusRank is the stage of status in a package's life (unknown: 1, like SENT).
func StatusRank(status string) int {
	if r, ok := statusRank[status]; ok {
		return r
	}
	return statusRank[StatusSent]
}

// EventRank is the stage an event belongs to: its status's rank for a
// status event, the SENT stage for the others (signing, viewing...).
func EventRank(name string) int {
	if eff, s := StatusFor(name); eff == SetStatus {
		return StatusRank(s)
	}
	return StatusRank(StatusSent)
}
