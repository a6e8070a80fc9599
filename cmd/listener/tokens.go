package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/admin"
)

func newTokensCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Inspect and import tenants' Salesforce grants (tokens are never printed)",
	}
	cmd.AddCommand(newTokensStatusCmd(), newTokensImportCmd())
	return cmd
}

func newTokensStatusCmd() *cobra.Command {
	f := &adminFlags{}
	var tenant string
	cmd := &cobra.Command{
		Use:   "status [--tenant T]",
		Short: "Show each tenant's Salesforce connection: state and reason, last refresh, token age",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			var list admin.TenantList
			if tenant != "" {
				t, err := c.tenant(cmd.Context(), tenant)
				if err != nil {
					return err
				}
				list.Tenants = []admin.Tenant{t}
			} else if err := c.do(cmd.Context(), http.MethodGet, "/tenants", nil, &list); err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printTenants(cmd.OutOrStdout(), list.Tenants)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant")
	return cmd
}

func newTokensImportCmd() *cobra.Command {
	f := &adminFlags{}
	var tenant, instanceURL string
	var noVerify bool
	cmd := &cobra.Command{
		Use:   "import --tenant T --instance-url URL < refresh-token",
		Short: "Store a Salesforce refresh token obtained elsewhere (read from stdin)",
		Long: "Reads one refresh token from standard input (never from a flag: flags end up in shell\n" +
			"history and process lists), stores it sealed as the tenant's grant, replacing any other,\n" +
			"and tries it once at Salesforce unless --no-verify. The token must come from the tenant's\n" +
			"connected app (same client id).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if isTerminal(cmd.InOrStdin()) {
				fmt.Fprint(cmd.ErrOrStderr(), "Paste the refresh token, then press Enter: ")
			}
			token, err := readSecretLine(cmd.InOrStdin())
			if err != nil {
				return err
			}
			var ans admin.TokensAnswer
			req := admin.TokensRequest{RefreshToken: token, InstanceURL: instanceURL, SkipVerify: noVerify}
			if err := c.do(cmd.Context(), http.MethodPost, "/tenants/"+tenant+"/tokens", req, &ans); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if c.output == "json" {
				if err := printJSON(out, ans); err != nil {
					return err
				}
			} else {
				switch {
				case ans.Verified:
					fmt.Fprintf(out, "tenant %s: refresh token stored and accepted by Salesforce; connected\n", tenant)
				case ans.VerifyError == "":
					fmt.Fprintf(out, "tenant %s: refresh token stored (not tried)\n", tenant)
				}
			}
			if ans.VerifyError != "" {
				return fmt.Errorf("tenant %s: token stored, but Salesforce refused it: %s", tenant, ans.VerifyError)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id (required)")
	cmd.Flags().StringVar(&instanceURL, "instance-url", "", "the org's instance URL, e.g. https://mydomain.my.salesforce.com (default: salesforce.instance_url, else learned on first refresh)")
	cmd.Flags().BoolVar(&noVerify, "no-verify", false, "store without trying the token at Salesforce")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// readSecretLine reads the first non-empty line of r.
func readSecretLine(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			return s, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading the refresh token from stdin: %w", err)
	}
	return "", errors.New("no refresh token on stdin")
}

// isTerminal reports whether r is an interactive terminal (to prompt only
// then).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
