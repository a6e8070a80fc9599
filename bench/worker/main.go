// Command worker is the delivery-worker benchmark (issue "Delivery worker",
// items 5, 6, 8). On loopback, with the real worker (internal/sfpush), an
// embedded NATS and the emulators, it measures:
//
//   - calls: Salesforce REST calls per event for a burst stored before the
//     worker starts (default 10,000 events over 500 packages), by operation;
//   - docmove: the peak RSS (VmHWM) of a separate `listener serve` process
//     while it copies a 1 GiB PDF from the OneSpan emulator to the Salesforce
//     emulator, and that the copy is byte-exact (size and SHA-256);
//   - drain: the time to drain 100,000 queued events with 20 ms added to
//     every Salesforce call, and where that time goes (Salesforce calls,
//     cs_packages KV round trips, the rest).
//
// It prints a markdown report and rewrites the worker figures block of
// bench/README.md (only that block).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	phases         string
	events         int
	packages       int
	callsDocuments bool
	drainEvents    int
	drainPackages  int
	latency        time.Duration
	drainSync      string
	drainReplicas  string
	drainLimit     time.Duration
	docSize        int64
	docLimit       time.Duration
	listener       string
	readme         string
	label          string
	command        string
	logPath        string
}

func main() {
	var o options
	flag.StringVar(&o.phases, "phases", "calls,docmove,drain", "comma list of phases: calls, docmove, drain")
	flag.IntVar(&o.events, "events", 10_000, "calls: events in the burst")
	flag.IntVar(&o.packages, "packages", 500, "calls: packages the burst is spread over")
	flag.BoolVar(&o.callsDocuments, "calls-documents", true, "calls: also run the burst with document copies on")
	flag.IntVar(&o.drainEvents, "drain-events", 100_000, "drain: queued events")
	flag.IntVar(&o.drainPackages, "drain-packages", 5_000, "drain: packages they are spread over")
	flag.DurationVar(&o.latency, "latency", 20*time.Millisecond, "drain: latency added to every Salesforce REST call")
	flag.StringVar(&o.drainSync, "drain-sync", "on,off", "drain: nats.sync_always settings to run (on, off)")
	flag.StringVar(&o.drainReplicas, "drain-replicas", "1,2", "drain: numbers of worker replicas sharing the consumer to run")
	flag.DurationVar(&o.drainLimit, "drain-limit", 5*time.Minute, "drain: give up after this long")
	flag.Int64Var(&o.docSize, "doc-size", 1<<30, "docmove: bytes of the PDF")
	flag.DurationVar(&o.docLimit, "doc-limit", 5*time.Minute, "docmove: give up after this long")
	flag.StringVar(&o.listener, "listener", "bin/listener", "docmove: the listener binary")
	flag.StringVar(&o.readme, "readme", "bench/README.md", "file whose worker figures block is rewritten (empty: do not write)")
	flag.StringVar(&o.label, "label", "", "what was measured (e.g. the git revision)")
	flag.StringVar(&o.command, "command", "bash bench/worker/run.sh", "the command that reproduces the figures (shown in the report)")
	flag.StringVar(&o.logPath, "log", "", "write worker logs (warnings and up) and the listener's log to this file prefix")
	flag.Parse()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	report, err := run(ctx, o)
	fmt.Print(report)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-worker:", err)
		os.Exit(1)
	}
	if o.readme != "" {
		if err := updateReadme(o.readme, report); err != nil {
			fmt.Fprintln(os.Stderr, "bench-worker:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "updated", o.readme)
	}
}

func run(ctx context.Context, o options) (string, error) {
	phases := strings.Split(o.phases, ",")
	var b strings.Builder
	writeHeader(&b, o)
	logFile, err := openLog(o.logPath, "worker.log")
	if err != nil {
		return "", err
	}
	if logFile != nil {
		defer logFile.Close()
	}
	if slices.Contains(phases, "calls") {
		var rows []burstResult
		for _, docs := range []bool{false, true} {
			if docs && !o.callsDocuments {
				continue
			}
			fmt.Fprintf(os.Stderr, "calls: %d events over %d packages, documents %v...\n", o.events, o.packages, docs)
			res, err := runBurst(ctx, burstOptions{events: o.events, packages: o.packages, documents: docs,
				limit: 2 * time.Minute, log: logFile})
			if err != nil {
				return b.String(), fmt.Errorf("calls phase: %w", err)
			}
			rows = append(rows, res)
		}
		writeCalls(&b, rows)
	}
	if slices.Contains(phases, "docmove") {
		fmt.Fprintf(os.Stderr, "docmove: %d bytes through a separate listener process...\n", o.docSize)
		lp := o.logPath + "listener.log"
		if o.logPath == "" {
			lp = os.DevNull
		}
		res, err := runDocmove(ctx, o.listener, o.docSize, o.docLimit, lp)
		writeDocmove(&b, res, err)
		if err != nil {
			return b.String(), fmt.Errorf("docmove phase: %w", err)
		}
	}
	if slices.Contains(phases, "drain") {
		var rows []burstResult
		for _, s := range strings.Split(o.drainSync, ",") {
			syncOn := strings.TrimSpace(s) == "on"
			for i, rs := range strings.Split(o.drainReplicas, ",") {
				replicas, err := strconv.Atoi(strings.TrimSpace(rs))
				if err != nil || replicas < 1 {
					return b.String(), fmt.Errorf("-drain-replicas: %q is not a count", rs)
				}
				fmt.Fprintf(os.Stderr, "drain: %d events over %d packages, latency %s, sync_always %v, %d replica(s)...\n",
					o.drainEvents, o.drainPackages, o.latency, syncOn, replicas)
				res, err := runBurst(ctx, burstOptions{events: o.drainEvents, packages: o.drainPackages, latency: o.latency,
					syncAlways: syncOn, replicas: replicas, probe: probeKeys(i), limit: o.drainLimit, log: logFile})
				if err != nil {
					return b.String(), fmt.Errorf("drain phase (sync_always %v, %d replicas): %w", syncOn, replicas, err)
				}
				rows = append(rows, res)
			}
		}
		writeDrain(&b, rows)
	}
	return b.String(), nil
}

func openLog(prefix, name string) (*os.File, error) {
	if prefix == "" {
		return nil, nil
	}
	return os.Create(prefix + name)
}

// probeKeys: the KV probe runs once per sync setting, after its first drain.
func probeKeys(run int) int {
	if run == 0 {
		return 2000
	}
	return 0
}
