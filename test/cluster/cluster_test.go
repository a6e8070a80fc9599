// Package cluster tests the production shape: a three-node NATS JetStream
// cluster with R3 streams, two ingest and two worker processes of the real
// binary, and faults during load (a NATS node lost, listeners killed).
package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/bench/chaos/rig"
	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/queue"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

const (
	tenantID    = "acme"
	callbackKey = "fake-cluster-callback-key"
	onespanKey  = "fake-cluster-onespan-key"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type node struct {
	name string
	url  string
	srv  *server.Server
}

// startCluster runs three JetStream servers in this process, routed to each
// other on loopback (listening: DontListen would stop the routes too).
func startCluster(t *testing.T) []*node {
	t.Helper()
	var clientPorts, routePorts []int
	for range 3 {
		clientPorts = append(clientPorts, freePort(t))
		routePorts = append(routePorts, freePort(t))
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	nodes := make([]*node, 3)
	for i := range 3 {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster:    server.ClusterOpts{Name: "countersign-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			// Small reservations: three servers share one test process.
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  1 << 30,
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		nodes[i] = &node{name: opts.ServerName, url: fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]), srv: ns}
	}
	for _, n := range nodes {
		if !n.srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats %s not ready", n.name)
		}
	}
	// JetStream answers once the meta group has a leader.
	nc, err := nats.Connect(clusterURL(nodes))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetstream cluster not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func clusterURL(nodes []*node) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	return strings.Join(urls, ",")
}

