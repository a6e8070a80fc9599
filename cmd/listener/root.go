package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/config"
)

type globalFlags struct {
	configPath string
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "listener",
		Short:         "Countersign: OneSpan Sign callbacks into Salesforce, durably",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.configPath, "config", os.Getenv("LISTENER_CONFIG"),
		"config file (default $LISTENER_CONFIG)")
	root.AddCommand(
		newServeCmd(g),
		newConfigCmd(g),
		newVersionCmd(),
		newOneSpanCmd(),
		newSandboxCmd(g),
		newSendCmd(),
		newConnectCmd(),
		newDisconnectCmd(),
		newTokensCmd(),
		newEventsCmd(), newReplayCmd(), newDLQCmd(), newReconcileCmd(),
	)
	return root
}

// load reads the config named by --config or LISTENER_CONFIG.
func (g *globalFlags) load() (*config.Config, error) {
	if g.configPath == "" {
		return nil, fmt.Errorf("no config file: pass --config FILE or set LISTENER_CONFIG")
	}
	return config.Load(g.configPath)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "countersign listener", version)
		},
	}
}
