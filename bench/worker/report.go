package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

const (
	callsTarget  = 0.02
	naiveCalls   = 2.0
	rssTarget    = 64 << 20
	drainTarget  = 60 * time.Second
	mib          = 1 << 20
	reportLayout = "2006-01-02 15:04 MST"
)

func writeHeader(b *strings.Builder, o options) {
	fmt.Fprintf(b, "Measured %s on %s, %d CPUs (GOMAXPROCS %d)", time.Now().UTC().Format(reportLayout), kernel(), runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if o.label != "" {
		fmt.Fprintf(b, ", %s", o.label)
	}
	fmt.Fprintf(b, ". Reproduce: `%s`.\n\n", o.command)
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func ops(calls map[string]int) string {
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(calls)) {
		if calls[op] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", op, calls[op]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func writeCalls(b *strings.Builder, rows []burstResult) {
	b.WriteString("### API calls per event (burst stored before the worker starts)\n\n")
	b.WriteString("| burst | documents | REST calls by operation | status + event-log calls / event | all calls / event | token calls | drain |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		docs := "off"
		if r.documents {
			docs = "on (2 PDFs + evidence summary per package)"
		}
		fmt.Fprintf(b, "| %d events, %d packages, interleaved | %s | %s | **%.4f** | %.4f | %s | %s |\n",
			r.events, r.packages, docs, ops(r.calls), float64(r.statusCalls())/float64(r.events),
			float64(r.restCalls())/float64(r.events), ops(r.tokenCalls), r.drain.Round(time.Millisecond))
	}
	if len(rows) > 0 {
		r := rows[0]
		verdict := "meets"
		if float64(r.statusCalls())/float64(r.events) > callsTarget {
			verdict = "MISSES"
		}
		fmt.Fprintf(b, "\nTarget ≤ %.2f calls/event: %s. The naive design (one upsert per transaction + one per event) costs %.1f calls/event "+
			"(%d calls for this burst). Document copies cost per file, not per event: a lookup by `OneSpan_Document_Key__c` "+
			"(`query`) and a multipart upload (`content_version`) for each of a completed package's files.\n\n",
			callsTarget, verdict, naiveCalls, int(naiveCalls*float64(r.events)))
	}
}

func writeDocmove(b *strings.Builder, r docmoveResult, err error) {
	b.WriteString("### Peak memory while copying a 1 GiB PDF (separate `listener serve --roles ingest,worker` process)\n\n")
	b.WriteString("| file | copied intact | listener VmHWM before the copy | listener VmHWM after | highest sampled VmRSS | copy time | throughput |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	intact := "no"
	if r.sizeOK && r.sha256OK {
		intact = "yes (size and SHA-256 = ossandbox.ExpectedSHA256)"
	}
	thr := "-"
	if r.upload > 0 && err == nil {
		thr = fmt.Sprintf("%.0f MiB/s", float64(r.size)/mib/r.upload.Seconds())
	}
	fmt.Fprintf(b, "| %.0f MiB | %s | %.1f MiB | **%.1f MiB** | %.1f MiB | %s | %s |\n",
		float64(r.size)/mib, intact, float64(r.baselineHWM)/mib, float64(r.peakHWM)/mib, float64(r.maxSampledRSS)/mib,
		r.upload.Round(time.Millisecond), thr)
	if err != nil {
		fmt.Fprintf(b, "\nThe phase failed: %s\n\n", err)
		return
	}
	verdict := "meets"
	if r.peakHWM > rssTarget {
		verdict = "MISSES"
	}
	fmt.Fprintf(b, "\nTarget ≤ %d MiB peak RSS: %s. VmHWM is the kernel's peak resident set of the whole listener "+
		"process (embedded NATS, ingest, worker) since it started; the emulators run in the driver process.\n\n", rssTarget/mib, verdict)
}

func writeDrain(b *strings.Builder, rows []burstResult) {
	b.WriteString("### Time to drain a queued backlog with latency on every Salesforce call\n\n")
	b.WriteString("| backlog | added latency | nats.sync_always | worker replicas | drain time | events/s | REST calls (summed time) | cs_packages gets (summed time) | cs_packages single CAS writes, outside atomic batches (summed time) | host load avg (1m) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %d events, %d packages | %s | %v | %d | **%s** | %.0f | %d (%s) | %d (%s) | %d (%s) | %.1f |\n",
			r.events, r.packages, r.latency, r.syncAlways, r.replicas, r.drain.Round(10*time.Millisecond),
			float64(r.events)/r.drain.Seconds(), r.sfCalls, r.sfTime.Round(10*time.Millisecond),
			r.kvGets, r.kvGetTime.Round(10*time.Millisecond), r.kvWrites, r.kvWriteTime.Round(10*time.Millisecond), r.load[0])
	}
	b.WriteString("\n")
	for _, r := range rows {
		verdict := "meets"
		if r.drain > drainTarget {
			verdict = "MISSES"
		}
		line := fmt.Sprintf("- sync_always %v, %d replica(s): %s the %s target", r.syncAlways, r.replicas, verdict, drainTarget)
		if r.replicas == 1 {
			other := r.drain - r.sfTime - r.kvGetTime - r.kvWriteTime
			line += fmt.Sprintf("; with one replica a tenant's batches and the steps inside a batch are sequential, so the drain splits into "+
				"Salesforce %.0f%%, KV gets %.0f%%, KV writes %.0f%%, the rest (fetch, parse, ack, JSON) %.0f%%",
				pct(r.sfTime, r.drain), pct(r.kvGetTime, r.drain), pct(r.kvWriteTime, r.drain), pct(other, r.drain))
		}
		b.WriteString(line + ".\n")
	}
	var probes []burstResult
	for _, r := range rows {
		if r.probe != nil {
			probes = append(probes, r)
		}
	}
	if len(probes) > 0 {
		b.WriteString("\ncs_packages round trips measured on the same store after the drain (per operation; 400-byte values):\n\n")
		b.WriteString("| nats.sync_always | create, one at a time | get, one at a time | CAS update, one at a time | create, 32 in flight | get, 32 in flight | CAS update, 32 in flight | CAS update, 200 per atomic batch | batch with one stale revision |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range probes {
			p := r.probe
			stale := "ACCEPTED (unexpected)"
			if p.staleRejected {
				stale = "refused whole"
			}
			fmt.Fprintf(b, "| %v | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.syncAlways, us(p.seqCreate), us(p.seqGet), us(p.seqPut),
				us(p.parCreate), us(p.parGet), us(p.parPut), us(p.batchPut), stale)
		}
	}
	b.WriteString("\n")
}

func pct(part, whole time.Duration) float64 { return 100 * part.Seconds() / whole.Seconds() }

func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

const (
	beginMark = "<!-- BEGIN worker figures (written by bench/worker; edits inside are overwritten) -->"
	endMark   = "<!-- END worker figures -->"
	heading   = "## Worker (`bench/worker`)"
)

// updateReadme replaces the worker figures block of path, or appends the
// worker section; every other section (the ingest one) is left as it is.
// The file is read right before writing: another harness may have changed it.
func updateReadme(path, report string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out := spliceWorker(string(old), report)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

func spliceWorker(old, report string) string {
	block := beginMark + "\n" + report + endMark + "\n"
	i := strings.Index(old, beginMark)
	j := strings.Index(old, endMark)
	if i >= 0 && j > i {
		return old[:i] + block + strings.TrimPrefix(old[j+len(endMark):], "\n")
	}
	if old == "" {
		old = "# Benchmarks\n\nBenchmarks of Countersign, run on the project's reference VM. Each section says\nhow to reproduce its figures.\n"
	}
	if !strings.HasSuffix(old, "\n") {
		old += "\n"
	}
	return old + "\n" + heading + "\n\n" + workerIntro + "\n" + block
}

const workerIntro = `The real worker (internal/sfpush) with an embedded NATS and the Salesforce and
OneSpan emulators, all on loopback. Bursts are stored before the worker starts,
interleaved across packages (step k of every package before step k+1), so a batch
of 200 messages touches up to 200 packages. Every run checks its outcome (every
event and transaction record in Salesforce, final statuses, no dead letters,
file size and SHA-256), so a fast figure cannot come from skipped work.
`
