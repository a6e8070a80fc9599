package main

// In-process benchmarks of the ingest path, wired like cmd/listener/serve.go
// (echo router from ingest.NewEcho with its tracing middleware, the tracer
// provider without exporter, ingest.Handler with callback tokens, queue.Queue
// on an embedded server, the redacting logger at the level the harness uses), so
// the path can be profiled with go test's -cpuprofile:
//
//	go test ./bench/ingest -run '^$' -bench IngestSyncOff -cpuprofile /tmp/cpu.out
//	go tool pprof -top /tmp/cpu.out
//
// No network: requests go straight to the router's ServeHTTP. 64 callers
// (SetParallelism over GOMAXPROCS) like the harness's 64 connections.

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/ingest"
	"github.com/countersign/countersign/internal/logging"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/tracing"
)

const callers = 64

const secretKey = "Y291bnRlcnNpZ24tZGV2LW9ubHktbm90LXNlY3JldCE="

// productionLogger is what serve.go builds: trace ids added outside the
// redacting handler over a text handler, scrubbing every configured secret
// (here the same secrets as the harness's generated config).
func productionLogger(level slog.Level) *slog.Logger {
	s := &logging.Secrets{}
	s.Add(secretKey, "bench-admin-token-not-secret", callbackKey, "bench-onespan-api-key", "bench-sf-client-secret")
	return slog.New(tracing.LogHandler{Handler: logging.New(io.Discard, logging.Text, level, s).Handler()})
}

// setupTracing installs the tracer provider as serve.go does with no OTLP
// endpoint: spans are created and sampled, not exported.
func setupTracing(tb testing.TB) {
	tb.Helper()
	shutdown, err := tracing.Setup(context.Background(), "", "bench")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = shutdown(context.Background()) })
}

