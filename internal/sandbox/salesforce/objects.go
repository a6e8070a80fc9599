package salesforce

// ObjectSpec declares one sObject of the emulated org.
type ObjectSpec struct {
	KeyPrefix   string
	ExternalIDs []string
}

// DefaultObjects declares the Countersign objects.
func DefaultObjects() map[string]ObjectSpec { return map[string]ObjectSpec{} }
