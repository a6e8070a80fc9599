package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/admin"
	"github.com/countersign/countersign/internal/replay"
)

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Dead letters: list, replay once the cause is fixed, or purge",
	}
	cmd.AddCommand(newDLQLsCmd(), newDLQReplayCmd(), newDLQPurgeCmd())
	return cmd
}

func newDLQLsCmd() *cobra.Command {
	a := &adminFlags{}
	f := &filterFlags{}
	cmd := &cobra.Command{
		Use:   "ls --tenant T [--package P] [--event E] [--since D | --from T1 --to T2]",
		Short: "List a tenant's dead letters, oldest first, with why they failed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var all replay.DeadLetterPage
			q := f.query()
			for page := 0; ; page++ {
				var p replay.DeadLetterPage
				if err := c.do(cmd.Context(), http.MethodGet, tenantPath(f.tenant, "/deadletters?"+q.Encode()), nil, &p); err != nil {
					return err
				}
				all.DeadLetters = append(all.DeadLetters, p.DeadLetters...)
				all.Next = p.Next
				if !f.all || p.Next == "" || page+1 == maxPages {
					break
				}
				q.Set("cursor", p.Next)
			}
			if all.DeadLetters == nil {
				all.DeadLetters = []replay.DeadLetter{}
			}
			out := cmd.OutOrStdout()
			if c.output == "json" {
				return printJSON(out, all)
			}
			if err := printDeadLetters(out, all.DeadLetters); err != nil {
				return err
			}
			if all.Next != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "more dead letters: add --all, or narrow the filter")
			}
			return nil
		},
	}
	a.register(cmd)
	f.register(cmd, false, false)
	f.registerPaging(cmd)
	return cmd
}

func printDeadLetters(w io.Writer, list []replay.DeadLetter) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters match")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD SINCE\tEVENT\tPACKAGE\tCLASS\tTRIES\tERROR")
	for _, d := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Seq, cliTime(d.DeadAt), d.Event, d.PackageID, orDash(d.ErrorClass), d.Deliveries, orDash(d.Error))
	}
	return tw.Flush()
}

func newDLQReplayCmd() *cobra.Command {
	return newDeadLetterCmd("replay --tenant T [--seq N | --package P | --event E | --since D | --from T1 --to T2]",
		"Replay dead letters (after fixing the cause); replayed ones leave the dead letters", runReplay)
}

func newDLQPurgeCmd() *cobra.Command {
	return newDeadLetterCmd("purge --tenant T [--seq N | --package P | --event E | --since D | --from T1 --to T2]",
		"Delete dead letters for good (their delivery history is kept)", runPurge)
}

// newDeadLetterCmd is a command acting on the dead letters its flags select;
// run gets the admin client and the request those flags make.
func newDeadLetterCmd(use, short string, run func(*cobra.Command, *adminClient, *replayFlags, admin.ReplayRequest) error) *cobra.Command {
	a := &adminFlags{}
	f := &replayFlags{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			f.source = replay.SourceDeadLetters
			req, err := f.request()
			if err != nil {
				return err
			}
			return run(cmd, c, f, req)
		},
	}
	a.register(cmd)
	f.register(cmd, false, false)
	return cmd
}

// runPurge counts the selected dead letters (a dry run), asks for
// confirmation unless --yes, then deletes them.
func runPurge(cmd *cobra.Command, c *adminClient, f *replayFlags, req admin.ReplayRequest) error {
	out := cmd.OutOrStdout()
	path := tenantPath(f.tenant, "/deadletters/purge")
	dry := req
	dry.DryRun = true
	var count admin.PurgeAnswer
	if err := c.do(cmd.Context(), http.MethodPost, path, dry, &count); err != nil {
		return err
	}
	if f.dryRun || count.Matched == 0 {
		if c.output == "json" {
			return printJSON(out, count)
		}
		fmt.Fprintf(out, "%d dead %s would be purged\n", count.Matched, plural(count.Matched, "letter", "letters"))
		return nil
	}
	if !f.yes && !confirm(cmd, fmt.Sprintf("Delete %d dead %s of tenant %s for good?", count.Matched, plural(count.Matched, "letter", "letters"), f.tenant)) {
		return errors.New("nothing purged")
	}
	var ans admin.PurgeAnswer
	if err := c.do(cmd.Context(), http.MethodPost, path, req, &ans); err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(out, ans)
	}
	fmt.Fprintf(out, "purged %d dead %s of tenant %s\n", ans.Purged, plural(ans.Purged, "letter", "letters"), f.tenant)
	return nil
}
