package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/onespan"
)

// newOneSpanCmd groups the commands that talk to a tenant's OneSpan account.
func newOneSpanCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "onespan",
		Short: "Manage a tenant's OneSpan callback registration",
	}
	cmd.AddCommand(newOneSpanRegisterCmd(), newOneSpanStatusCmd())
	return cmd
}

func newOneSpanRegisterCmd() *cobra.Command {
	var tenant string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "register --tenant T [--dry-run]",
		Short: "Point the tenant's OneSpan callback at this listener",
		Long: "Sets the tenant's OneSpan callback to <server.public_url>/v1/callbacks/<tenant>, its first\n" +
			"callback key and onespan.callback_events (all events when empty), after showing what changes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, want, err := oneSpanSetup(cmd, tenant)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "tenant %s: onespan callback registration\n", tenant)
			_, err = onespan.Register(oneSpanContext(cmd), client, want, dryRun, out)
			return err
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id from the config file (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would change without changing it")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

func newOneSpanStatusCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "status --tenant T",
		Short: "Show the tenant's OneSpan callback registration and whether it matches",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, want, err := oneSpanSetup(cmd, tenant)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "tenant %s: onespan callback registration (want %s)\n", tenant, want.URL)
			d, err := onespan.Status(oneSpanContext(cmd), client, want, out)
			if err != nil {
				return err
			}
			if !d.InSync() {
				return errOutOfSync
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id from the config file (required)")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// errOutOfSync makes `status` exit non-zero so scripts and CI can check it.
var errOutOfSync = errors.New("onespan callback registration does not match the config")

// oneSpanSetup loads the config and builds the tenant's client and wanted registration.
func oneSpanSetup(cmd *cobra.Command, tenant string) (*onespan.Client, onespan.Desired, error) {
	path := oneSpanConfigPath(cmd)
	if path == "" {
		return nil, onespan.Desired{}, errors.New("no config file: pass --config or set LISTENER_CONFIG")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, onespan.Desired{}, err
	}
	t, ok := cfg.Tenants[tenant]
	if !ok || t == nil {
		ids := make([]string, 0, len(cfg.Tenants))
		for id := range cfg.Tenants {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return nil, onespan.Desired{}, fmt.Errorf("tenant %q is not in %s (tenants: %s)", tenant, path, strings.Join(ids, ", "))
	}
	want, err := onespan.DesiredFor(cfg.Server.PublicURL, tenant, t.CallbackKeys, t.OneSpan.CallbackEvents)
	if err != nil {
		return nil, onespan.Desired{}, err
	}
	client, err := onespan.New(onespan.Config{
		BaseURL:      t.OneSpan.BaseURL,
		APIKey:       t.OneSpan.APIKey,
		ClientID:     t.OneSpan.ClientApp.ClientID,
		ClientSecret: t.OneSpan.ClientApp.Secret,
	})
	if err != nil {
		return nil, onespan.Desired{}, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	return client, want, nil
}

// oneSpanConfigPath is the root's persistent --config flag, else LISTENER_CONFIG.
func oneSpanConfigPath(cmd *cobra.Command) string {
	if f := cmd.Flag("config"); f != nil && f.Value.String() != "" {
		return f.Value.String()
	}
	return os.Getenv("LISTENER_CONFIG")
}

// oneSpanContext is the root's signal context, or Background when run without one.
func oneSpanContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
