package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/bench/chaos/rig"
	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/queue"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// scenarioKill: one listener (ingest and worker, embedded NATS with fsync)
// SIGKILLed five times during the load and restarted on the same store.
func scenarioKill(ctx context.Context, e *env, r *result) {
	r.what = "listener SIGKILLed 5 times during the load, restarted on the same store (embedded NATS)"
	t, tc, err := e.org("acme", true)
	if err != nil {
		r.fail(err)
		return
	}
	l, err := e.listener(ctx, "listener", "ingest,worker", rig.Config{Tenants: []rig.TenantConfig{tc}})
	if err != nil {
		r.fail(err)
		return
	}
	var faults []fault
	for i := 1; i <= 5; i++ {
		faults = append(faults, fault{at: float64(i) / 6, what: fmt.Sprintf("SIGKILL %d and restart", i),
			do: func(ctx context.Context) error {
				if err := l.Kill(); err != nil {
					return err
				}
				if err := l.Start(ctx, 60*time.Second); err != nil {
					return fmt.Errorf("%w\n%s", err, l.LogTail(2000))
				}
				return nil
			}})
	}
	e.drive(ctx, r, []rig.Tenant{t}, faults)
	e.stop(r)
}

// natsd is the external NATS server process.
type natsd struct {
	bin, addr, store, log string
	cmd                   *exec.Cmd
	done                  chan error
}

func (n *natsd) start(ctx context.Context) error {
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n.cmd = exec.Command(n.bin, "-addr", n.addr, "-store", n.store)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	n.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait(); logf.Close() }(n.cmd, n.done)
	// Ready when JetStream answers (the store is recovered).
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if nc, err := nats.Connect("nats://"+n.addr, nats.Timeout(time.Second)); err == nil {
			js, _ := jetstream.New(nc)
			actx, cancel := context.WithTimeout(ctx, time.Second)
			_, err = js.AccountInfo(actx)
			cancel()
			nc.Close()
			if err == nil {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("natsd %s not ready", n.addr)
}

func (n *natsd) stop(sig syscall.Signal) error {
	if n.cmd == nil {
		return nil
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
		return fmt.Errorf("natsd did not stop within 30s of %s", sig)
	}
}

// scenarioNATS: the listener on an external NATS server that is restarted
// twice during the load: once cleanly (SIGTERM), once SIGKILLed.
func scenarioNATS(ctx context.Context, e *env, r *result) {
	r.what = "external NATS server restarted twice during the load (SIGTERM, then SIGKILL); ingest answers 503 while it is away (at once once the client knows it is disconnected; after the 5 s publish timeout for a callback in flight when the connection drops)"
	if e.o.natsd == "" {
		r.fail(fmt.Errorf("-natsd is required"))
		return
	}
	addr, err := rig.FreeAddr()
	if err != nil {
		r.fail(err)
		return
	}
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		r.fail(err)
		return
	}
	n := &natsd{bin: e.o.natsd, addr: addr, store: filepath.Join(e.dir, "natsd"), log: filepath.Join(e.dir, "natsd.log")}
	if err := n.start(ctx); err != nil {
		r.fail(err)
		return
	}
	e.closers = append(e.closers, func() { _ = n.stop(syscall.SIGKILL) })
	t, tc, err := e.org("acme", true)
	if err != nil {
		r.fail(err)
		return
	}
	if _, err := e.listener(ctx, "listener", "ingest,worker",
		rig.Config{NATSURL: "nats://" + addr, Replicas: 1, Tenants: []rig.TenantConfig{tc}}); err != nil {
		r.fail(err)
		return
	}
	restart := func(sig syscall.Signal) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			if err := n.stop(sig); err != nil {
				return err
			}
			return n.start(ctx)
		}
	}
	e.drive(ctx, r, []rig.Tenant{t}, []fault{
		{at: 1.0 / 3, what: "NATS server SIGTERM and restart", do: restart(syscall.SIGTERM)},
		{at: 2.0 / 3, what: "NATS server SIGKILL and restart", do: restart(syscall.SIGKILL)},
	})
	e.stop(r)
}

// scenarioFaults: 30% of Salesforce REST calls fail for the whole run, every
// failure kind the emulator knows. REQUEST_LIMIT_EXCEEDED is left out: it is
// not a failure but a throttle, and each one pauses the tenant for a minute.
func scenarioFaults(ctx context.Context, e *env, r *result) {
	r.what = "30% of Salesforce REST calls fail (503, 500, lock row, partial lock, 1 s timeout, 401, commit-then-503, commit-then-reset; REQUEST_LIMIT_EXCEEDED is not injected: each one pauses the tenant for a minute by design)"
	t, tc, err := e.org("acme", true)
	if err != nil {
		r.fail(err)
		return
	}
	t.SF.SetFaults(sfsandbox.Faults{Rate: 0.3, Hold: time.Second, Kinds: []sfsandbox.FaultKind{
		sfsandbox.FaultUnavailable, sfsandbox.FaultServerError, sfsandbox.FaultLockRow, sfsandbox.FaultLockSomeRecords,
		sfsandbox.FaultTimeout, sfsandbox.FaultInvalidSession,
		sfsandbox.FaultCommitThenUnavailable, sfsandbox.FaultCommitThenReset,
	}})
	if _, err := e.listener(ctx, "listener", "ingest,worker", rig.Config{Tenants: []rig.TenantConfig{tc}}); err != nil {
		r.fail(err)
		return
	}
	e.drive(ctx, r, []rig.Tenant{t}, nil)
	injected := 0
	for _, n := range t.SF.FaultsInjected() {
		injected += n
	}
	calls := 0
	for _, n := range t.SF.CallCounts() {
		calls += n
	}
	r.note("salesforce: %d REST calls, %d faults injected", calls, injected)
	e.stop(r)
}

