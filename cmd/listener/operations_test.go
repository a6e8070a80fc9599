package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/reconcile"
	"github.com/countersign/countersign/internal/replay"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// opsSetup is a real listener binary with emulated OneSpan and Salesforce
// (in this process, on loopback) for tenant demo.
type opsSetup struct {
	t        *testing.T
	bin      string
	dir      string
	addr     string
	metrics  string
	sf       *sfsandbox.Server
	os       *ossandbox.Server
	clientID string
	secret   string
}

func newOpsSetup(t *testing.T) *opsSetup {
	t.Helper()
	s := &opsSetup{t: t, bin: buildBinary(t), dir: t.TempDir(), addr: freeAddr(t), metrics: freeAddr(t)}
	o := sfsandbox.DefaultOptions()
	o.ClientSecret = "fake-client-secret-ops"
	s.sf = sfsandbox.NewTestServer(t, o)
	s.clientID, s.secret = o.ClientID, o.ClientSecret
	s.os = ossandbox.New(ossandbox.Options{APIKeys: []string{"fake-onespan-key-ops"}})
	if _, err := s.os.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.os.Close() })
	s.os.SetCallback("http://"+s.addr+"/v1/callbacks/demo", "fake-demo-callback-key", ossandbox.Events)
	return s
}

// config writes the listener's config; eventObject names the Salesforce
// object of event records (a missing one makes every event a dead letter).
func (s *opsSetup) config(eventObject string) string {
	s.t.Helper()
	cfg := fmt.Sprintf(`
server: { addr: %q, public_url: "http://%s" }
metrics: { addr: %q }
nats: { store_dir: %q, sync_always: false }
secrets: { keys: ["Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE="] }
admin: { tokens: [%q] }
worker: { backoff: ["50ms", "100ms"], ack_wait: "5s" }
reconcile: { interval: "0s", lookback: "48h" }
tenants:
  demo:
    callback_keys: ["fake-demo-callback-key"]
    onespan: { base_url: %q, api_key: "fake-onespan-key-ops" }
    salesforce:
      login_url: %q
      client_id: %q
      client_secret: %q
      objects: { event: { name: %q } }
`, s.addr, s.addr, s.metrics, filepath.Join(s.dir, "nats"), cliAdminToken, s.os.URL(), s.sf.URL(), s.clientID, s.secret, eventObject)
	path := filepath.Join(s.dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// run runs a CLI command against in; stdin answers prompts.
func (s *opsSetup) run(in *instance, stdin string, args ...string) (string, error) {
	s.t.Helper()
	return cli(s.t, s.bin, in, stdin, args...)
}

// runJSON runs a command with --output json and decodes its answer.
func (s *opsSetup) runJSON(in *instance, out any, args ...string) {
	s.t.Helper()
	text, err := s.run(in, "", append(args, "--output", "json")...)
	if err != nil {
		s.t.Fatalf("%v: %v\n%s", args, err, text)
	}
	if err := json.Unmarshal([]byte(text), out); err != nil {
		s.t.Fatalf("%v: %v\n%s", args, err, text)
	}
}

func (s *opsSetup) poll(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("timed out waiting for %s", what)
}

func (s *opsSetup) status(pkg string) string {
	rec, _ := s.sf.FindRecord(sfsandbox.ObjTransaction, "Package_Id__c", pkg)
	st, _ := rec["Status__c"].(string)
	return st
}

func stopInstance(t *testing.T, in *instance) {
	t.Helper()
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("listener did not stop:\n%s", in.logs)
	}
}

// The operator's "done when", from the CLI alone against the real binary:
// find a package and read its story, see why events failed, purge some,
// replay everything that failed in a window once the cause is fixed, and
// recover with `listener reconcile` a package whose callbacks never came.
func TestCLIEventsDeadLettersReplayPurgeAndReconcile(t *testing.T) {
	s := newOpsSetup(t)
	cfg := s.config("No_Such_Object__c")
	in := start(t, s.bin, cfg, s.addr)
	_, refresh := s.sf.IssueTokens("api refresh_token")
	if out, err := s.run(in, refresh+"\n", "tokens", "import", "--tenant", "demo", "--instance-url", s.sf.URL()); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	t0 := time.Now().UTC()
	for _, pkg := range []string{"pkg-cli", "pkg-other"} {
		if err := s.os.CreatePackage(t.Context(), ossandbox.Package{ID: pkg, Name: pkg, Documents: []ossandbox.Document{{ID: "doc-1", Name: "Contract"}},
			Signers: []ossandbox.Signer{{ID: "signer-1", Email: "s1@example.com"}}}); err != nil {
			t.Fatal(err)
		}
		if err := s.os.Activate(t.Context(), pkg); err != nil {
			t.Fatal(err)
		}
	}
	var dead replay.DeadLetterPage
	s.poll("4 dead letters", func() bool {
		dead = replay.DeadLetterPage{}
		s.runJSON(in, &dead, "dlq", "ls", "--tenant", "demo", "--limit", "1", "--all")
		return len(dead.DeadLetters) == 4
	})
	var events history.EventPage
	s.poll("4 events in the history", func() bool {
		events = history.EventPage{}
		s.runJSON(in, &events, "events", "ls", "--tenant", "demo")
		return len(events.Events) == 4
	})
	t1 := time.Now().UTC()

	tables := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"events table", []string{"events", "ls", "--tenant", "demo", "--package", "pkg-cli"},
			[]string{"LAST ATTEMPT", "PACKAGE_CREATE", "PACKAGE_ACTIVATE", "pkg-cli", "dead_lettered", "No_Such_Object__c"}},
		{"events by outcome", []string{"events", "ls", "--tenant", "demo", "--outcome", "delivered"}, []string{"no events match"}},
		{"events by event and window", []string{"events", "ls", "--tenant", "demo", "--event", "PACKAGE_CREATE", "--since", "1h"},
			[]string{"pkg-cli", "pkg-other"}},
		{"package story", []string{"events", "show", "--tenant", "demo", "--package", "pkg-cli"},
			[]string{"package pkg-cli of tenant demo", "Salesforce status SENT", "PACKAGE_ACTIVATE of package pkg-cli", "dead_lettered  (permanent:"}},
		{"one event", []string{"events", "show", "--tenant", "demo", events.Events[0].EventKey},
			[]string{events.Events[0].Event + " of package " + events.Events[0].PackageID, "callback  try 1  dead_lettered", "message "}},
		{"dead letters table", []string{"dlq", "ls", "--tenant", "demo", "--package", "pkg-other"},
			[]string{"SEQ", "DEAD SINCE", "PACKAGE_CREATE", "PACKAGE_ACTIVATE", "permanent", "pkg-other"}},
		{"purge dry run", []string{"dlq", "purge", "--tenant", "demo", "--package", "pkg-other", "--dry-run"}, []string{"2 dead letters would be purged"}},
		{"replay dry run", []string{"replay", "--tenant", "demo", "--source", "deadletters", "--dry-run"}, []string{"4 events would be replayed"}},
		{"replay of nothing", []string{"replay", "--tenant", "demo", "--package", "pkg-none"}, []string{"0 events would be replayed"}},
	}
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			out, err := s.run(in, "", tc.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out, w) {
					t.Errorf("output misses %q:\n%s", w, out)
				}
			}
		})
	}
	failures := []struct {
		name string
		args []string
		want string
	}{
		{"no tenant", []string{"events", "ls"}, `required flag(s) "tenant" not set`},
		{"unknown tenant", []string{"dlq", "ls", "--tenant", "nobody"}, "404: tenant nobody: not configured"},
		{"bad duration", []string{"events", "ls", "--tenant", "demo", "--since", "soon"}, "400: since"},
		{"bad time", []string{"replay", "--tenant", "demo", "--from", "yesterday"}, "--from"},
		{"key and package", []string{"events", "show", "--tenant", "demo", "--package", "p", strings.Repeat("a", 64)}, "not both"},
		{"answer no", []string{"dlq", "replay", "--tenant", "demo"}, "nothing replayed"},
		{"answer no to purge", []string{"dlq", "purge", "--tenant", "demo"}, "nothing purged"},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			out, err := s.run(in, "n\n", tc.args...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("want failure %q, got %v:\n%s", tc.want, err, out)
			}
		})
	}
	if len(dead.DeadLetters) != 4 {
		t.Fatal("a refused command changed the dead letters")
	}

	if out, err := s.run(in, "", "dlq", "purge", "--tenant", "demo", "--package", "pkg-other", "--yes"); err != nil ||
		!strings.Contains(out, "purged 2 dead letters of tenant demo") {
		t.Fatalf("purge: %v\n%s", err, out)
	}

	// Fix the cause (the config), restart, replay what failed between t0
	// and t1 with progress.
	stopInstance(t, in)
	in = start(t, s.bin, s.config("OneSpan_Event__c"), s.addr)
	window := []string{"--from", t0.Add(-time.Second).Format(time.RFC3339), "--to", t1.Add(time.Second).Format(time.RFC3339)}
	out, err := s.run(in, "y\n", append([]string{"dlq", "replay", "--tenant", "demo"}, window...)...)
	if err != nil || !strings.Contains(out, "Replay 2 events of tenant demo? [y/N]") || !strings.Contains(out, "progress: 2/2 messages") ||
		!strings.Contains(out, "replayed 2 events of tenant demo") {
		t.Fatalf("dlq replay: %v\n%s", err, out)
	}
	s.poll("the replayed events delivered", func() bool {
		var p history.EventPage
		s.runJSON(in, &p, "events", "ls", "--tenant", "demo", "--source", "replay", "--outcome", "delivered")
		return len(p.Events) == 2 && s.status("pkg-cli") == "SENT"
	})
	if out, _ := s.run(in, "", "dlq", "ls", "--tenant", "demo"); !strings.Contains(out, "no dead letters match") {
		t.Errorf("dead letters left:\n%s", out)
	}
	// Replaying from the history with --yes asks nothing.
	var ans struct {
		Replayed int `json:"replayed"`
	}
	s.runJSON(in, &ans, "replay", "--tenant", "demo", "--package", "pkg-cli", "--event", "PACKAGE_ACTIVATE", "--yes")
	if ans.Replayed != 1 {
		t.Fatalf("replay from history: %+v", ans)
	}

	// A package OneSpan completed ten minutes ago without any callback.
	done := time.Now().Add(-10 * time.Minute)
	s.os.AddPackage(ossandbox.Package{ID: "pkg-silent", Status: "COMPLETED", Created: done.Add(-time.Minute), Completed: done, Updated: done,
		Documents: []ossandbox.Document{{ID: "doc-1", Name: "Contract", Signed: true}}})
	out, err = s.run(in, "", "reconcile", "--tenant", "demo", "--since", "48h")
	if err != nil || !strings.Contains(out, "tenant demo:") || !strings.Contains(out, "1 missed event stored") ||
		!strings.Contains(out, "pkg-silent  PACKAGE_COMPLETE") {
		t.Fatalf("reconcile: %v\n%s", err, out)
	}
	s.poll("pkg-silent COMPLETED", func() bool { return s.status("pkg-silent") == "COMPLETED" })
	var res []reconcile.Result
	s.runJSON(in, &res, "reconcile") // every tenant: nothing more to recover
	if len(res) != 1 || res[0].Tenant != "demo" || res[0].Synthesized != 0 {
		t.Errorf("second reconcile: %+v", res)
	}
	if strings.Contains(in.logs.String(), cliAdminToken) {
		t.Error("the listener logged the admin token")
	}
}
