package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/admin"
	"github.com/countersign/countersign/internal/replay"
)

// replayFlags select what a replay or purge takes.
type replayFlags struct {
	filterFlags
	source    string
	eventKeys []string
	seqs      []uint
	dryRun    bool
	yes       bool
}

func (f *replayFlags) register(cmd *cobra.Command, withSource, withKeys bool) {
	f.filterFlags.register(cmd, false, false)
	fl := cmd.Flags()
	if withSource {
		fl.StringVar(&f.source, "source", replay.SourceHistory, "replay from history (every callback as received) or deadletters")
	}
	if withKeys {
		fl.StringSliceVar(&f.eventKeys, "event-key", nil, "only these event keys (repeat or comma-separate)")
	}
	fl.UintSliceVar(&f.seqs, "seq", nil, "only these message sequences of the source stream (as `dlq ls` shows)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "only count what would be affected")
	fl.BoolVar(&f.yes, "yes", false, "do not ask for confirmation")
}

func (f *replayFlags) request() (admin.ReplayRequest, error) {
	from, err := parseCLITime("from", f.from)
	if err != nil {
		return admin.ReplayRequest{}, err
	}
	to, err := parseCLITime("to", f.to)
	if err != nil {
		return admin.ReplayRequest{}, err
	}
	seqs := make([]uint64, len(f.seqs))
	for i, n := range f.seqs {
		seqs[i] = uint64(n)
	}
	return admin.ReplayRequest{Source: f.source, EventKeys: f.eventKeys, Seqs: seqs, PackageID: f.pkg, Event: f.event,
		From: from, To: to, Since: f.since}, nil
}

func newReplayCmd() *cobra.Command {
	a := &adminFlags{}
	f := &replayFlags{}
	cmd := &cobra.Command{
		Use:   "replay --tenant T [--event-key K | --package P | --event E | --since D | --from T1 --to T2] [--source deadletters]",
		Short: "Deliver stored events again (copies marked Countersign-Source: replay)",
		Long: "Counts the matching events first (a dry run), asks for confirmation unless --yes, then\n" +
			"stores a fresh copy of each for the worker to deliver again, showing progress. Salesforce\n" +
			"records are updated in place, never doubled. From --source deadletters, replayed dead\n" +
			"letters leave the dead letters.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req, err := f.request()
			if err != nil {
				return err
			}
			return runReplay(cmd, c, f, req)
		},
	}
	a.register(cmd)
	f.register(cmd, true, true)
	return cmd
}

func runReplay(cmd *cobra.Command, c *adminClient, f *replayFlags, req admin.ReplayRequest) error {
	out := cmd.OutOrStdout()
	path := tenantPath(f.tenant, "/replay")
	dry := req
	dry.DryRun = true
	var count admin.ReplayAnswer
	if err := c.do(cmd.Context(), http.MethodPost, path, dry, &count); err != nil {
		return err
	}
	if f.dryRun || count.WouldReplay == 0 {
		if c.output == "json" {
			return printJSON(out, count)
		}
		fmt.Fprintf(out, "%d %s would be replayed (%d stored %s match)\n", count.WouldReplay, plural(count.WouldReplay, "event", "events"),
			count.Matched, plural(count.Matched, "copy", "copies"))
		return nil
	}
	if !f.yes && !confirm(cmd, fmt.Sprintf("Replay %d %s of tenant %s?", count.WouldReplay, plural(count.WouldReplay, "event", "events"), f.tenant)) {
		return errors.New("nothing replayed")
	}
	var final *admin.ReplayAnswer
	err := c.stream(cmd.Context(), path, req, func(line []byte) error {
		var p admin.ReplayProgress
		if err := json.Unmarshal(line, &p); err != nil {
			return fmt.Errorf("decoding the listener's progress: %w", err)
		}
		if p.Progress != nil && c.output != "json" {
			fmt.Fprintf(cmd.ErrOrStderr(), "progress: %d/%d messages\n", p.Progress.Done, p.Progress.Total)
		}
		if p.Result != nil {
			final = p.Result
		}
		if p.Error != "" {
			n := 0
			if final != nil {
				n = final.Replayed
			}
			return fmt.Errorf("replay stopped after %d events: %s", n, p.Error)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if final == nil {
		return errors.New("the listener ended the replay without a result; check `listener events ls --source replay`")
	}
	if c.output == "json" {
		return printJSON(out, final)
	}
	fmt.Fprintf(out, "replayed %d %s of tenant %s", final.Replayed, plural(final.Replayed, "event", "events"), f.tenant)
	if final.Skipped > 0 {
		fmt.Fprintf(out, " (%d other stored copies of the same events skipped)", final.Skipped)
	}
	fmt.Fprintln(out)
	return nil
}

// stream POSTs body asking for NDJSON and calls fn with each line. No
// overall timeout: a long replay reports progress; ctx (Ctrl-C) ends it.
func (c *adminClient) stream(ctx context.Context, path string, body any, fn func([]byte) error) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.server+admin.APIPrefix+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: c.hc.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("calling the listener at %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		if e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return &apiError{status: resp.StatusCode, message: e.Error}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the listener's progress: %w", err)
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
