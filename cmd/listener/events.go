package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/history"
)

// filterFlags select events or dead letters of one tenant.
type filterFlags struct {
	tenant, pkg, event, outcome, source string
	from, to, since                     string
	limit                               int
	all                                 bool
}

func (f *filterFlags) register(cmd *cobra.Command, outcome, source bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "tenant id (required)")
	fl.StringVar(&f.pkg, "package", "", "only this package id")
	fl.StringVar(&f.event, "event", "", "only this event name, e.g. PACKAGE_COMPLETE")
	fl.StringVar(&f.since, "since", "", "only the last DURATION (e.g. 48h, 90m, 7d)")
	fl.StringVar(&f.from, "from", "", "only at or after this time (RFC 3339, or YYYY-MM-DD[THH:MM] in UTC)")
	fl.StringVar(&f.to, "to", "", "only at or before this time")
	if outcome {
		fl.StringVar(&f.outcome, "outcome", "", "only events whose latest attempt is delivered, retried, dead_lettered or paused")
	}
	if source {
		fl.StringVar(&f.source, "source", "", "only events with an attempt from callback, reconcile or replay")
	}
	_ = cmd.MarkFlagRequired("tenant")
}

func (f *filterFlags) registerPaging(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.limit, "limit", 50, "events per page (1 to 1000)")
	cmd.Flags().BoolVar(&f.all, "all", false, "follow every page (at most 100)")
}

// query is the filter as the API's query parameters.
func (f *filterFlags) query() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"package": f.pkg, "event": f.event, "outcome": f.outcome, "source": f.source,
		"since": f.since, "from": f.from, "to": f.to} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if f.limit > 0 {
		v.Set("limit", strconv.Itoa(f.limit))
	}
	return v
}

// parseCLITime reads --from/--to as the API does: RFC 3339, or a UTC date
// and time without zone.
func parseCLITime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s: %q is not a time (use RFC 3339, e.g. 2026-01-02T15:04:05Z)", flag, s)
}

// maxPages bounds --all.
const maxPages = 100

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Search the delivery history: events, their attempts, a package's whole story",
	}
	cmd.AddCommand(newEventsLsCmd(), newEventsShowCmd())
	return cmd
}

func newEventsLsCmd() *cobra.Command {
	a := &adminFlags{}
	f := &filterFlags{}
	cmd := &cobra.Command{
		Use:   "ls --tenant T [--package P] [--event E] [--outcome O] [--since 24h | --from T1 --to T2]",
		Short: "List events, newest attempt first, with their latest outcome",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var all history.EventPage
			q := f.query()
			for page := 0; ; page++ {
				var p history.EventPage
				if err := c.do(cmd.Context(), http.MethodGet, "/tenants/"+url.PathEscape(f.tenant)+"/events?"+q.Encode(), nil, &p); err != nil {
					return err
				}
				all.Events = append(all.Events, p.Events...)
				all.Scanned += p.Scanned
				all.Truncated = all.Truncated || p.Truncated
				all.Next = p.Next
				if !f.all || p.Next == "" || page+1 == maxPages {
					break
				}
				q.Set("cursor", p.Next)
			}
			out := cmd.OutOrStdout()
			if c.output == "json" {
				return printJSON(out, all)
			}
			if err := printEvents(out, all.Events); err != nil {
				return err
			}
			if all.Truncated {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: the search reached its scan limit; results are partial (narrow the time window)")
			}
			if all.Next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more events: add --all, or narrow the filter\n")
			}
			return nil
		},
	}
	a.register(cmd)
	f.register(cmd, true, true)
	f.registerPaging(cmd)
	return cmd
}

func printEvents(w io.Writer, evs []history.EventSummary) error {
	if len(evs) == 0 {
		_, err := fmt.Fprintln(w, "no events match")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAST ATTEMPT\tEVENT\tPACKAGE\tOUTCOME\tTRIES\tFROM\tEVENT KEY\tERROR")
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", cliTime(e.LastAt), e.Event, e.PackageID, e.Outcome, e.Attempts,
			strings.Join(e.Sources, ","), e.EventKey, orDash(e.Error))
	}
	return tw.Flush()
}

func cliTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newEventsShowCmd() *cobra.Command {
	a := &adminFlags{}
	var tenant, pkg string
	cmd := &cobra.Command{
		Use:   "show --tenant T (EVENT-KEY | --package P)",
		Short: "Show one event with every attempt, or a package's whole story (where is it, and why)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (pkg != "") {
				return errors.New("give an event key or --package, not both")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			base := "/tenants/" + url.PathEscape(tenant)
			if pkg != "" {
				var ps history.PackageStory
				if err := c.do(cmd.Context(), http.MethodGet, base+"/packages/"+url.PathEscape(pkg), nil, &ps); err != nil {
					return err
				}
				if c.output == "json" {
					return printJSON(out, ps)
				}
				return printPackageStory(out, ps)
			}
			var st history.Story
			if err := c.do(cmd.Context(), http.MethodGet, base+"/events/"+url.PathEscape(args[0]), nil, &st); err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(out, st)
			}
			return printStory(out, st, "")
		},
	}
	a.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id (required)")
	cmd.Flags().StringVar(&pkg, "package", "", "show this package's whole story")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

func printStory(w io.Writer, st history.Story, indent string) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s%s of package %s (event key %s)\n", indent, st.Event, st.PackageID, st.EventKey)
	if len(st.Attempts) == 0 {
		fmt.Fprintf(bw, "%s  stored, not attempted yet\n", indent)
	}
	for _, at := range st.Attempts {
		fmt.Fprintf(bw, "%s  %s  %-9s try %d  %s", indent, cliTime(at.Time), at.Source, at.Attempt, at.Outcome)
		if at.Error != "" {
			fmt.Fprintf(bw, "  (%s: %s)", at.ErrorClass, at.Error)
		}
		if at.RecordID != "" {
			fmt.Fprintf(bw, "  record %s", at.RecordID)
		}
		fmt.Fprintln(bw)
	}
	for _, m := range st.Messages {
		state := "stored"
		if m.Gone {
			state = "aged out"
		}
		fmt.Fprintf(bw, "%s  message %d from %s, received %s (%s)\n", indent, m.Seq, orDash(m.Source), cliTime(m.ReceivedAt), state)
	}
	return bw.Flush()
}

func printPackageStory(w io.Writer, ps history.PackageStory) error {
	fmt.Fprintf(w, "package %s of tenant %s\n", ps.PackageID, ps.Tenant)
	if ps.Status != "" {
		fmt.Fprintf(w, "  Salesforce status %s (event of %s)", ps.Status, cliTime(ps.StatusAt))
		if ps.RecordID != "" {
			fmt.Fprintf(w, ", record %s", ps.RecordID)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "  no status in Salesforce yet")
	}
	for k, v := range ps.Files {
		fmt.Fprintf(w, "  file %s: %s\n", k, v)
	}
	if ps.Truncated {
		fmt.Fprintln(w, "  warning: the search reached its scan limit; the story may be incomplete")
	}
	if len(ps.Events) == 0 {
		fmt.Fprintln(w, "  nothing known: no callback for it was stored, or its history aged out")
		return nil
	}
	for _, st := range ps.Events {
		fmt.Fprintln(w)
		if err := printStory(w, st, "  "); err != nil {
			return err
		}
	}
	return nil
}

// confirm asks a yes/no question on the command's input.
func confirm(cmd *cobra.Command, question string) bool {
	fmt.Fprintf(cmd.OutOrStdout(), "%s [y/N] ", question)
	line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}

// tenantPath is the API path of a tenant's resource.
func tenantPath(tenant, rest string) string { return "/tenants/" + url.PathEscape(tenant) + rest }
