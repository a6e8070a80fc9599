package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests here run the real binary: what an operator runs is what is tested.

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildBinary builds the listener once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "listener-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "listener")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		_ = os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type instance struct {
	cmd  *exec.Cmd
	base string
	logs *strings.Builder
}

func writeServeConfig(t *testing.T, dir string) (cfgPath, httpAddr string) {
	t.Helper()
	httpAddr = freeAddr(t)
	cfg := fmt.Sprintf(`
server: { addr: %q, public_url: "http://%s" }
metrics: { addr: %q }
nats: { store_dir: %q }
secrets: { keys: ["Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE="] }
admin: { tokens: ["fake-admin-token-0123456789"] }
tenants:
  demo:
    callback_keys: ["fake-demo-callback-key"]
    onespan: { base_url: "http://127.0.0.1:1", api_key: "fake-onespan-key" }
    salesforce: { login_url: "http://127.0.0.1:1", client_id: "fake-id", client_secret: "fake-client-secret" }
`, httpAddr, httpAddr, freeAddr(t), filepath.Join(dir, "nats"))
	cfgPath = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, httpAddr
}

func start(t *testing.T, bin, cfgPath, addr string) *instance {
	t.Helper()
	in := &instance{cmd: exec.Command(bin, "serve", "--config", cfgPath), base: "http://" + addr, logs: &strings.Builder{}}
	in.cmd.Stderr = in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.cmd.Process.Kill(); _ = in.cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(in.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return in
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("listener not ready:\n%s", in.logs)
	return nil
}

func (in *instance) send(t *testing.T, pkg string) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"@class":"com.silanis.esl.packages.event.ESLProcessEvent","name":"PACKAGE_COMPLETE","sessionUser":"u","packageId":%q,"message":null,"documentId":null,"createdDate":"2020-08-21T14:12:34.544Z"}`, pkg)
	req, _ := http.NewRequest(http.MethodPost, in.base+"/v1/callbacks/demo", strings.NewReader(body))
	req.Header.Set("Authorization", "Basic fake-demo-callback-key")
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestKilledListenerKeepsEveryAcceptedCallback(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg, addr := writeServeConfig(t, dir)

	in := start(t, bin, cfg, addr)
	for i := range 10 {
		if code, body := in.send(t, fmt.Sprintf("pkg-%d", i)); code != 200 || !strings.Contains(body, `"duplicate":false`) {
			t.Fatalf("send %d: %d %s", i, code, body)
		}
	}
	_ = in.cmd.Process.Signal(syscall.SIGKILL)
	_ = in.cmd.Wait()

	again := start(t, bin, cfg, addr)
	for i := range 10 {
		// Stored before the kill: the stream (and its dedup state) says so.
		if code, body := again.send(t, fmt.Sprintf("pkg-%d", i)); code != 200 || !strings.Contains(body, `"duplicate":true`) {
			t.Errorf("after kill -9, pkg-%d answered %d %s (want duplicate:true)", i, code, body)
		}
	}
	if strings.Contains(again.logs.String(), "fake-demo-callback-key") {
		t.Error("the callback key appeared in the logs")
	}
}

func TestSIGTERMDrainsAndExitsCleanly(t *testing.T) {
	bin := buildBinary(t)
	cfg, addr := writeServeConfig(t, t.TempDir())
	in := start(t, bin, cfg, addr)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	results := make(chan int, 400)
	go func() {
		defer close(results)
		for i := 0; ctx.Err() == nil && i < 400; i++ {
			code, _ := in.send(t, fmt.Sprintf("drain-%d", i))
			results <- code
			if code == 0 {
				return // connection refused: the listener is gone
			}
		}
	}()
	// Let some requests through, then ask it to stop.
	first := <-results
	if first != 200 {
		t.Fatalf("first request: %d", first)
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, in.logs)
		}
	case <-ctx.Done():
		t.Fatalf("listener did not exit after SIGTERM:\n%s", in.logs)
	}
	for code := range results {
		if code != 200 && code != 0 {
			t.Errorf("a request during shutdown got %d, want 200 or a refused connection", code)
		}
	}
	if !strings.Contains(in.logs.String(), "Server Exiting") {
		t.Errorf("embedded NATS was not shut down:\n%s", in.logs)
	}
}

func TestConfigCheckMasksSecretsAndFailsOnErrors(t *testing.T) {
	bin := buildBinary(t)
	cfg, _ := writeServeConfig(t, t.TempDir())
	out, err := exec.Command(bin, "config", "check", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("valid config: %v\n%s", err, out)
	}
	for _, secret := range []string{"fake-demo-callback-key", "fake-admin-token-0123456789", "fake-client-secret", "fake-onespan-key", "Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE="} {
		if strings.Contains(string(out), secret) {
			t.Errorf("config check printed %q", secret)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("tenants: { Bad: {} }\n"), 0o600)
	cmd := exec.Command(bin, "config", "check")
	cmd.Env = append(os.Environ(), "LISTENER_CONFIG="+bad)
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("invalid config: want exit 2, got %v\n%s", err, out)
	}
	for _, want := range []string{"secrets.keys: at least one key is required", "tenants.Bad: tenant id must match", "tenants.Bad.salesforce.client_id: required"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output misses %q:\n%s", want, out)
		}
	}
}

func TestSendFiresARealisticCallback(t *testing.T) {
	bin := buildBinary(t)
	cfg, addr := writeServeConfig(t, t.TempDir())
	in := start(t, bin, cfg, addr)
	send := func(key string) (string, error) {
		out, err := exec.Command(bin, "send", "--url", in.base+"/v1/callbacks/demo", "--key", key,
			"--event", "PACKAGE_DECLINE", "--package", "xT9OeZ-j2jIynQBaLeLdgp9CtZk=", "--message", "changed my mind").CombinedOutput()
		return string(out), err
	}
	out, err := send("fake-demo-callback-key")
	if err != nil || !strings.HasPrefix(out, "200 OK") || !strings.Contains(out, `"duplicate":false`) {
		t.Fatalf("send: %v\n%s", err, out)
	}
	out, err = send("wrong-key-value")
	if err == nil || !strings.HasPrefix(out, "401") {
		t.Fatalf("send with a wrong key: %v\n%s", err, out)
	}
}
