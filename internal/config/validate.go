package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// TenantIDPattern is the shape of a tenant id: it becomes a NATS subject
// token and a KV key, so nothing else is allowed.
var TenantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

var apiVersionPattern = regexp.MustCompile(`^v[0-9]+\.[0-9]$`)

// ValidationError lists every problem found, each prefixed with its key path.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

type problems []string

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, path+": "+fmt.Sprintf(format, args...))
}

// Validate reports every problem at once; nil means the config is usable.
func (c *Config) Validate() error {
	var p problems
	c.Server.validate(&p)
	if c.Metrics.Addr == "" {
		p.add("metrics.addr", "required")
	} else if c.Metrics.Addr == c.Server.Addr {
		p.add("metrics.addr", "must differ from server.addr")
	}
	c.NATS.validate(&p)
	c.Queue.validate(&p)
	validateKeys(&p, c.Secrets.Keys)
	if len(c.Admin.Tokens) == 0 {
		p.add("admin.tokens", "at least one token is required")
	}
	for i, t := range c.Admin.Tokens {
		if len(t) < 16 {
			p.add(fmt.Sprintf("admin.tokens[%d]", i), "must be at least 16 characters (is LISTENER_ADMIN_TOKEN set?)")
		}
	}
	c.Worker.validate(&p)
	if c.Reconcile.Interval < 0 {
		p.add("reconcile.interval", "must not be negative (0 turns reconciliation off)")
	}
	if c.Reconcile.Lookback <= 0 {
		p.add("reconcile.lookback", "must be positive")
	}
	if e := c.Tracing.OTLPEndpoint; e != "" && strings.Contains(e, "://") {
		validateURL(&p, "tracing.otlp_endpoint", e, false)
	}
	if len(c.Tenants) == 0 {
		p.add("tenants", "at least one tenant is required")
	}
	for _, id := range c.TenantIDs() {
		c.Tenants[id].validate(&p, "tenants."+id, id)
	}
	c.validateCallbackClientOwners(&p)
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// TenantIDs returns the tenant ids in a stable order.
func (c *Config) TenantIDs() []string {
	ids := make([]string, 0, len(c.Tenants))
	for id := range c.Tenants {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// validateCallbackClientOwners refuses a client id in two tenants: the token
// endpoint is shared, so the client id alone says which tenant a token is for.
func (c *Config) validateCallbackClientOwners(p *problems) {
	owner := map[string]string{}
	for _, id := range c.TenantIDs() {
		t := c.Tenants[id]
		if t == nil {
			continue
		}
		for i, cl := range t.CallbackClients {
			if cl.ClientID == "" {
				continue
			}
			if first, ok := owner[cl.ClientID]; ok && first != id {
				p.add(fmt.Sprintf("tenants.%s.callback_clients[%d].client_id", id, i),
					"%q is already a client of tenant %s (a client id may belong to one tenant only)", cl.ClientID, first)
				continue
			}
			owner[cl.ClientID] = id
		}
	}
}

func (s Server) validate(p *problems) {
	if s.Addr == "" {
		p.add("server.addr", "required")
	}
	validateURL(p, "server.public_url", s.PublicURL, true)
	if s.MaxBodyBytes <= 0 || s.MaxBodyBytes > 16<<20 {
		p.add("server.max_body_bytes", "must be between 1 and 16777216")
	}
	for i, cidr := range s.TrustedProxies {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			p.add(fmt.Sprintf("server.trusted_proxies[%d]", i), "%q is not a CIDR (e.g. 10.0.0.0/8)", cidr)
		}
	}
}

func (n NATS) validate(p *problems) {
	if n.Replicas < 1 || n.Replicas > 5 {
		p.add("nats.replicas", "must be between 1 and 5")
	}
	if n.Embedded() {
		if n.StoreDir == "" {
			p.add("nats.store_dir", "required when nats.url is empty (embedded server)")
		}
		if n.Replicas != 1 {
			p.add("nats.replicas", "must be 1 with the embedded server; set nats.url to use a cluster")
		}
		if n.Listen != "" {
			if _, _, err := net.SplitHostPort(n.Listen); err != nil {
				p.add("nats.listen", "%q is not host:port", n.Listen)
			}
		}
		return
	}
	for _, u := range strings.Split(n.URL, ",") {
		if parsed, err := url.Parse(strings.TrimSpace(u)); err != nil || parsed.Host == "" {
			p.add("nats.url", "%q is not a NATS URL (nats://host:4222, comma-separated for a cluster)", u)
		}
	}
	if n.Listen != "" {
		p.add("nats.listen", "only used by the embedded server; leave it empty with nats.url")
	}
}

func (q Queue) validate(p *problems) {
	if q.Retention <= 0 {
		p.add("queue.retention", "must be positive")
	}
	switch {
	case q.DuplicateWindow < Duration(100*time.Millisecond):
		p.add("queue.duplicate_window", "must be at least 100ms")
	case q.DuplicateWindow > q.Retention:
		p.add("queue.duplicate_window", "must not exceed queue.retention")
	}
}

func validateKeys(p *problems, keys []string) {
	if len(keys) == 0 {
		p.add("secrets.keys", "at least one key is required")
	}
	for i, k := range keys {
		path := fmt.Sprintf("secrets.keys[%d]", i)
		if k == "" {
			p.add(path, "empty (is LISTENER_SECRET_KEY set?)")
			continue
		}
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(b) != 32 {
			p.add(path, "must be 32 random bytes in base64 (openssl rand -base64 32)")
		}
	}
}

func (w Worker) validate(p *problems) {
	if w.Concurrency < 1 {
		p.add("worker.concurrency", "must be at least 1")
	}
	if w.BatchSize < 1 || w.BatchSize > 200 {
		p.add("worker.batch_size", "must be between 1 and 200 (a Salesforce collection holds 200 records)")
	}
	if w.MaxDeliver < 1 {
		p.add("worker.max_deliver", "must be at least 1")
	} else if len(w.Backoff) > w.MaxDeliver {
		p.add("worker.backoff", "has %d steps but worker.max_deliver is %d", len(w.Backoff), w.MaxDeliver)
	}
	if w.AckWait < Duration(time.Second) {
		p.add("worker.ack_wait", "must be at least 1s")
	}
	if len(w.Backoff) == 0 {
		p.add("worker.backoff", "at least one delay is required")
	}
	if w.MaxAPIUsage <= 0 || w.MaxAPIUsage > 1 {
		p.add("worker.max_api_usage", "must be a ratio above 0 and at most 1 (e.g. 0.9)")
	}
	for i, d := range w.Backoff {
		if d <= 0 {
			p.add(fmt.Sprintf("worker.backoff[%d]", i), "must be positive")
		}
	}
}

func (t *Tenant) validate(p *problems, path, id string) {
	if !TenantIDPattern.MatchString(id) {
		p.add(path, "tenant id must match %s", TenantIDPattern)
	}
	if t == nil {
		p.add(path, "empty tenant")
		return
	}
	if len(t.CallbackKeys) == 0 && len(t.CallbackClients) == 0 {
		p.add(path+".callback_keys", "at least one callback key (or callback client) is required")
	}
	for i, k := range t.CallbackKeys {
		kp := fmt.Sprintf("%s.callback_keys[%d]", path, i)
		switch {
		case k == "":
			p.add(kp, "empty (is its environment variable set?)")
		case len(k) < 8:
			p.add(kp, "must be at least 8 characters")
		case strings.ContainsAny(k, " \t\r\n"):
			p.add(kp, "must not contain whitespace (OneSpan sends it raw after \"Basic \")")
		}
	}
	for i, c := range t.CallbackClients {
		cp := fmt.Sprintf("%s.callback_clients[%d]", path, i)
		if c.ClientID == "" {
			p.add(cp+".client_id", "required")
		} else if strings.ContainsAny(c.ClientID, ": \t\r\n") {
			p.add(cp+".client_id", "must not contain ':' or whitespace (it travels in HTTP Basic)")
		}
		if len(c.ClientSecret) < 16 {
			p.add(cp+".client_secret", "must be at least 16 characters")
		}
	}
	os := t.OneSpan
	validateURL(p, path+".onespan.base_url", os.BaseURL, true)
	switch {
	case os.APIKey != "" && os.ClientApp.Set():
		p.add(path+".onespan", "set either api_key or client_app, not both")
	case os.APIKey == "" && !os.ClientApp.Set():
		p.add(path+".onespan", "set api_key or client_app (is its environment variable set?)")
	case os.ClientApp.Set():
		if os.ClientApp.ClientID == "" {
			p.add(path+".onespan.client_app.client_id", "required")
		}
		if os.ClientApp.Secret == "" {
			p.add(path+".onespan.client_app.secret", "required")
		}
	}
	for i, ev := range os.CallbackEvents {
		if ev == "" || strings.ToUpper(ev) != ev {
			p.add(fmt.Sprintf("%s.onespan.callback_events[%d]", path, i), "%q is not an event name (e.g. PACKAGE_COMPLETE)", ev)
		}
	}
	sf := t.Salesforce
	validateURL(p, path+".salesforce.login_url", sf.LoginURL, true)
	if sf.ClientID == "" {
		p.add(path+".salesforce.client_id", "required")
	}
	if sf.ClientSecret == "" {
		p.add(path+".salesforce.client_secret", "required")
	}
	if !apiVersionPattern.MatchString(sf.APIVersion) {
		p.add(path+".salesforce.api_version", "%q must look like v62.0", sf.APIVersion)
	}
	if sf.SessionTTL < Duration(time.Minute) {
		p.add(path+".salesforce.session_ttl", "must be at least 1m")
	}
	if sf.InstanceURL != "" {
		validateURL(p, path+".salesforce.instance_url", sf.InstanceURL, false)
	}
}

func validateURL(p *problems, path, raw string, required bool) {
	if raw == "" {
		if required {
			p.add(path, "required")
		}
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add(path, "%q must be an absolute http(s) URL", raw)
	}
}
