package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/config"
)

func newConfigCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the config and print the effective config with secrets masked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			var ve *config.ValidationError
			if errors.As(err, &ve) {
				fmt.Fprintln(cmd.ErrOrStderr(), ve.Error())
				return exitError{code: 2}
			}
			if err != nil {
				return err
			}
			for _, v := range cfg.UnsetVars {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: ${%s} is not set\n", v)
			}
			out, err := cfg.Masked().YAML()
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), string(out))
			fmt.Fprintln(cmd.ErrOrStderr(), "config ok")
			return nil
		},
	})
	return cmd
}
