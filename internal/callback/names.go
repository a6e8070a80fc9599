package callback

// Event names as OneSpan sends them (SDK NotificationEvent plus the documented
// COBROWSE_REQUEST). Unknown names are accepted and logged as events.
const (
	PackageActivate         = "PACKAGE_ACTIVATE"
	PackageComplete         = "PACKAGE_COMPLETE"
	PackageExpire           = "PACKAGE_EXPIRE"
	PackageOptOut           = "PACKAGE_OPT_OUT"
	PackageDecline          = "PACKAGE_DECLINE"
	SignerComplete          = "SIGNER_COMPLETE"
	DocumentSigned          = "DOCUMENT_SIGNED"
	RoleReassign            = "ROLE_REASSIGN"
	PackageCreate           = "PACKAGE_CREATE"
	PackageDeactivate       = "PACKAGE_DEACTIVATE"
	PackageReadyForComplete = "PACKAGE_READY_FOR_COMPLETE"
	PackageTrash            = "PACKAGE_TRASH"
	PackageRestore          = "PACKAGE_RESTORE"
	PackageDelete           = "PACKAGE_DELETE"
	KBAFailure              = "KBA_FAILURE"
	EmailBounce             = "EMAIL_BOUNCE"
	PackageAttachment       = "PACKAGE_ATTACHMENT"
	SignerLocked            = "SIGNER_LOCKED"
	PackageArchive          = "PACKAGE_ARCHIVE"
	TemplateCreate          = "TEMPLATE_CREATE"
	DocumentViewed          = "DOCUMENT_VIEWED"
	CobrowseRequest         = "COBROWSE_REQUEST"

	// Other is the subject token and metric label for names outside the list.
	Other = "OTHER"
)

// Names lists every known event name.
var Names = []string{
	PackageActivate, PackageComplete, PackageExpire, PackageOptOut, PackageDecline,
	SignerComplete, DocumentSigned, RoleReassign, PackageCreate, PackageDeactivate,
	PackageReadyForComplete, PackageTrash, PackageRestore, PackageDelete, KBAFailure,
	EmailBounce, PackageAttachment, SignerLocked, PackageArchive, TemplateCreate,
	DocumentViewed, CobrowseRequest,
}

var known = func() map[string]bool {
	m := make(map[string]bool, len(Names))
	for _, n := range Names {
		m[n] = true
	}
	return m
}()

// Known reports whether name is a documented OneSpan event.
func Known(name string) bool { return known[name] }

// Label is the metric label for an event name: bounded cardinality, so
// unknown names become OTHER.
func Label(name string) string {
	if known[name] {
		return name
	}
	return Other
}

// ConsentDocumentID is the id OneSpan gives the consent document, whose
// DOCUMENT_SIGNED event must not be treated as a signed contract.
const ConsentDocumentID = "default-consent"
