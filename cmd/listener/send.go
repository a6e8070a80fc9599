package main

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/onespan"
)

func newSendCmd() *cobra.Command {
	var (
		url, key, event, pkg, user, doc, msg string
		timeout                              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "send --url U --key K --event PACKAGE_COMPLETE --package P",
		Short: "Fire a realistic OneSpan callback at a listener (to check a registration)",
		Long: "Sends one callback exactly as OneSpan does (same JSON, same headers, the key raw after\n" +
			"\"Basic \") and prints the listener's answer. The key may come from $LISTENER_CALLBACK_KEY\n" +
			"instead of --key, which keeps it out of the shell history.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if key == "" {
				key = os.Getenv("LISTENER_CALLBACK_KEY")
			}
			if !callback.Known(event) {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is not a known OneSpan event; sending it anyway\n", event)
			}
			ev := onespan.NewCallbackEvent(event, user, pkg, msg, doc, time.Now())
			ans, err := onespan.SendCallback(cmd.Context(), &http.Client{Timeout: timeout}, url, key, ev)
			if ans.Status != 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%d %s\n%s\n", ans.Status, http.StatusText(ans.Status), ans.Body)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&url, "url", "", "the listener's callback URL, e.g. https://host/v1/callbacks/acme (required)")
	f.StringVar(&key, "key", "", "the tenant's callback key (or $LISTENER_CALLBACK_KEY)")
	f.StringVar(&event, "event", callback.PackageComplete, "event name")
	f.StringVar(&pkg, "package", "", "package id (required)")
	f.StringVar(&user, "session-user", "countersign-send", "sessionUser field")
	f.StringVar(&doc, "document", "", "documentId (null when empty)")
	f.StringVar(&msg, "message", "", "message (null when empty)")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	_ = cmd.MarkFlagRequired("url")
	_ = cmd.MarkFlagRequired("package")
	return cmd
}
