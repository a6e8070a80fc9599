package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/admin"
	"github.com/countersign/countersign/internal/auth"
)

func newConnectCmd() *cobra.Command {
	f := &adminFlags{}
	var tenant string
	var timeout, poll time.Duration
	cmd := &cobra.Command{
		Use:   "connect --tenant T",
		Short: "Connect a tenant to Salesforce: prints a link to open in any browser, then waits",
		Long: "Asks the running listener for a single-use link (valid 10 minutes) that starts the\n" +
			"Salesforce sign-in for the tenant, prints it, and waits until the tenant is connected\n" +
			"or the flow failed. Open the link in any browser, sign in as the Salesforce user the\n" +
			"integration should act as, and allow access.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			return runConnect(cmd.Context(), c, cmd.OutOrStdout(), tenant, timeout, poll)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id (required)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the sign-in")
	cmd.Flags().DurationVar(&poll, "poll", 2*time.Second, "how often to ask the listener")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

func runConnect(ctx context.Context, c *adminClient, out io.Writer, tenant string, timeout, poll time.Duration) error {
	before, err := c.tenant(ctx, tenant)
	if err != nil {
		return err
	}
	var link admin.TicketAnswer
	if err := c.do(ctx, http.MethodPost, "/tenants/"+tenant+"/connect", nil, &link); err != nil {
		return err
	}
	if c.output == "json" {
		if err := printJSON(out, link); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "Open this link in a browser to connect tenant %s to Salesforce\n(single use, valid until %s):\n\n  %s\n\nWaiting for the sign-in (Ctrl-C to stop waiting)...\n",
			tenant, link.ExpiresAt.Local().Format("15:04:05"), link.URL)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(max(poll, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("tenant %s: not connected after %s; the browser page says why (run `listener connect` again for a new link)", tenant, timeout)
		case <-tick.C:
		}
		t, err := c.tenant(ctx, tenant)
		if err != nil {
			if ctx.Err() != nil {
				continue // the deadline message is clearer
			}
			var ae *apiError
			if errors.As(err, &ae) && ae.status == http.StatusUnauthorized {
				return err
			}
			continue // a restart of the listener must not end the wait
		}
		if newConnection(before, t) {
			return reportConnected(out, c.output, t)
		}
		if lc := t.LastConnect; lc != nil && !lc.Connected && newerOutcome(before, lc) {
			if c.output == "json" {
				_ = printJSON(out, t)
			}
			return fmt.Errorf("tenant %s: the connection failed: %s", tenant, lc.Error)
		}
	}
}

// newConnection reports whether t carries a grant stored after before was
// read (a tenant that was already connected must connect again).
func newConnection(before, t admin.Tenant) bool {
	if t.State != auth.StateConnected || t.Grant.ConnectedAt == nil {
		return false
	}
	return before.Grant.ConnectedAt == nil || t.Grant.ConnectedAt.After(*before.Grant.ConnectedAt)
}

// newerOutcome reports whether lc was recorded after before was read (by the
// server's clock on both sides).
func newerOutcome(before admin.Tenant, lc *admin.ConnectOutcome) bool {
	return before.LastConnect == nil || lc.At.After(before.LastConnect.At)
}

func reportConnected(out io.Writer, output string, t admin.Tenant) error {
	if output == "json" {
		return printJSON(out, t)
	}
	fmt.Fprintf(out, "tenant %s: connected to Salesforce", t.ID)
	if t.Grant.InstanceURL != "" {
		fmt.Fprintf(out, " (%s)", t.Grant.InstanceURL)
	}
	fmt.Fprintln(out)
	return nil
}

func newDisconnectCmd() *cobra.Command {
	f := &adminFlags{}
	var tenant string
	var yes bool
	cmd := &cobra.Command{
		Use:   "disconnect --tenant T",
		Short: "Revoke a tenant's Salesforce grant and delete its stored tokens",
		Long: "Revokes the tenant's refresh token at Salesforce, deletes the stored tokens and marks the\n" +
			"tenant disconnected: its events stay queued until `listener connect` connects it again.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !yes {
				fmt.Fprintf(out, "Disconnect tenant %s from Salesforce? Its events wait until it is connected again. [y/N] ", tenant)
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return errors.New("not disconnected")
				}
			}
			var ans admin.DisconnectAnswer
			if err := c.do(cmd.Context(), http.MethodPost, "/tenants/"+tenant+"/disconnect", nil, &ans); err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(out, ans)
			}
			fmt.Fprintf(out, "tenant %s: disconnected; stored tokens deleted\n", tenant)
			if ans.Warning != "" {
				fmt.Fprintf(out, "warning: %s\n(revoke the app's access in Salesforce Setup if it still shows)\n", ans.Warning)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id (required)")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}
