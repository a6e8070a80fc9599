package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const fakeKey = "Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE=" // 32 bytes, test only

const minimal = `
secrets: { keys: ["${SECRET_KEY}"] }
admin: { tokens: ["fake-admin-token-0123456789"] }
tenants:
  acme:
    callback_keys: ["${ACME_KEY}", "fake-old-callback-key"]
    onespan: { api_key: "${ACME_OSS_KEY:-fake-onespan-key}" }
    salesforce: { client_id: "fake-client-id", client_secret: "fake-client-secret" }
`

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseAppliesDefaultsAndExpandsEnv(t *testing.T) {
	if _, err := Parse([]byte(minimal), env(map[string]string{
		"SECRET_KEY": fakeKey,
		"ACME_KEY":   "fake: key # with yaml syntax",
	})); err == nil {
		t.Fatal("a callback key with whitespace must be refused")
	}
	cfg, err := Parse([]byte(minimal), env(map[string]string{"SECRET_KEY": fakeKey, "ACME_KEY": "fake:key#not-a-comment"}))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	acme := cfg.Tenants["acme"]
	if got := acme.CallbackKeys[0]; got != "fake:key#not-a-comment" {
		t.Errorf("expanded key = %q", got)
	}
	if acme.OneSpan.APIKey != "fake-onespan-key" {
		t.Errorf("default from ${VAR:-d} = %q", acme.OneSpan.APIKey)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"server.addr", cfg.Server.Addr, ":8080"},
		{"server.max_body_bytes", cfg.Server.MaxBodyBytes, int64(262144)},
		{"metrics.addr", cfg.Metrics.Addr, ":9090"},
		{"nats.store_dir", cfg.NATS.StoreDir, "data/nats"},
		{"nats.sync_always", cfg.NATS.SyncAlways, true},
		{"queue.retention", cfg.Queue.Retention.D(), 720 * time.Hour},
		{"queue.duplicate_window", cfg.Queue.DuplicateWindow.D(), 24 * time.Hour},
		{"worker.backoff", len(cfg.Worker.Backoff), 6},
		{"worker.ack_wait", cfg.Worker.AckWait.D(), time.Minute},
		{"onespan.base_url", acme.OneSpan.BaseURL, "https://apps.esignlive.com"},
		{"salesforce.login_url", acme.Salesforce.LoginURL, "https://login.salesforce.com"},
		{"salesforce.api_version", acme.Salesforce.APIVersion, "v62.0"},
		{"salesforce.session_ttl", acme.Salesforce.SessionTTL.D(), time.Hour},
		{"objects.transaction", acme.Salesforce.Objects.Transaction.Name, "OneSpan_Transaction__c"},
		{"documents.upload", acme.Documents.UploadEnabled(), true},
		{"documents.evidence_summary", acme.Documents.EvidenceEnabled(), true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestExpandTypedValuesAndExplicitFalse(t *testing.T) {
	doc := minimal + `
server: { max_body_bytes: "${MAX:-1024}" }
nats: { sync_always: false }
`
	doc = strings.Replace(doc, "    onespan:", "    documents: { upload: false }\n    onespan:", 1)
	cfg, err := Parse([]byte(doc), env(map[string]string{"SECRET_KEY": fakeKey, "ACME_KEY": "fake-callback-key"}))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if cfg.Server.MaxBodyBytes != 1024 {
		t.Errorf("max_body_bytes = %d, want 1024 from the default", cfg.Server.MaxBodyBytes)
	}
	if cfg.NATS.SyncAlways {
		t.Error("explicit sync_always: false was overridden by the default")
	}
	if cfg.Tenants["acme"].Documents.UploadEnabled() {
		t.Error("explicit documents.upload: false was overridden by the default")
	}
}

func TestUnsetVariablesAreReported(t *testing.T) {
	_, err := Parse([]byte(minimal), env(nil))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a ValidationError, got %v", err)
	}
	joined := strings.Join(ve.Problems, "\n")
	for _, want := range []string{"secrets.keys[0]: empty", "tenants.acme.callback_keys[0]: empty"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems miss %q:\n%s", want, joined)
		}
	}
	cfg, _ := decode([]byte(minimal), env(nil))
	if strings.Join(cfg.UnsetVars, ",") != "SECRET_KEY,ACME_KEY" {
		t.Errorf("UnsetVars = %v", cfg.UnsetVars)
	}
}

