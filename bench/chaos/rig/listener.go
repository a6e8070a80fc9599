package rig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SealKey is the fake secrets.keys entry of generated configs (not a secret).
const SealKey = "Y291bnRlcnNpZ24tdGVzdC1rZXktbm90LXNlY3JldCE="

// TenantConfig is one tenants.<id> block of a generated config.
type TenantConfig struct {
	ID           string
	CallbackKey  string
	OneSpanURL   string
	OneSpanKey   string
	SFURL        string
	ClientID     string
	ClientSecret string
	RefreshToken string // bootstrap; empty when the harness imports one
	Documents    bool
}

// Config is what a generated listener config varies on.
type Config struct {
	Dir         string // config, store and log live here
	HTTPAddr    string
	MetricsAddr string
	NATSURL     string // empty: embedded, store in Dir/nats
	NATSListen  string // embedded only: expose it on loopback for the harness
	Replicas    int
	Tenants     []TenantConfig
	AckWait     time.Duration // worker.ack_wait: how soon a killed worker's batch comes back
	MaxDeliver  int           // worker.max_deliver (default 100)
	Backoff     []string      // worker.backoff (default 100ms 250ms 500ms 1s 2s)
}

// Write renders the config into Dir/config.yaml and returns its path.
func (c Config) Write() (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "server: { addr: %q, public_url: \"http://%s\" }\n", c.HTTPAddr, c.HTTPAddr)
	fmt.Fprintf(&b, "metrics: { addr: %q }\n", c.MetricsAddr)
	if c.NATSURL != "" {
		fmt.Fprintf(&b, "nats: { url: %q, replicas: %d }\n", c.NATSURL, max(c.Replicas, 1))
	} else {
		fmt.Fprintf(&b, "nats: { store_dir: %q, listen: %q }\n", filepath.Join(c.Dir, "nats"), c.NATSListen)
	}
	fmt.Fprintf(&b, "secrets: { keys: [%q] }\n", SealKey)
	b.WriteString("admin: { tokens: [\"fake-admin-token-0123456789\"] }\n")
	ackWait := c.AckWait
	if ackWait == 0 {
		ackWait = 5 * time.Second
	}
	maxDeliver, backoff := c.MaxDeliver, c.Backoff
	if maxDeliver == 0 {
		maxDeliver = 100
	}
	if len(backoff) == 0 {
		backoff = []string{"100ms", "250ms", "500ms", "1s", "2s"}
	}
	quoted := make([]string, len(backoff))
	for i, d := range backoff {
		quoted[i] = strconv.Quote(d)
	}
	fmt.Fprintf(&b, "worker: { ack_wait: %q, max_deliver: %d, backoff: [%s] }\n",
		ackWait.String(), maxDeliver, strings.Join(quoted, ", "))
	b.WriteString("tenants:\n")
	for _, t := range c.Tenants {
		fmt.Fprintf(&b, "  %s:\n", t.ID)
		fmt.Fprintf(&b, "    callback_keys: [%q]\n", t.CallbackKey)
		fmt.Fprintf(&b, "    onespan: { base_url: %q, api_key: %q }\n", t.OneSpanURL, t.OneSpanKey)
		fmt.Fprintf(&b, "    salesforce: { login_url: %q, client_id: %q, client_secret: %q, refresh_token: %q }\n",
			t.SFURL, t.ClientID, t.ClientSecret, t.RefreshToken)
		fmt.Fprintf(&b, "    documents: { upload: %t, evidence_summary: %t }\n", t.Documents, t.Documents)
	}
	path := filepath.Join(c.Dir, "config.yaml")
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Listener is one `listener serve` process, restartable on the same config.
type Listener struct {
	Bin, Config, Roles, Addr string
	Log                      string // stderr of every run, appended

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
}

// Base is the listener's base URL.
func (l *Listener) Base() string { return "http://" + l.Addr }

// Start runs the process and waits until /readyz answers 200.
func (l *Listener) Start(ctx context.Context, within time.Duration) error {
	logf, err := os.OpenFile(l.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(l.Bin, "serve", "--config", l.Config, "--roles", l.Roles, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	l.mu.Lock()
	l.cmd, l.done = cmd, done
	l.mu.Unlock()
	deadline := time.Now().Add(within)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("listener %s (%s) exited at start: %v", l.Addr, l.Roles, err)
		default:
		}
		if resp, err := hc.Get(l.Base() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("listener %s (%s) not ready after %s", l.Addr, l.Roles, within)
}

// Kill sends SIGKILL and waits for the process to go.
func (l *Listener) Kill() error {
	l.mu.Lock()
	cmd, done := l.cmd, l.done
	l.mu.Unlock()
	if cmd == nil {
		return errors.New("listener not started")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	done <- nil
	return nil
}

// Stop sends SIGTERM and waits up to within for a clean exit; a listener
// that hangs is killed and reported.
func (l *Listener) Stop(within time.Duration) error {
	l.mu.Lock()
	cmd, done := l.cmd, l.done
	l.mu.Unlock()
	if cmd == nil || !l.Running() {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			return fmt.Errorf("listener %s (%s) exit after SIGTERM: %v", l.Addr, l.Roles, err)
		}
		return nil
	case <-time.After(within):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		done <- nil
		return fmt.Errorf("listener %s (%s) still running %s after SIGTERM (killed)", l.Addr, l.Roles, within)
	}
}

// Running reports whether the process has not exited.
func (l *Listener) Running() bool {
	l.mu.Lock()
	done := l.done
	l.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case err := <-done:
		done <- err
		return false
	default:
		return true
	}
}

// LogTail is the end of the listener's log, for failure reports.
func (l *Listener) LogTail(n int) string {
	b, _ := os.ReadFile(l.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Build compiles cmd/listener from the module at root into out.
func Build(root, out string) error {
	cmd := exec.Command("go", "build", "-o", out, "./cmd/listener")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build listener: %v\n%s", err, b)
	}
	return nil
}
