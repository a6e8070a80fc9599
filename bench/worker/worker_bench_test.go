package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/callback"
)

// Quick versions of each phase, so the harness itself is tested by `make
// test`; the full-size figures come from run.sh.

func TestBurstWorkload(t *testing.T) {
	evs := burst(1003, 10, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if len(evs) != 1003 {
		t.Fatalf("%d events, want 1003", len(evs))
	}
	per := map[string][]string{}
	for _, e := range evs {
		per[e.PackageID] = append(per[e.PackageID], e.Name)
	}
	if len(per) != 10 {
		t.Fatalf("%d packages, want 10", len(per))
	}
	for pkg, names := range per {
		if len(names) < 100 || len(names) > 101 {
			t.Errorf("%s: %d events, want 100 or 101", pkg, len(names))
		}
		if names[0] != callback.PackageCreate || names[1] != callback.PackageActivate || names[len(names)-1] != callback.PackageComplete {
			t.Errorf("%s: life %v...%v", pkg, names[:2], names[len(names)-1])
		}
	}
	// Interleaved: the first 10 events are 10 different packages.
	seen := map[string]bool{}
	for _, e := range evs[:10] {
		seen[e.PackageID] = true
	}
	if len(seen) != 10 {
		t.Errorf("first 10 events touch %d packages, want 10", len(seen))
	}
}

func TestCallsPerEventQuick(t *testing.T) {
	res, err := runBurst(t.Context(), burstOptions{events: 1000, packages: 50, limit: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(res.statusCalls()) / float64(res.events); got > callsTarget {
		t.Errorf("%.4f status calls per event (%v), want ≤ %.2f", got, res.calls, callsTarget)
	}
	if res.calls["collection_upsert"] != 10 {
		t.Errorf("calls %v, want 10 collection upserts (5 batches of 200: transactions + events)", res.calls)
	}
	// State writes go out as atomic KV batches, which the KeyValue
	// instrumentation does not see; single writes appear only on fallback.
	if res.kvGets == 0 || res.sfCalls == 0 {
		t.Errorf("instrumentation saw nothing: %+v", res)
	}
}

func TestDrainQuickWithDocuments(t *testing.T) {
	res, err := runBurst(t.Context(), burstOptions{events: 400, packages: 20, latency: 2 * time.Millisecond,
		syncAlways: true, documents: true, probe: 200, limit: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if p := res.probe; p == nil || p.batchPut <= 0 || p.seqPut <= 0 || !p.staleRejected {
		t.Errorf("kv probe %+v: want timings and a stale batch refused whole", p)
	}
	if res.calls["content_version"] != 60 {
		t.Errorf("calls %v, want 60 uploads (20 packages x 3 files)", res.calls)
	}
	if res.drain <= 0 || res.sfTime < time.Duration(res.sfCalls)*2*time.Millisecond {
		t.Errorf("drain %s, %d calls took %s: latency not applied or not measured", res.drain, res.sfCalls, res.sfTime)
	}
}

func TestDocmoveQuick(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "listener")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/listener").CombinedOutput(); err != nil {
		t.Fatalf("build listener: %v\n%s", err, out)
	}
	log := filepath.Join(t.TempDir(), "listener.log")
	res, err := runDocmove(t.Context(), bin, 8<<20, time.Minute, log)
	if err != nil {
		t.Fatal(err)
	}
	if !res.sizeOK || !res.sha256OK || res.peakHWM <= 0 || res.peakHWM < res.baselineHWM {
		t.Errorf("result %+v", res)
	}
}

func TestReadmeSpliceKeepsOtherSections(t *testing.T) {
	ingest := "# Benchmarks\n\nintro\n\n## Ingest (`bench/ingest`)\n\n<!-- BEGIN ingest figures -->\nfig\n<!-- END ingest figures -->\n"
	once := spliceWorker(ingest, "v1\n")
	if !strings.HasPrefix(once, ingest) || !strings.Contains(once, heading) || !strings.Contains(once, "v1\n"+endMark) {
		t.Fatalf("first write:\n%s", once)
	}
	twice := spliceWorker(once+"\n## Later\n\nkept\n", "v2\n")
	if strings.Contains(twice, "v1") || !strings.Contains(twice, "v2\n"+endMark) || !strings.Contains(twice, "## Later\n\nkept\n") ||
		!strings.HasPrefix(twice, ingest) || strings.Count(twice, heading) != 1 {
		t.Fatalf("rewrite:\n%s", twice)
	}
	if fresh := spliceWorker("", "v\n"); !strings.HasPrefix(fresh, "# Benchmarks") || !strings.Contains(fresh, heading) {
		t.Fatalf("fresh file:\n%s", fresh)
	}
}

// BenchmarkBurst is the calls phase at a size `go test -bench` can repeat:
// it reports REST calls per event and delivered events per second.
func BenchmarkBurst(b *testing.B) {
	var calls, events int
	var drain time.Duration
	for b.Loop() {
		res, err := runBurst(b.Context(), burstOptions{events: 2000, packages: 100, limit: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		calls += res.restCalls()
		events += res.events
		drain += res.drain
	}
	b.ReportMetric(float64(calls)/float64(events), "calls/event")
	b.ReportMetric(float64(events)/drain.Seconds(), "events/s")
}
