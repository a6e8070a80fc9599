package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
)

const testCallbackKey = "fake-callback-key-for-cmd-test"

// runOneSpan runs `listener --config FILE onespan args...` with a root that
// only has the persistent --config flag, like the real one.
func runOneSpan(t *testing.T, cfgPath string, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "listener", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().String("config", "", "config file")
	root.AddCommand(newOneSpanCmd())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--config", cfgPath, "onespan"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func writeConfig(t *testing.T, baseURL string) string {
	t.Helper()
	cfg := `
server: { public_url: "https://listener.example.com" }
secrets: { keys: ["Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE="] }
admin: { tokens: ["fake-admin-token-0123456789"] }
tenants:
  acme:
    callback_keys: ["` + testCallbackKey + `"]
    onespan:
      base_url: "` + baseURL + `"
      api_key: "fake-api-key"
      callback_events: ["PACKAGE_COMPLETE", "PACKAGE_DECLINE"]
    salesforce: { client_id: "fake-client-id", client_secret: "fake-client-secret" }
`
	p := filepath.Join(t.TempDir(), "listener.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOneSpanRegisterAndStatusCommands(t *testing.T) {
	sb := ossandbox.New(ossandbox.Options{APIKeys: []string{"fake-api-key"}})
	base, err := sb.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	cfg := writeConfig(t, base)

	out, err := runOneSpan(t, cfg, "status", "--tenant", "acme")
	if err == nil || !strings.Contains(out, "url:    (not set)") || !strings.Contains(out, "key:    not set") {
		t.Fatalf("status before: err %v\n%s", err, out)
	}

	out, err = runOneSpan(t, cfg, "register", "--tenant", "acme", "--dry-run")
	if err != nil || !strings.Contains(out, "dry run") || sb.CallbackPosts() != 0 {
		t.Fatalf("dry run: err %v posts %d\n%s", err, sb.CallbackPosts(), out)
	}

	out, err = runOneSpan(t, cfg, "register", "--tenant", "acme")
	if err != nil || !strings.Contains(out, "-> https://listener.example.com/v1/callbacks/acme") {
		t.Fatalf("register: %v\n%s", err, out)
	}
	if url, key, events := sb.Callback(); url != "https://listener.example.com/v1/callbacks/acme" || key != testCallbackKey || len(events) != 2 {
		t.Fatalf("registered %s key ok %v events %v", url, key == testCallbackKey, events)
	}

	out, err = runOneSpan(t, cfg, "status", "--tenant", "acme")
	if err != nil || !strings.Contains(out, "key:    matches") || !strings.Contains(out, "in sync") {
		t.Fatalf("status after: %v\n%s", err, out)
	}
	if strings.Contains(out, testCallbackKey) {
		t.Fatalf("status printed the key:\n%s", out)
	}

	if _, err := runOneSpan(t, cfg, "status", "--tenant", "nope"); err == nil || !strings.Contains(err.Error(), "acme") {
		t.Fatalf("unknown tenant: %v", err)
	}
}

// Through the real root: the config comes from LISTENER_CONFIG.
func TestOneSpanStatusReadsListenerConfigThroughRealRoot(t *testing.T) {
	sb := ossandbox.New(ossandbox.Options{APIKeys: []string{"fake-api-key"}})
	base, err := sb.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	sb.SetCallback("https://listener.example.com/v1/callbacks/acme", "fake-stale-key", []string{"PACKAGE_COMPLETE", "EMAIL_BOUNCE"})
	t.Setenv("LISTENER_CONFIG", writeConfig(t, base))

	root := newRootCmd()
	if !slices.ContainsFunc(root.Commands(), func(c *cobra.Command) bool { return c.Name() == "onespan" }) {
		root.AddCommand(newOneSpanCmd())
	}
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"onespan", "status", "--tenant", "acme"})
	err = root.ExecuteContext(context.Background())
	s := out.String()
	if err == nil || !strings.Contains(s, "key:    differs") || !strings.Contains(s, "missing: PACKAGE_DECLINE") || !strings.Contains(s, "extra:   EMAIL_BOUNCE") {
		t.Fatalf("status: err %v\n%s", err, s)
	}
	if strings.Contains(s, "fake-stale-key") || strings.Contains(s, testCallbackKey) {
		t.Fatalf("status printed a key:\n%s", s)
	}
}