func newIngest(tb testing.TB, syncAlways bool, log *slog.Logger) http.Handler {
	tb.Helper()
	d := config.Default()
	d.NATS.StoreDir = tb.TempDir()
	d.NATS.SyncAlways = syncAlways
	q, err := queue.Open(context.Background(), queue.Options{NATS: d.NATS, Queue: d.Queue, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(q.Close)
	setupTracing(tb)
	tokens, err := auth.NewCallbackTokensFromConfig([]string{secretKey}, auth.DefaultCallbackTokenTTL, nil)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := ingest.NewEcho(d.Server)
	if err != nil {
		tb.Fatal(err)
	}
	ingest.New(ingest.Options{
		Tenants:        map[string]*config.Tenant{tenant: {CallbackKeys: []string{callbackKey}}},
		MaxBodyBytes:   d.Server.MaxBodyBytes,
		Publisher:      q,
		Metrics:        metrics.New(prometheus.NewRegistry()),
		Logger:         log,
		CallbackTokens: tokens,
	}).Register(e)
	return e
}

// post sends one callback through h and returns the status code.
func post(h http.Handler, g *bodyGen) int {
	body, _ := g.next()
	req := httptest.NewRequest(http.MethodPost, "/v1/callbacks/"+tenant, bytes.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Basic "+callbackKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func runParallel(b *testing.B, op func() error) {
	b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

type statusError int

func (s statusError) Error() string { return "status " + http.StatusText(int(s)) }

func benchIngest(b *testing.B, syncAlways bool) {
	loggers := []struct {
		name string
		log  *slog.Logger
	}{
		// What the harness runs (--log-level warn): no line is written, yet
		// the handler's per-request Logger.With still redacts its attributes.
		{"logger=redacting-warn", productionLogger(slog.LevelWarn)},
		// The default level: one "callback stored" line per request.
		{"logger=redacting-info", productionLogger(slog.LevelInfo)},
		// Lower bound: no logging cost at all.
		{"logger=discard", slog.New(slog.DiscardHandler)},
	}
	for _, l := range loggers {
		b.Run(l.name, func(b *testing.B) {
			h := newIngest(b, syncAlways, l.log)
			g := newBodyGen()
			runParallel(b, func() error {
				if code := post(h, g); code != http.StatusOK {
					return statusError(code)
				}
				return nil
			})
		})
	}
}

// BenchmarkIngestSyncOff: callback handler + JetStream publish, no fsync.
func BenchmarkIngestSyncOff(b *testing.B) { benchIngest(b, false) }

// BenchmarkIngestSyncOn: the same with fsync before every PubAck.
func BenchmarkIngestSyncOn(b *testing.B) { benchIngest(b, true) }

func benchRawPublish(b *testing.B, syncAlways bool) {
	// msg=plain is the harness's ceiling (js.Publish of the body alone);
	// msg=ingest-shape adds what queue.Publish sends with it (headers,
	// Nats-Msg-Id, expected stream), to tell the message's cost from the
	// HTTP and handler's; headers-only and msgid-only split the two.
	for _, shape := range []string{"plain", "ingest-shape", "headers-only", "msgid-only"} {
		b.Run("msg="+shape, func(b *testing.B) {
			r, err := openRawStream(context.Background(), b.TempDir(), syncAlways)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(r.close)
			g := newBodyGen()
			var ids atomic.Uint64
			runParallel(b, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if shape == "plain" {
					return r.publish(ctx, g)
				}
				return r.publishLikeIngest(ctx, g, ids.Add(1), shape != "msgid-only", shape != "headers-only")
			})
		})
	}
}

// BenchmarkRawPublishFsync: js.Publish + PubAck on an embedded server with
// SyncAlways, the ceiling of ingest with sync_always on.
func BenchmarkRawPublishFsync(b *testing.B) { benchRawPublish(b, true) }

// BenchmarkRawPublishNoFsync: the same without fsync.
func BenchmarkRawPublishNoFsync(b *testing.B) { benchRawPublish(b, false) }

// TestIngestWiring sends a few callbacks through the in-process wiring the
// benchmarks use (quick: one embedded server, no fsync).
func TestIngestWiring(t *testing.T) {
	h := newIngest(t, false, productionLogger(slog.LevelWarn))
	g := newBodyGen()
	for i := 0; i < 5; i++ {
		if code := post(h, g); code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, code)
		}
	}
}

func TestBodiesAreDistinctAndParse(t *testing.T) {
	g := newBodyGen()
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		b, name := g.next()
		if seen[string(b)] {
			t.Fatalf("body %d repeats", i)
		}
		seen[string(b)] = true
		if !strings.Contains(string(b), `"name":"`+name+`"`) {
			t.Fatalf("body %s lacks name %s", b, name)
		}
	}
}

func TestSummarize(t *testing.T) {
	ns := make([]int64, 1000)
	for i := range ns {
		ns[len(ns)-1-i] = int64(i + 1)
	}
	l := summarize(ns)
	if l.P50 != 500 || l.P99 != 990 || l.Max != 1000 || l.N != 1000 {
		t.Errorf("summarize = %+v", l)
	}
	if (summarize(nil) != latency{}) {
		t.Error("empty summary not zero")
	}
}

func TestSpliceSectionKeepsOtherSections(t *testing.T) {
	fresh := spliceSection("", readmeSection("v1\n"))
	if !strings.HasPrefix(fresh, "# Benchmarks") || !strings.Contains(fresh, "v1\n") {
		t.Fatalf("fresh file:\n%s", fresh)
	}
	doc := "# Benchmarks\n\n## Other\n\nkeep me\n"
	once := spliceSection(doc, readmeSection("v1\n"))
	twice := spliceSection(once+"\n## Later\n\nand me\n", readmeSection("v2\n"))
	for _, want := range []string{"keep me", "and me", "v2\n"} {
		if !strings.Contains(twice, want) {
			t.Errorf("missing %q in:\n%s", want, twice)
		}
	}
	if strings.Contains(twice, "v1") || strings.Count(twice, beginMark) != 1 {
		t.Errorf("old figures kept or section duplicated:\n%s", twice)
	}
}