// scenarioRevoke: two tenants; globex's org revokes every grant a third of
// the way in, and a new refresh token is imported (through the listener's
// NATS, as `tokens import` would) two thirds in. acme must keep flowing.
func scenarioRevoke(ctx context.Context, e *env, r *result) {
	r.what = "two tenants; globex's tokens revoked at 1/3 of the load, a new token imported at 2/3"
	acme, acmeCfg, err := e.org("acme", true)
	if err != nil {
		r.fail(err)
		return
	}
	globex, globexCfg, err := e.org("globex", true)
	if err != nil {
		r.fail(err)
		return
	}
	natsAddr, err := rig.FreeAddr()
	if err != nil {
		r.fail(err)
		return
	}
	if _, err := e.listener(ctx, "listener", "ingest,worker",
		rig.Config{NATSListen: natsAddr, Tenants: []rig.TenantConfig{acmeCfg, globexCfg}}); err != nil {
		r.fail(err)
		return
	}
	var acmeAtRevoke int
	e.drive(ctx, r, []rig.Tenant{acme, globex}, []fault{
		{at: 1.0 / 3, what: "globex org revokes every grant", do: func(context.Context) error {
			globex.SF.RevokeAll()
			acmeAtRevoke = acme.SF.Count(sfsandbox.ObjEvent)
			return nil
		}},
		{at: 2.0 / 3, what: "import a new globex refresh token", do: func(ctx context.Context) error {
			st, err := reconnect(ctx, natsAddr, globex, globexCfg)
			r.note("globex state before the import: %s; acme events delivered while globex was revoked: %d",
				st, acme.SF.Count(sfsandbox.ObjEvent)-acmeAtRevoke)
			return err
		}},
	})
	e.stop(r)
}

// reconnect imports a fresh grant for the tenant into the listener's
// cs_tokens and returns the tenant's state just before.
func reconnect(ctx context.Context, natsAddr string, t rig.Tenant, tc rig.TenantConfig) (string, error) {
	nc, err := nats.Connect("nats://"+natsAddr, nats.Timeout(5*time.Second))
	if err != nil {
		return "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	tokens, err := js.KeyValue(ctx, queue.TokensBucket)
	if err != nil {
		return "", err
	}
	tenants, err := js.KeyValue(ctx, queue.TenantsBucket)
	if err != nil {
		return "", err
	}
	st, _, err := auth.NewTenants(tenants).Get(ctx, t.ID)
	if err != nil {
		return "", err
	}
	state := st.State
	if st.Reason != "" {
		state += " (" + st.Reason + ")"
	}
	sealer, err := auth.NewSealer([]string{rig.SealKey})
	if err != nil {
		return state, err
	}
	src, err := auth.NewSource(auth.Options{Tenant: t.ID, Sealer: sealer, Tokens: tokens, Tenants: tenants,
		App: auth.SalesforceApp{LoginURL: tc.SFURL, ClientID: tc.ClientID, ClientSecret: tc.ClientSecret}})
	if err != nil {
		return state, err
	}
	_, refresh := t.SF.IssueTokens("api refresh_token")
	return state, src.Import(ctx, refresh, t.SF.URL())
}

// scenarioWorkers: one ingest and two worker processes sharing an external
// NATS server; one worker is SIGKILLed five times mid-batch and restarted,
// while the other keeps delivering the same tenant's events.
func scenarioWorkers(ctx context.Context, e *env, r *result) {
	r.what = "one ingest and two worker processes on an external NATS server; worker 1 SIGKILLed 5 times and restarted"
	if e.o.natsd == "" {
		r.fail(fmt.Errorf("-natsd is required"))
		return
	}
	addr, err := rig.FreeAddr()
	if err != nil {
		r.fail(err)
		return
	}
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		r.fail(err)
		return
	}
	n := &natsd{bin: e.o.natsd, addr: addr, store: filepath.Join(e.dir, "natsd"), log: filepath.Join(e.dir, "natsd.log")}
	if err := n.start(ctx); err != nil {
		r.fail(err)
		return
	}
	e.closers = append(e.closers, func() { _ = n.stop(syscall.SIGKILL) })
	t, tc, err := e.org("acme", true)
	if err != nil {
		r.fail(err)
		return
	}
	cfg := rig.Config{NATSURL: "nats://" + addr, Replicas: 1, Tenants: []rig.TenantConfig{tc}}
	if _, err := e.listener(ctx, "ingest", "ingest", cfg); err != nil {
		r.fail(err)
		return
	}
	var workers []*rig.Listener
	for _, name := range []string{"worker-1", "worker-2"} {
		w, err := e.listener(ctx, name, "worker", cfg)
		if err != nil {
			r.fail(err)
			return
		}
		workers = append(workers, w)
	}
	// Workers take no callbacks: only the ingest process is a target.
	e.mu.Lock()
	e.targets = e.targets[:1]
	e.mu.Unlock()
	var faults []fault
	for i := 1; i <= 5; i++ {
		faults = append(faults, fault{at: float64(i) / 6, what: fmt.Sprintf("SIGKILL worker-1 (%d) and restart", i),
			do: func(ctx context.Context) error {
				if err := workers[0].Kill(); err != nil {
					return err
				}
				if err := workers[0].Start(ctx, 60*time.Second); err != nil {
					return fmt.Errorf("%w\n%s", err, workers[0].LogTail(2000))
				}
				return nil
			}})
	}
	e.drive(ctx, r, []rig.Tenant{t}, faults)
	e.stop(r)
}
