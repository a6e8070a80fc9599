// Command demo shows Countersign end to end, offline, in seconds: it starts
// the Salesforce and OneSpan emulators, runs the real listener binary
// (`listener serve --roles ingest,worker`) against them with a generated
// config for tenant "demo", drives five packages through their lives in the
// OneSpan emulator (whose callbacks reach the listener over HTTP), waits
// until the worker delivered everything, and prints what Salesforce now
// holds: transactions with status and event counts, and the copied files.
//
// It is `make demo`. Only test and demo code imports the emulators.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.listener, "listener", "bin/listener", "the listener binary to run (make build)")
	flag.StringVar(&o.logPath, "log", "", "write the listener's log here (default: a temp file, removed unless the demo fails)")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "give up after this long")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type options struct {
	listener string
	logPath  string
	timeout  time.Duration
}

func run(ctx context.Context, o options, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	env, err := start(ctx, o, out)
	if err != nil {
		return err
	}
	defer env.stop()
	fmt.Fprintf(out, "listener  %s (tenant demo, pid %d)\nsalesforce emulator  %s\nonespan emulator     %s\n\n",
		env.listenerURL, env.pid(), env.sf.URL(), env.os.URL())
	began := time.Now()
	plans := scenario()
	if err := env.play(ctx, plans, out); err != nil {
		return env.failed(err)
	}
	if err := env.waitDelivered(ctx, plans); err != nil {
		return env.failed(err)
	}
	fmt.Fprintf(out, "\nall %d callbacks delivered to Salesforce %.1fs after the first was sent\n\n", countEvents(plans), time.Since(began).Seconds())
	return env.print(out, plans)
}
