package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/countersign/countersign/bench/chaos/rig"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

type scenario struct {
	name string
	run  func(ctx context.Context, e *env, r *result)
}

// result is one scenario's outcome.
type result struct {
	name     string
	what     string
	rep      rig.Report
	settled  bool
	settleIn time.Duration // load start to every 2xx delivered
	wall     time.Duration
	notes    []string
	errs     []error
}

func (r *result) ok() bool {
	return r.settled && len(r.errs) == 0 && r.rep.Lost == 0 && r.rep.Doubled == 0
}

func (r *result) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *result) fail(err error) {
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

// env is one scenario's emulators and processes.
type env struct {
	o        options
	dir      string
	closers  []func()
	mu       sync.Mutex
	targets  []string
	stoppers []*rig.Listener
}

func (e *env) cleanup() {
	for _, l := range e.stoppers {
		if l.Running() {
			_ = l.Kill()
		}
	}
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// org starts one tenant's Salesforce org and OneSpan account emulators.
func (e *env) org(id string, bootstrap bool) (rig.Tenant, rig.TenantConfig, error) {
	sfOpts := sfsandbox.DefaultOptions()
	sfOpts.Seed = uint64(len(id)) + 7
	sf := sfsandbox.New(sfOpts)
	if _, err := sf.Listen("127.0.0.1:0"); err != nil {
		return rig.Tenant{}, rig.TenantConfig{}, err
	}
	e.closers = append(e.closers, sf.Close)
	osKey := "fake-onespan-key-" + id
	os1 := ossandbox.New(ossandbox.Options{APIKeys: []string{osKey}})
	if _, err := os1.Listen("127.0.0.1:0"); err != nil {
		return rig.Tenant{}, rig.TenantConfig{}, err
	}
	e.closers = append(e.closers, func() { _ = os1.Close() })
	key := "fake-callback-key-" + id
	tc := rig.TenantConfig{ID: id, CallbackKey: key, OneSpanURL: os1.URL(), OneSpanKey: osKey,
		SFURL: sf.URL(), ClientID: sfOpts.ClientID, ClientSecret: sfOpts.ClientSecret, Documents: true}
	if bootstrap {
		_, tc.RefreshToken = sf.IssueTokens("api refresh_token")
	}
	return rig.Tenant{ID: id, Key: key, SF: sf, OS: os1}, tc, nil
}

// listener writes a config under dir/name and starts the binary with it.
func (e *env) listener(ctx context.Context, name, roles string, cfg rig.Config) (*rig.Listener, error) {
	var err error
	cfg.Dir = filepath.Join(e.dir, name)
	cfg.MaxDeliver, cfg.Backoff = e.o.maxDeliver, strings.Split(e.o.backoff, ",")
	if cfg.HTTPAddr, err = rig.FreeAddr(); err != nil {
		return nil, err
	}
	if cfg.MetricsAddr, err = rig.FreeAddr(); err != nil {
		return nil, err
	}
	path, err := cfg.Write()
	if err != nil {
		return nil, err
	}
	l := &rig.Listener{Bin: e.o.listener, Config: path, Roles: roles, Addr: cfg.HTTPAddr,
		Log: filepath.Join(cfg.Dir, "listener.log")}
	e.stoppers = append(e.stoppers, l)
	if err := l.Start(ctx, 60*time.Second); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, l.LogTail(2000))
	}
	e.mu.Lock()
	e.targets = append(e.targets, l.Base())
	e.mu.Unlock()
	return l, nil
}

func (e *env) currentTargets() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.targets...)
}

// fault runs when the load has sent the fraction at of its callbacks.
type fault struct {
	at   float64
	what string
	do   func(ctx context.Context) error
}

// drive sends the load, firing faults on the way, then waits until every
// 2xx is delivered (or the settle bound passes) and fills r.
func (e *env) drive(ctx context.Context, r *result, tenants []rig.Tenant, faults []fault) *rig.Load {
	load := &rig.Load{Tenants: tenants, Callbacks: e.o.callbacks, Senders: e.o.senders, Rate: e.o.rate,
		Prefix: r.name, Seed: uint64(len(r.name)), CompleteEvery: 50, Timeout: 10 * time.Second,
		Targets: e.currentTargets}
	if err := load.Plan(); err != nil {
		r.fail(err)
		return load
	}
	loadDone := make(chan struct{})
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		for _, f := range faults {
			at := int(f.at * float64(e.o.callbacks))
			for load.Sent() < at {
				select {
				case <-loadDone:
					r.fail(fmt.Errorf("load ended before %q", f.what))
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
			t0 := time.Now()
			err := f.do(ctx)
			r.note("at callback %d: %s (%s)", at, f.what, time.Since(t0).Round(time.Millisecond))
			if err != nil {
				r.fail(fmt.Errorf("%s: %w", f.what, err))
				return
			}
		}
	}()
	began := time.Now()
	load.Run(ctx)
	close(loadDone)
	<-faultsDone
	r.note("load: %d callbacks in %s", load.Sent(), time.Since(began).Round(time.Millisecond))
	r.rep, r.settled = rig.WaitSettled(ctx, load.Entries(), tenants, e.o.settle, 500*time.Millisecond)
	r.settleIn = time.Since(began)
	return load
}

// stop asks every running listener to stop and reports one that hangs.
func (e *env) stop(r *result) {
	for _, l := range e.stoppers {
		if l.Running() {
			if err := l.Stop(20 * time.Second); err != nil {
				r.fail(fmt.Errorf("%w\n%s", err, l.LogTail(2000)))
			}
		}
	}
}
