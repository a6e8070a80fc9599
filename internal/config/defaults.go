package config

import "time"

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		Server:  Server{Addr: ":8080", PublicURL: "http://localhost:8080", MaxBodyBytes: 256 << 10},
		Metrics: Metrics{Addr: ":9090"},
		NATS:    NATS{StoreDir: "data/nats", Replicas: 1, SyncAlways: true},
		Queue: Queue{
			Retention:       Duration(720 * time.Hour),
			DuplicateWindow: Duration(24 * time.Hour),
		},
		Worker: Worker{
			Concurrency: 16, BatchSize: 200, MaxDeliver: 20, MaxAPIUsage: 0.9,
			AckWait: Duration(60 * time.Second),
			Backoff: []Duration{
				Duration(time.Second), Duration(5 * time.Second), Duration(30 * time.Second),
				Duration(2 * time.Minute), Duration(10 * time.Minute), Duration(30 * time.Minute),
			},
		},
		Reconcile: Reconcile{Interval: Duration(time.Hour), Lookback: Duration(48 * time.Hour)},
	}
}

// ApplyTenantDefaults fills what a tenant block leaves out; a tenant is
// decoded into a fresh value, so its defaults cannot be pre-filled.
func ApplyTenantDefaults(t *Tenant) {
	setDefault(&t.OneSpan.BaseURL, "https://apps.esignlive.com")
	sf := &t.Salesforce
	setDefault(&sf.LoginURL, "https://login.salesforce.com")
	setDefault(&sf.APIVersion, "v62.0")
	if sf.SessionTTL == 0 {
		sf.SessionTTL = Duration(time.Hour)
	}
	o := &sf.Objects
	setDefault(&o.Transaction.Name, "OneSpan_Transaction__c")
	setDefault(&o.Transaction.PackageID, "Package_Id__c")
	setDefault(&o.Transaction.Status, "Status__c")
	setDefault(&o.Transaction.LastEvent, "Last_Event__c")
	setDefault(&o.Transaction.LastEventAt, "Last_Event_At__c")
	setDefault(&o.Transaction.CompletedAt, "Completed_At__c")
	setDefault(&o.Event.Name, "OneSpan_Event__c")
	setDefault(&o.Event.EventKey, "Event_Key__c")
	setDefault(&o.Event.Transaction, "Transaction__r")
	setDefault(&o.Event.EventName, "Event_Name__c")
	setDefault(&o.Event.OccurredAt, "Occurred_At__c")
	setDefault(&o.Event.SessionUser, "Session_User__c")
	setDefault(&o.Event.DocumentID, "Document_Id__c")
	setDefault(&o.Event.Message, "Message__c")
	setDefault(&o.Document.Name, "ContentVersion")
	setDefault(&o.Document.DocumentKey, "OneSpan_Document_Key__c")
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}
