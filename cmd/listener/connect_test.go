package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/admin"
)

const cliAdminToken = "fake-admin-token-0123456789"

// writeConnectConfig is writeServeConfig with the tenant's Salesforce and
// OneSpan pointed at a `listener sandbox` on sandboxAddr.
func writeConnectConfig(t *testing.T, dir, sandboxAddr string) (cfgPath, httpAddr string) {
	t.Helper()
	httpAddr = freeAddr(t)
	cfg := fmt.Sprintf(`
server: { addr: %q, public_url: "http://%s" }
metrics: { addr: %q }
nats: { store_dir: %q, sync_always: false }
secrets: { keys: ["Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE="] }
admin: { tokens: [%q] }
tenants:
  demo:
    callback_keys: ["fake-demo-callback-key"]
    onespan: { base_url: "http://%s", api_key: "fake-onespan-key" }
    salesforce: { login_url: "http://%s", client_id: "fake-id", client_secret: "fake-client-secret-cli" }
`, httpAddr, httpAddr, freeAddr(t), filepath.Join(dir, "nats"), cliAdminToken, sandboxAddr, sandboxAddr)
	cfgPath = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, httpAddr
}

// startSandbox runs `listener sandbox` and waits until it answers.
func startSandbox(t *testing.T, bin, cfgPath, addr string) {
	t.Helper()
	cmd := exec.Command(bin, "sandbox", "--config", cfgPath, "--addr", addr, "--auto-approve")
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/services/data"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sandbox not listening:\n%s", logs.String())
}

// cli runs the binary's admin commands against in with the admin token in
// the environment.
func cli(t *testing.T, bin string, in *instance, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--server", in.base)...)
	cmd.Env = append(os.Environ(), "LISTENER_ADMIN_TOKEN="+cliAdminToken)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The "done when" of the connect issue, with the real binary on both sides:
// `listener connect` prints a link, a browser opens it and follows the
// redirects through the Salesforce emulator, and the CLI reports connected.
func TestListenerConnectPrintsALinkThatConnectsTheTenant(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	sandboxAddr := freeAddr(t)
	cfg, addr := writeConnectConfig(t, dir, sandboxAddr)
	startSandbox(t, bin, cfg, sandboxAddr)
	in := start(t, bin, cfg, addr)

	out, err := cli(t, bin, in, "", "tokens", "status")
	if err != nil || !strings.Contains(out, "demo") || !strings.Contains(out, admin.StateNeverConnected) {
		t.Fatalf("status before: %v\n%s", err, out)
	}

	connect := exec.Command(bin, "connect", "--tenant", "demo", "--server", in.base, "--poll", "100ms", "--timeout", "60s")
	connect.Env = append(os.Environ(), "LISTENER_ADMIN_TOKEN="+cliAdminToken)
	stdout, err := connect.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	connect.Stderr = &stderr
	if err := connect.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = connect.Process.Kill() })
	sc := bufio.NewScanner(stdout)
	var link string
	var printed strings.Builder
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, in.base+"/oauth/salesforce/start?") {
			link = l
			break
		}
	}
	if link == "" {
		t.Fatalf("connect printed no link:\n%s%s", printed.String(), stderr.String())
	}

	resp, err := http.Get(link) // follows our 302, the emulator's 302 back, to the result page
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "Tenant demo is connected to Salesforce") {
		t.Fatalf("result page %d:\n%s", resp.StatusCode, page)
	}
	rest, _ := io.ReadAll(stdout)
	if err := connect.Wait(); err != nil || !strings.Contains(string(rest), "tenant demo: connected to Salesforce (http://"+sandboxAddr+")") {
		t.Fatalf("connect: %v\n%s%s%s", err, printed.String(), rest, stderr.String())
	}

	out, err = cli(t, bin, in, "", "tokens", "status", "--output", "json")
	var list admin.TenantList
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Tenants) != 1 || list.Tenants[0].State != "connected" ||
		list.Tenants[0].Grant.LastRefresh == nil {
		t.Fatalf("status after connect: %v\n%s", err, out)
	}
	out, err = cli(t, bin, in, "", "tokens", "status")
	if err != nil || !strings.Contains(out, "demo") || !strings.Contains(out, " connected ") {
		t.Fatalf("status table: %v\n%s", err, out)
	}

	if out, err := cli(t, bin, in, "n\n", "disconnect", "--tenant", "demo"); err == nil || !strings.Contains(out, "not disconnected") {
		t.Fatalf("disconnect answered no: %v\n%s", err, out)
	}
	if out, err := cli(t, bin, in, "", "disconnect", "--tenant", "demo", "--yes"); err != nil || !strings.Contains(out, "tenant demo: disconnected") {
		t.Fatalf("disconnect: %v\n%s", err, out)
	}
	if out, _ := cli(t, bin, in, "", "tokens", "status"); !strings.Contains(out, "disconnected") {
		t.Fatalf("status after disconnect:\n%s", out)
	}

	// A token Salesforce does not know is stored, refused, and reported.
	out, err = cli(t, bin, in, "fake-refresh-token-unknown-to-salesforce\n", "tokens", "import", "--tenant", "demo", "--instance-url", "http://"+sandboxAddr)
	if err == nil || !strings.Contains(out, "Salesforce refused it") || strings.Contains(out, "fake-refresh-token-unknown") {
		t.Fatalf("import of a dead token: %v\n%s", err, out)
	}
	if out, _ := cli(t, bin, in, "", "tokens", "status"); !strings.Contains(out, "needs_reconnect") || !strings.Contains(out, "invalid_grant") {
		t.Fatalf("status after a dead import:\n%s", out)
	}

	wrong := filepath.Join(dir, "wrong-token")
	_ = os.WriteFile(wrong, []byte("fake-wrong-admin-token-0000\n"), 0o600)
	if out, err := cli(t, bin, in, "", "tokens", "status", "--token-file", wrong); err == nil || !strings.Contains(out, "refused the admin token") {
		t.Fatalf("wrong token: %v\n%s", err, out)
	}
	for _, secret := range []string{cliAdminToken, "fake-client-secret-cli", link[strings.Index(link, "ticket=")+7:], "fake-refresh-token-unknown"} {
		if strings.Contains(in.logs.String(), secret) {
			t.Errorf("the listener logged a secret (%d chars)", len(secret))
		}
	}
}
