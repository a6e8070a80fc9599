package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/admin"
	"github.com/countersign/countersign/internal/reconcile"
)

func newReconcileCmd() *cobra.Command {
	a := &adminFlags{}
	var tenant, since string
	cmd := &cobra.Command{
		Use:   "reconcile --tenant T [--since 48h]",
		Short: "Recover callbacks that never arrived: one reconciliation pass now",
		Long: "Asks the running listener (which holds the queue) to compare the packages OneSpan changed\n" +
			"within --since with what was delivered, and to store an event for every missing status\n" +
			"or document set; the worker then delivers them. Without --tenant, every tenant.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			// Reconciling asks OneSpan for every changed package: allow time.
			c.hc = &http.Client{Transport: c.hc.Transport, Timeout: 20 * time.Minute}
			tenants := []string{tenant}
			if tenant == "" {
				var list admin.TenantList
				if err := c.do(cmd.Context(), http.MethodGet, "/tenants", nil, &list); err != nil {
					return err
				}
				tenants = tenants[:0]
				for _, t := range list.Tenants {
					tenants = append(tenants, t.ID)
				}
			}
			var results []reconcile.Result
			for _, id := range tenants {
				res, err := reconcileTenant(cmd.Context(), c, id, since)
				if err != nil {
					return err
				}
				results = append(results, res)
				if c.output != "json" {
					printReconciled(cmd.OutOrStdout(), res)
				}
			}
			if c.output == "json" {
				if tenant != "" {
					return printJSON(cmd.OutOrStdout(), results[0])
				}
				return printJSON(cmd.OutOrStdout(), results)
			}
			return nil
		},
	}
	a.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id (default: every tenant)")
	cmd.Flags().StringVar(&since, "since", "", "how far back to compare (e.g. 48h, 7d; default reconcile.lookback)")
	return cmd
}

func reconcileTenant(ctx context.Context, c *adminClient, tenant, since string) (reconcile.Result, error) {
	var res reconcile.Result
	err := c.do(ctx, http.MethodPost, tenantPath(tenant, "/reconcile"), admin.ReconcileRequest{Since: since}, &res)
	return res, err
}

func printReconciled(w io.Writer, res reconcile.Result) {
	fmt.Fprintf(w, "tenant %s: %d %s checked, %d missed %s stored", res.Tenant, res.Checked, plural(res.Checked, "package", "packages"),
		res.Synthesized, plural(res.Synthesized, "event", "events"))
	if res.Duplicates > 0 {
		fmt.Fprintf(w, ", %d already stored", res.Duplicates)
	}
	if res.Waiting > 0 {
		fmt.Fprintf(w, ", %d %s still in delivery or dead-lettered (see `listener dlq ls`)", res.Waiting, plural(res.Waiting, "package", "packages"))
	}
	fmt.Fprintln(w)
	if len(res.Events) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PACKAGE\tEVENT\tREASON\tNEW")
	for _, e := range res.Events {
		fresh := "yes"
		if e.Duplicate {
			fresh = "no"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", e.PackageID, e.Event, e.Reason, fresh)
	}
	_ = tw.Flush()
}
