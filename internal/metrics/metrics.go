// Package metrics defines every Countersign metric (ARCHITECTURE §9) in one
// place, registered on an injected registry so tests build their own.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Outcome label values, pre-initialized per tenant so rate() alerts work from
// the first scrape.
var (
	IngestOutcomes  = []string{"accepted", "duplicate", "unauthorized", "invalid", "too_large", "unavailable", "rate_limited"}
	ProcessOutcomes = []string{"delivered", "retried", "dead_lettered"}
	RefreshOutcomes = []string{"success", "invalid_grant", "error"}
	OtherEvent      = "OTHER" // event label for names outside the known set
	UnknownTenant   = "_unknown"
)

// Metrics holds the collectors. Fields are safe for concurrent use.
type Metrics struct {
	CallbacksReceived  *prometheus.CounterVec
	CallbackIngest     *prometheus.HistogramVec
	EventsProcessed    *prometheus.CounterVec
	EventDelivery      *prometheus.HistogramVec
	SalesforceRequests *prometheus.CounterVec
	SalesforceAPIUsage *prometheus.GaugeVec
	TokenRefreshes     *prometheus.CounterVec
	TenantConnected    *prometheus.GaugeVec
	QueuePending       *prometheus.GaugeVec
	DeadLetters        *prometheus.GaugeVec
	DocumentsUploaded  *prometheus.CounterVec
	DocumentBytes      *prometheus.CounterVec
	ReconciledEvents   *prometheus.CounterVec
}

// New creates the metrics on reg. A nil reg creates unregistered metrics.
func New(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		CallbacksReceived: f.NewCounterVec(prometheus.CounterOpts{
			Name: "countersign_callbacks_received_total",
			Help: "OneSpan callbacks received, by outcome.",
		}, []string{"tenant", "event", "outcome"}),
		CallbackIngest: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "countersign_callback_ingest_seconds",
			Help:    "Time from request start to answer for accepted callbacks, including the JetStream PubAck.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"tenant"}),
		EventsProcessed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "countersign_events_processed_total",
			Help: "Events handled by the worker, by outcome.",
		}, []string{"tenant", "event", "outcome"}),
		EventDelivery: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "countersign_event_delivery_seconds",
			Help:    "Time from callback received to committed in Salesforce.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"tenant"}),
		SalesforceRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "countersign_salesforce_requests_total",
			Help: "Salesforce API requests, by operation and HTTP status.",
		}, []string{"tenant", "operation", "status"}),
		SalesforceAPIUsage: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "countersign_salesforce_api_usage_ratio",
			Help: "Used/limit from the last Sforce-Limit-Info header.",
		}, []string{"tenant"}),
		TokenRefreshes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "countersign_token_refreshes_total",
			Help: "Salesforce token refreshes, by outcome.",
		}, []string{"tenant", "outcome"}),
		TenantConnected: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "countersign_tenant_connected",
			Help: "1 when the tenant has a working Salesforce connection.",
		}, []string{"tenant"}),
		QueuePending: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "countersign_queue_pending_messages",
			Help: "Messages waiting for the tenant's worker consumer.",
		}, []string{"tenant"}),
		DeadLetters: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "countersign_deadletter_messages",
			Help: "Messages in the DEADLETTER stream for the tenant.",
		}, []string{"tenant"}),
		DocumentsUploaded: f.NewCounterVec(prometheus.CounterOpts{
			Name: "countersign_documents_uploaded_total",
			Help: "Signed documents and evidence summaries uploaded to Salesforce.",
		}, []string{"tenant"}),
		DocumentBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "countersign_document_bytes_total",
			Help: "Bytes of documents uploaded to Salesforce.",
		}, []string{"tenant"}),
		ReconciledEvents: f.NewCounterVec(prometheus.CounterOpts{
			Name: "countersign_reconciled_events_total",
			Help: "Events synthesized by reconciliation with OneSpan.",
		}, []string{"tenant"}),
	}
}

// InitTenant creates all of a tenant's series (ingest and delivery).
func (m *Metrics) InitTenant(tenant string, events []string) {
	m.InitIngest(tenant, events)
	m.InitDelivery(tenant, events)
}

// InitIngest creates the ingest series of a tenant at zero, so alerts on
// rate() work from the first scrape. events are the event label values.
func (m *Metrics) InitIngest(tenant string, events []string) {
	for _, ev := range events {
		for _, o := range IngestOutcomes {
			m.CallbacksReceived.WithLabelValues(tenant, ev, o)
		}
	}
	m.CallbackIngest.WithLabelValues(tenant)
}

// InitDelivery creates the worker, token and queue series of a tenant. It is
// separate from InitIngest so that an ingest-only process does not export a
// tenant_connected of 0 it knows nothing about.
func (m *Metrics) InitDelivery(tenant string, events []string) {
	for _, ev := range events {
		for _, o := range ProcessOutcomes {
			m.EventsProcessed.WithLabelValues(tenant, ev, o)
		}
	}
	m.EventDelivery.WithLabelValues(tenant)
	for _, o := range RefreshOutcomes {
		m.TokenRefreshes.WithLabelValues(tenant, o)
	}
	m.SalesforceAPIUsage.WithLabelValues(tenant)
	m.TenantConnected.WithLabelValues(tenant)
	m.QueuePending.WithLabelValues(tenant)
	m.DeadLetters.WithLabelValues(tenant)
	m.DocumentsUploaded.WithLabelValues(tenant)
	m.DocumentBytes.WithLabelValues(tenant)
	m.ReconciledEvents.WithLabelValues(tenant)
}