func TestValidateReportsEveryProblemWithItsPath(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown top-level key", minimal + "sever: {}\n", []string{"field sever not found"}},
		{"unknown nested key", strings.Replace(minimal, "client_id: \"fake-client-id\"", "client_id: \"x\", clientsecret: \"y\"", 1), []string{"field clientsecret not found"}},
		{"bad tenant id and missing salesforce", `
secrets: { keys: ["` + fakeKey + `"] }
admin: { tokens: ["fake-admin-token-0123456789"] }
tenants:
  Acme!:
    callback_keys: ["fake-callback-key"]
    onespan: { api_key: "fake" }
`, []string{"tenants.Acme!: tenant id must match", "tenants.Acme!.salesforce.client_id: required", "tenants.Acme!.salesforce.client_secret: required"}},
		{"both onespan auths", strings.Replace(minimal, `onespan: { api_key: "${ACME_OSS_KEY:-fake-onespan-key}" }`,
			`onespan: { api_key: "fake-key", client_app: { client_id: "c", secret: "fake-secret" } }`, 1),
			[]string{"tenants.acme.onespan: set either api_key or client_app, not both"}},
		{"neither onespan auth", strings.Replace(minimal, `onespan: { api_key: "${ACME_OSS_KEY:-fake-onespan-key}" }`, `onespan: {}`, 1),
			[]string{"tenants.acme.onespan: set api_key or client_app"}},
		{"many at once", minimal + `
server: { public_url: "localhost:8080", max_body_bytes: 0, trusted_proxies: ["10.0.0.0/33"] }
metrics: { addr: ":8080" }
nats: { replicas: 3 }
queue: { retention: "1h", duplicate_window: "2h" }
worker: { batch_size: 500, max_deliver: 2, ack_wait: "10ms", backoff: ["1s", "2s", "3s"], max_api_usage: 1.5 }
`, []string{
			"server.public_url:", "server.max_body_bytes:", "server.trusted_proxies[0]:",
			"metrics.addr: must differ", "nats.replicas: must be 1 with the embedded server",
			"queue.duplicate_window: must not exceed", "worker.batch_size:", "worker.backoff: has 3 steps",
			"worker.ack_wait:", "worker.max_api_usage:",
		}},
		{"bad duration", minimal + "queue: { retention: \"30 days\" }\n", []string{`"30 days" is not a duration`}},
		{"cluster url", minimal + "nats: { url: \"nats://a:4222,nats://b:4222\", replicas: 3 }\n", nil},
	}
	vars := env(map[string]string{"SECRET_KEY": fakeKey, "ACME_KEY": "fake-callback-key"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), vars)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error misses %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestMaskedHidesEverySecret(t *testing.T) {
	doc := strings.Replace(minimal, "    onespan:", `    callback_clients: [{ client_id: "oss", client_secret: "fake-client-credential-secret" }]
    onespan:`, 1)
	doc = strings.Replace(doc, `client_secret: "fake-client-secret" }`, `client_secret: "fake-client-secret", refresh_token: "fake-refresh-token" }`, 1)
	cfg, err := Parse([]byte(doc), env(map[string]string{"SECRET_KEY": fakeKey, "ACME_KEY": "fake-callback-key"}))
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Masked().YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{fakeKey, "fake-callback-key", "fake-old-callback-key", "fake-admin-token-0123456789",
		"fake-onespan-key", "fake-client-secret", "fake-refresh-token", "fake-client-credential-secret"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("masked output contains %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "fake-client-id") {
		t.Error("non-secret client_id should be shown")
	}
	if cfg.Tenants["acme"].CallbackKeys[0] != "fake-callback-key" {
		t.Error("Masked modified the original")
	}
}