// TestClusterDeliversEveryAcceptedCallbackOnceThroughFaults is ARCHITECTURE
// §7 on the production topology: while 3,000 callbacks arrive, a worker and
// an ingest process are SIGKILLed and the NATS node leading CALLBACKS is
// shut down. Every callback answered 2xx must reach Salesforce exactly once
// with its transaction right; 503s during the node loss are allowed.
func TestClusterDeliversEveryAcceptedCallbackOnceThroughFaults(t *testing.T) {
	ctx := t.Context()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "listener")
	if err := rig.Build("../..", bin); err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t)

	sfOpts := sfsandbox.DefaultOptions()
	sf := sfsandbox.NewTestServer(t, sfOpts)
	os1 := ossandbox.New(ossandbox.Options{APIKeys: []string{onespanKey}})
	if _, err := os1.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os1.Close() })

	// Seed the tenant's grant in cs_tokens on the cluster, as `tokens import`
	// would: the workers find it there.
	natsCfg := config.Default().NATS
	natsCfg.URL, natsCfg.Replicas = clusterURL(nodes), 3
	// The meta group may answer before it counts every peer online: R3
	// placement fails until it does.
	var q *queue.Queue
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		q, err = queue.Open(ctx, queue.Options{NATS: natsCfg, Queue: config.Default().Queue})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(q.Close)
	sealer, err := auth.NewSealer([]string{rig.SealKey})
	if err != nil {
		t.Fatal(err)
	}
	tenantCfg := config.Tenant{Salesforce: config.Salesforce{LoginURL: sf.URL(), ClientID: sfOpts.ClientID,
		ClientSecret: sfOpts.ClientSecret, SessionTTL: config.Duration(time.Hour)}}
	src, err := auth.NewSource(auth.Options{Tenant: tenantID, App: auth.AppFromConfig(tenantCfg.Salesforce, "http://localhost"),
		Sealer: sealer, Tokens: q.Tokens(), Tenants: q.Tenants()})
	if err != nil {
		t.Fatal(err)
	}
	_, refresh := sf.IssueTokens("api refresh_token")
	if err := src.Import(ctx, refresh, sf.URL()); err != nil {
		t.Fatal(err)
	}

	start := func(name, roles string) *rig.Listener {
		t.Helper()
		dir := filepath.Join(tmp, name)
		httpAddr, _ := rig.FreeAddr()
		metricsAddr, _ := rig.FreeAddr()
		cfg, err := rig.Config{Dir: dir, HTTPAddr: httpAddr, MetricsAddr: metricsAddr,
			NATSURL: clusterURL(nodes), Replicas: 3, AckWait: 5 * time.Second,
			Tenants: []rig.TenantConfig{{ID: tenantID, CallbackKey: callbackKey, OneSpanURL: os1.URL(), OneSpanKey: onespanKey,
				SFURL: sf.URL(), ClientID: sfOpts.ClientID, ClientSecret: sfOpts.ClientSecret, Documents: true}},
		}.Write()
		if err != nil {
			t.Fatal(err)
		}
		l := &rig.Listener{Bin: bin, Config: cfg, Roles: roles, Addr: httpAddr, Log: filepath.Join(dir, "listener.log")}
		if err := l.Start(ctx, 30*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, l.LogTail(3000))
		}
		t.Cleanup(func() { _ = l.Kill() })
		return l
	}
	ingest := []*rig.Listener{start("ingest-1", "ingest"), start("ingest-2", "ingest")}
	workers := []*rig.Listener{start("worker-1", "worker"), start("worker-2", "worker")}

	var mu sync.Mutex
	targets := []string{ingest[0].Base(), ingest[1].Base()}
	tenants := []rig.Tenant{{ID: tenantID, Key: callbackKey, SF: sf, OS: os1}}
	load := &rig.Load{Tenants: tenants, Callbacks: 3000, Senders: 8, Rate: 400, Prefix: "cluster",
		Seed: 1, CompleteEvery: 25, Timeout: 10 * time.Second,
		Targets: func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), targets...) }}
	if err := load.Plan(); err != nil {
		t.Fatal(err)
	}

	// Faults at fixed points of the load, whatever its speed.
	faults := []struct {
		at   int
		what string
		do   func() error
	}{
		{750, "SIGKILL worker-1", workers[0].Kill},
		{1500, "shut down the NATS node leading CALLBACKS", func() error {
			info, err := streamInfo(ctx, q)
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if n.name == info.Cluster.Leader {
					n.srv.Shutdown()
					return nil
				}
			}
			return fmt.Errorf("stream leader %q is not a node", info.Cluster.Leader)
		}},
		{2250, "SIGKILL ingest-1", func() error {
			mu.Lock()
			targets = targets[1:] // the load balancer stops sending there
			mu.Unlock()
			return ingest[0].Kill()
		}},
	}
	loadDone := make(chan struct{})
	faultErr := make(chan error, 1)
	go func() {
		defer close(faultErr)
		for _, f := range faults {
			for load.Sent() < f.at {
				select {
				case <-loadDone:
					faultErr <- fmt.Errorf("load ended before %q", f.what)
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
			t.Logf("at callback %d: %s", load.Sent(), f.what)
			if err := f.do(); err != nil {
				faultErr <- fmt.Errorf("%s: %w", f.what, err)
				return
			}
		}
	}()
	began := time.Now()
	load.Run(ctx)
	close(loadDone)
	if err := <-faultErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("load of %d callbacks sent in %s", load.Sent(), time.Since(began).Round(time.Millisecond))

	rep, ok := rig.WaitSettled(ctx, load.Entries(), tenants, 90*time.Second, 250*time.Millisecond)
	t.Logf("sent %d, answered 2xx %d, 503 %d, no answer %d, other %d; delivered %d, lost %d, doubled %d, "+
		"extra (non-2xx delivered) %d, wrong ids %d, bad transactions %d, files missing %d, files doubled %d; settled after %s",
		rep.Sent, rep.OK, rep.Unavailable, rep.NoAnswer, rep.Other, rep.Delivered, rep.Lost, rep.Doubled,
		rep.Extra, rep.WrongID, rep.BadTransactions, rep.FilesMissing, rep.FilesDoubled, time.Since(began).Round(time.Millisecond))
	if !ok {
		for i, pkg := range rep.BadPackages {
			if i == 10 {
				break
			}
			e, err := q.Packages().Get(ctx, sfpush.PackageKey(tenantID, pkg))
			if err != nil {
				t.Logf("cs_packages %s: %v", pkg, err)
				continue
			}
			t.Logf("cs_packages %s (revision %d): %s", pkg, e.Revision(), e.Value())
		}
		for _, l := range append(ingest, workers...) {
			t.Logf("log of %s (%s):\n%s", l.Addr, l.Roles, l.LogTail(3000))
		}
		t.Fatalf("not every accepted callback reached Salesforce exactly once:\n%s", strings.Join(rep.Problems, "\n"))
	}
	if rep.Other != 0 {
		t.Errorf("%d callbacks got an answer other than 2xx or 503", rep.Other)
	}
	// The run must have tested something: most callbacks accepted.
	if rep.OK < rep.Sent/2 {
		t.Errorf("only %d of %d callbacks were accepted", rep.OK, rep.Sent)
	}

	// The survivors still stop cleanly on SIGTERM with a node gone.
	for _, l := range []*rig.Listener{ingest[1], workers[1]} {
		if err := l.Stop(20 * time.Second); err != nil {
			t.Errorf("%v\n%s", err, l.LogTail(3000))
		}
	}
	if strings.Contains(readAll(t, ingest[1].Log)+readAll(t, workers[1].Log), callbackKey) {
		t.Error("the callback key appeared in a listener log")
	}
}

func streamInfo(ctx context.Context, q *queue.Queue) (*jetstream.StreamInfo, error) {
	s, err := q.JetStream().Stream(ctx, queue.CallbacksStream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, fmt.Errorf("stream %s has no leader", queue.CallbacksStream)
	}
	return info, nil
}

func readAll(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
