package onespan

// AllEvents are the callback event names OneSpan can send: the 21 of the Java
// SDK's NotificationEvent (wire values) plus COBROWSE_REQUEST from the docs.
// internal/callback owns the event type; this copy exists so registration did
// not wait on it, and should become an import of that list.
var AllEvents = []string{
	"PACKAGE_ACTIVATE", "PACKAGE_COMPLETE", "PACKAGE_EXPIRE", "PACKAGE_OPT_OUT",
	"PACKAGE_DECLINE", "SIGNER_COMPLETE", "DOCUMENT_SIGNED", "ROLE_REASSIGN",
	"PACKAGE_CREATE", "PACKAGE_DEACTIVATE", "PACKAGE_READY_FOR_COMPLETE", "PACKAGE_TRASH",
	"PACKAGE_RESTORE", "PACKAGE_DELETE", "KBA_FAILURE", "EMAIL_BOUNCE",
	"PACKAGE_ATTACHMENT", "SIGNER_LOCKED", "PACKAGE_ARCHIVE", "TEMPLATE_CREATE",
	"DOCUMENT_VIEWED", "COBROWSE_REQUEST",
}

// IsKnownEvent reports whether name is in AllEvents.
func IsKnownEvent(name string) bool {
	for _, e := range AllEvents {
		if e == name {
			return true
		}
	}
	return false
}
