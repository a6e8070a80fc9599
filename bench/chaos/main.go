// Command chaos runs the listener binary through faults on loopback and
// checks ARCHITECTURE §7 from the outside: every callback answered 2xx
// reaches the Salesforce emulator exactly once. Scenarios:
//
//	kill    SIGKILL the listener five times during the load (embedded NATS, same store)
//	nats    restart the external NATS server twice during the load (SIGTERM, then SIGKILL)
//	faults  30% of Salesforce REST calls fail (every fault kind of the emulator)
//	revoke  two tenants; one's grant is revoked mid-run and a new token imported later
//	workers two worker processes on external NATS; one SIGKILLed five times
//
// It prints one table and rewrites the chaos section of bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	listener  string
	natsd     string
	callbacks int
	rate      float64
	senders   int
	scenarios string
	settle    time.Duration
	readme    string
	command   string
	label     string
	workDir   string
	keep      bool
	// worker.max_deliver and worker.backoff of the generated configs.
	maxDeliver int
	backoff    string
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	flag.StringVar(&o.listener, "listener", "bin/listener", "listener binary")
	flag.StringVar(&o.natsd, "natsd", "", "natsd binary (go build ./bench/chaos/natsd); required by the nats scenario")
	flag.IntVar(&o.callbacks, "callbacks", 20000, "callbacks per scenario")
	flag.Float64Var(&o.rate, "rate", 1000, "callbacks per second (open loop); 0 = as fast as the senders go")
	flag.IntVar(&o.senders, "senders", 16, "concurrent senders")
	flag.StringVar(&o.scenarios, "scenarios", "kill,nats,faults,revoke,workers", "comma list of scenarios to run")
	flag.DurationVar(&o.settle, "settle", 3*time.Minute, "how long to wait after the load for every 2xx to be delivered")
	flag.StringVar(&o.readme, "readme", "bench/README.md", "file whose chaos section is rewritten (empty: do not write)")
	flag.StringVar(&o.command, "command", "", "command line shown in the README")
	flag.StringVar(&o.label, "label", "", "what was measured (e.g. the listener's git revision)")
	flag.StringVar(&o.workDir, "work", "", "directory for stores, configs and logs (default: a temporary one)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs) after a run that passed (a failed run always keeps it)")
	flag.IntVar(&o.maxDeliver, "max-deliver", 100, "worker.max_deliver of the listeners")
	flag.StringVar(&o.backoff, "backoff", "100ms,250ms,500ms,1s,2s", "worker.backoff of the listeners (comma list)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Every scenario is bounded; this bounds the whole run too.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()

	if o.workDir == "" {
		dir, err := os.MkdirTemp("", "countersign-chaos-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 1
		}
		o.workDir = dir
	}
	if abs, err := filepath.Abs(o.listener); err == nil {
		o.listener = abs
	}

	all := map[string]scenario{
		"kill":    {name: "kill", run: scenarioKill},
		"nats":    {name: "nats", run: scenarioNATS},
		"faults":  {name: "faults", run: scenarioFaults},
		"revoke":  {name: "revoke", run: scenarioRevoke},
		"workers": {name: "workers", run: scenarioWorkers},
	}
	var results []*result
	began := time.Now()
	for _, name := range strings.Split(o.scenarios, ",") {
		sc, ok := all[strings.TrimSpace(name)]
		if !ok {
			fmt.Fprintf(os.Stderr, "chaos: unknown scenario %q\n", name)
			return 2
		}
		e := &env{o: o, dir: filepath.Join(o.workDir, sc.name)}
		fmt.Printf("== %s\n", sc.name)
		res := &result{name: sc.name}
		t0 := time.Now()
		sc.run(ctx, e, res)
		res.wall = time.Since(t0)
		e.cleanup()
		printResult(res)
		results = append(results, res)
		if ctx.Err() != nil {
			break
		}
	}
	report := renderReport(o, results, time.Since(began))
	fmt.Println()
	fmt.Print(report)
	if o.readme != "" {
		if err := updateReadme(o.readme, report); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: write readme:", err)
			return 1
		}
		fmt.Println("wrote the chaos section of", o.readme)
	}
	failed := false
	for _, r := range results {
		failed = failed || !r.ok()
	}
	// A failed run keeps its logs: the failure may not come back.
	if o.keep || failed {
		fmt.Println("logs kept in", o.workDir)
	} else {
		_ = os.RemoveAll(o.workDir)
	}
	if failed {
		return 1
	}
	return 0
}

func printResult(r *result) {
	rep := r.rep
	fmt.Printf("   sent %d, 2xx %d, delivered %d, lost %d, doubled %d, 503 %d, no answer %d, extra %d, "+
		"bad transactions %d, files missing %d, files doubled %d, wrong ids %d; settled %v in %s\n",
		rep.Sent, rep.OK, rep.Delivered, rep.Lost, rep.Doubled, rep.Unavailable, rep.NoAnswer, rep.Extra,
		rep.BadTransactions, rep.FilesMissing, rep.FilesDoubled, rep.WrongID, r.settled, r.settleIn.Round(time.Second))
	for _, n := range r.notes {
		fmt.Println("   note:", n)
	}
	for _, p := range rep.Problems {
		fmt.Println("   problem:", p)
	}
	for _, err := range r.errs {
		fmt.Println("   error:", err)
	}
}

func hostLine() string {
	return fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
}
