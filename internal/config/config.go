// Package config loads the listener's YAML configuration (ARCHITECTURE §8):
// ${VAR} expansion, defaults in one place, unknown keys rejected, and a
// Validate that reports every problem at once with its key path.
package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file.
type Config struct {
	Server    Server             `yaml:"server"`
	Metrics   Metrics            `yaml:"metrics"`
	NATS      NATS               `yaml:"nats"`
	Queue     Queue              `yaml:"queue"`
	Secrets   Secrets            `yaml:"secrets"`
	Admin     Admin              `yaml:"admin"`
	Worker    Worker             `yaml:"worker"`
	Reconcile Reconcile          `yaml:"reconcile"`
	Tracing   Tracing            `yaml:"tracing"`
	Tenants   map[string]*Tenant `yaml:"tenants"`

	// UnsetVars lists the ${VAR}s that were referenced but not set.
	UnsetVars []string `yaml:"-"`
}

// Server is the public HTTP listener (callbacks, OAuth, admin).
type Server struct {
	Addr           string   `yaml:"addr"`
	PublicURL      string   `yaml:"public_url"`
	MaxBodyBytes   int64    `yaml:"max_body_bytes"`
	TrustedProxies []string `yaml:"trusted_proxies"` // CIDRs whose X-Forwarded-For is believed
}

// Metrics is the separate Prometheus listener.
type Metrics struct {
	Addr string `yaml:"addr"`
}

// NATS says whether to embed a server (URL empty) or connect to a cluster.
type NATS struct {
	URL        string `yaml:"url"`
	StoreDir   string `yaml:"store_dir"`
	Listen     string `yaml:"listen"`
	Replicas   int    `yaml:"replicas"`
	SyncAlways bool   `yaml:"sync_always"`
}

// Embedded reports whether the listener runs its own NATS server.
func (n NATS) Embedded() bool { return n.URL == "" }

// Queue sets the CALLBACKS stream limits.
type Queue struct {
	Retention       Duration `yaml:"retention"`
	DuplicateWindow Duration `yaml:"duplicate_window"`
}

// Secrets are the keys that seal tokens at rest; the first seals, all open.
type Secrets struct {
	Keys []string `yaml:"keys" secret:"true"`
}

// Admin holds the bearer tokens of the admin API and page.
type Admin struct {
	Tokens []string `yaml:"tokens" secret:"true"`
}

// Worker tunes the delivery worker.
type Worker struct {
	Concurrency int        `yaml:"concurrency"`
	BatchSize   int        `yaml:"batch_size"`
	MaxDeliver  int        `yaml:"max_deliver"`
	AckWait     Duration   `yaml:"ack_wait"`
	Backoff     []Duration `yaml:"backoff"`
	// MaxAPIUsage pauses a tenant while its Salesforce API usage
	// (Sforce-Limit-Info used/limit) is at or above this ratio.
	MaxAPIUsage float64 `yaml:"max_api_usage"`
}

// Reconcile tunes the periodic comparison with OneSpan.
type Reconcile struct {
	Interval Duration `yaml:"interval"`
	Lookback Duration `yaml:"lookback"`
}

// Tracing configures OpenTelemetry export (off when the endpoint is empty).
type Tracing struct {
	OTLPEndpoint string `yaml:"otlp_endpoint"`
}

// Tenant is one OneSpan account paired with one Salesforce org.
type Tenant struct {
	CallbackKeys    []string         `yaml:"callback_keys" secret:"true"`
	CallbackClients []CallbackClient `yaml:"callback_clients"`
	OneSpan         OneSpan          `yaml:"onespan"`
	Salesforce      Salesforce       `yaml:"salesforce"`
	Documents       Documents        `yaml:"documents"`
}

// CallbackClient is an OAuth2 client-credentials identity OneSpan may use
// instead of a callback key.
type CallbackClient struct {
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret" secret:"true"`
}

// OneSpan is the tenant's OneSpan Sign account.
type OneSpan struct {
	BaseURL        string    `yaml:"base_url"`
	APIKey         string    `yaml:"api_key" secret:"true"`
	ClientApp      ClientApp `yaml:"client_app"`
	CallbackEvents []string  `yaml:"callback_events"`
}

// ClientApp is OneSpan's recommended alternative to an API key.
type ClientApp struct {
	ClientID string `yaml:"client_id"`
	Secret   string `yaml:"secret" secret:"true"`
}

// Set reports whether any part of the client app is configured.
func (c ClientApp) Set() bool { return c.ClientID != "" || c.Secret != "" }

// Salesforce is the tenant's connected app and org.
type Salesforce struct {
	LoginURL     string   `yaml:"login_url"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret" secret:"true"`
	APIVersion   string   `yaml:"api_version"`
	SessionTTL   Duration `yaml:"session_ttl"`
	RefreshToken string   `yaml:"refresh_token" secret:"true"`
	InstanceURL  string   `yaml:"instance_url"`
	Objects      Objects  `yaml:"objects"`
}

// Objects names the Salesforce objects and fields written (ARCHITECTURE §6).
type Objects struct {
	Transaction TransactionObject `yaml:"transaction"`
	Event       EventObject       `yaml:"event"`
	Document    DocumentObject    `yaml:"document"`
}

// TransactionObject is the per-package record.
type TransactionObject struct {
	Name        string `yaml:"name"`
	PackageID   string `yaml:"package_id"`
	Status      string `yaml:"status"`
	LastEvent   string `yaml:"last_event"`
	LastEventAt string `yaml:"last_event_at"`
	CompletedAt string `yaml:"completed_at"`
}

// EventObject is the per-callback log record.
type EventObject struct {
	Name        string `yaml:"name"`
	EventKey    string `yaml:"event_key"`
	Transaction string `yaml:"transaction"` // relationship name, set through the transaction's package id
	EventName   string `yaml:"event_name"`
	OccurredAt  string `yaml:"occurred_at"`
	SessionUser string `yaml:"session_user"`
	DocumentID  string `yaml:"document_id"`
	Message     string `yaml:"message"`
}

// DocumentObject is where signed PDFs go.
type DocumentObject struct {
	Name        string `yaml:"name"`
	DocumentKey string `yaml:"document_key"`
}

// Documents says which files to copy on completion. Both default to true,
// hence pointers: an absent key and an explicit false differ.
type Documents struct {
	Upload          *bool `yaml:"upload"`
	EvidenceSummary *bool `yaml:"evidence_summary"`
}

// UploadEnabled reports whether signed PDFs are copied to Salesforce.
func (d Documents) UploadEnabled() bool { return d.Upload == nil || *d.Upload }

// EvidenceEnabled reports whether the evidence summary is copied too.
func (d Documents) EvidenceEnabled() bool { return d.EvidenceSummary == nil || *d.EvidenceSummary }

// Duration is a time.Duration written as "90s" or "1h" in YAML.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 30s, 5m, 24h)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
