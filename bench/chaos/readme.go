package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	beginMark   = "<!-- BEGIN chaos figures (written by bench/chaos; edits inside are overwritten) -->"
	endMark     = "<!-- END chaos figures -->"
	heading     = "## Chaos (`bench/chaos`)"
	readmeIntro = `# Benchmarks

Benchmarks of Countersign, run on the project's reference VM. Each section says
how to reproduce its figures.
`
)

// renderReport is the markdown of the run: how, the table, then the notes.
func renderReport(o options, results []*result, took time.Duration) string {
	var b strings.Builder
	cmd := o.command
	if cmd == "" {
		cmd = "go run ./bench/chaos " + strings.Join(os.Args[1:], " ")
	}
	fmt.Fprintf(&b, "Command: `%s` (`make chaos`). Run %s on %s", cmd, time.Now().UTC().Format("2006-01-02 15:04 MST"), hostLine())
	if o.label != "" {
		fmt.Fprintf(&b, ", %s", o.label)
	}
	fmt.Fprintf(&b, "; %d callbacks per scenario at %.0f/s from %d senders; listeners with worker.ack_wait 5s, "+
		"max_deliver %d, backoff [%s]; whole run %s.\n\n",
		o.callbacks, o.rate, o.senders, o.maxDeliver, o.backoff, took.Round(time.Second))
	b.WriteString("Each scenario runs the real `bin/listener` on loopback against the Salesforce and OneSpan emulators. " +
		"Every callback is sent once, like OneSpan (no retry); one package in 50 completes, so its signed PDF and " +
		"evidence summary are copied too. *Lost* = answered 2xx but no event record in Salesforce after the settle " +
		"bound; *doubled* = an event key with more than one record (files and transactions are checked the same way, " +
		"and each transaction's status and last event must follow its delivered events). 503s and unanswered " +
		"callbacks (refused while the process was down) are allowed: OneSpan reports them to the sender.\n\n")
	b.WriteString("| scenario | callbacks sent | answered 2xx | delivered | lost | doubled | 503s | no answer | transaction/file errors | all delivered after |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		rep := r.rep
		settled := r.settleIn.Round(time.Second).String()
		if !r.settled {
			settled = "NOT within " + o.settle.String()
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | **%d** | **%d** | %d | %d | %d | %s |\n",
			r.name, rep.Sent, rep.OK, rep.Delivered, rep.Lost, rep.Doubled, rep.Unavailable, rep.NoAnswer,
			rep.BadTransactions+rep.DoubledTransactions+rep.FilesMissing+rep.FilesDoubled+rep.WrongID, settled)
	}
	b.WriteString("\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- **%s**: %s.", r.name, r.what)
		for _, n := range r.notes {
			fmt.Fprintf(&b, " %s.", n)
		}
		if r.rep.Extra > 0 {
			fmt.Fprintf(&b, " %d callbacks not answered 2xx were delivered anyway (stored before the answer was lost).", r.rep.Extra)
		}
		for _, p := range r.rep.Problems {
			fmt.Fprintf(&b, " Problem: %s.", p)
		}
		for _, err := range r.errs {
			fmt.Fprintf(&b, " Error: %s.", strings.SplitN(err.Error(), "\n", 2)[0])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// updateReadme replaces the chaos block of path (or appends the section, or
// creates the file), leaving every other section as it is. It re-reads the
// file right before writing: other harnesses write their own sections.
func updateReadme(path, report string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	block := beginMark + "\n" + report + endMark + "\n"
	out := string(old)
	i, j := strings.Index(out, beginMark), strings.Index(out, endMark)
	switch {
	case out == "":
		out = readmeIntro + "\n" + heading + "\n\n" + block
	case i >= 0 && j > i:
		out = out[:i] + block + strings.TrimPrefix(out[j+len(endMark):], "\n")
	default:
		if !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += "\n" + heading + "\n\n" + block
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
