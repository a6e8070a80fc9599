package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/config"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

type sandboxFlags struct {
	addr           string
	tenant         string
	autoApprove    bool
	rotate         bool
	accessTokenTTL time.Duration
}

func newSandboxCmd(g *globalFlags) *cobra.Command {
	f := &sandboxFlags{}
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run the local Salesforce and OneSpan emulators on one port, for trials",
		Long: "Serves a Salesforce org emulator (/services/...) and a OneSpan account emulator\n" +
			"(/api/..., /apitoken/...) on one address. With --config, the credentials of --tenant\n" +
			"(default: the first tenant) are the ones the emulators accept, so `make run` and\n" +
			"`listener connect` work against it. Nothing is persisted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var t *config.Tenant
			publicURL := "http://localhost:8080"
			if g.configPath != "" {
				cfg, err := g.load()
				if err != nil {
					return err
				}
				id := f.tenant
				if id == "" {
					id = cfg.TenantIDs()[0]
				}
				if t = cfg.Tenants[id]; t == nil {
					return fmt.Errorf("tenant %q is not in %s", id, g.configPath)
				}
				publicURL = cfg.Server.PublicURL
			}
			sf, os := newSandboxes(t, publicURL, f)
			return serveSandboxes(cmd.Context(), f.addr, sf, os, cmd)
		},
	}
	cmd.Flags().StringVar(&f.addr, "addr", "127.0.0.1:8081", "address to serve both emulators on")
	cmd.Flags().StringVar(&f.tenant, "tenant", "", "tenant whose credentials the emulators accept (with --config)")
	cmd.Flags().BoolVar(&f.autoApprove, "auto-approve", false, "skip the Salesforce consent page")
	cmd.Flags().BoolVar(&f.rotate, "rotate-refresh-tokens", true, "issue a new refresh token on every refresh")
	cmd.Flags().DurationVar(&f.accessTokenTTL, "access-token-ttl", 2*time.Hour, "Salesforce session lifetime")
	return cmd
}

func newSandboxes(t *config.Tenant, publicURL string, f *sandboxFlags) (*sfsandbox.Server, *ossandbox.Server) {
	sfOpts := sfsandbox.DefaultOptions()
	sfOpts.AutoApprove = f.autoApprove
	sfOpts.RotateRefreshTokens = f.rotate
	sfOpts.AccessTokenTTL = f.accessTokenTTL
	sfOpts.RedirectURIs = []string{strings.TrimRight(publicURL, "/") + "/oauth/salesforce/callback"}
	osOpts := ossandbox.Options{APIKeys: []string{"fake-onespan-api-key"}}
	if t != nil {
		sfOpts.ClientID, sfOpts.ClientSecret = t.Salesforce.ClientID, t.Salesforce.ClientSecret
		osOpts.APIKeys = nil
		if t.OneSpan.APIKey != "" {
			osOpts.APIKeys = []string{t.OneSpan.APIKey}
		}
		if t.OneSpan.ClientApp.Set() {
			osOpts.ClientApps = map[string]string{t.OneSpan.ClientApp.ClientID: t.OneSpan.ClientApp.Secret}
		}
	}
	return sfsandbox.New(sfOpts), ossandbox.New(osOpts)
}

// sandboxMux routes Salesforce paths to one emulator and the rest to the
// other: their paths do not overlap.
func sandboxMux(sf *sfsandbox.Server, os *ossandbox.Server) http.Handler {
	oh := os.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/services/") || strings.HasPrefix(r.URL.Path, "/id/") {
			sf.ServeHTTP(w, r)
			return
		}
		oh.ServeHTTP(w, r)
	})
}

func serveSandboxes(ctx context.Context, addr string, sf *sfsandbox.Server, os *ossandbox.Server, cmd *cobra.Command) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	sf.SetURL(base)
	srv := &http.Server{Handler: sandboxMux(sf, os), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(cmd.OutOrStdout(), "sandbox: Salesforce login and instance URL %s\nsandbox: OneSpan base URL %s\n", base, base)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sf.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
