package sfpush

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/onespan"
	"github.com/countersign/countersign/internal/salesforce"
	"github.com/countersign/countersign/internal/tracing"
)

// NewTenant builds the Salesforce and OneSpan clients of a configured tenant;
// src supplies (and refreshes) its Salesforce tokens.
func NewTenant(id string, cfg *config.Tenant, src *auth.Source, m *metrics.Metrics, log *slog.Logger) (Tenant, error) {
	sfCfg := salesforce.Config{
		InstanceURL: cfg.Salesforce.InstanceURL,
		APIVersion:  cfg.Salesforce.APIVersion,
		HTTPClient:  &http.Client{Transport: tracing.Transport(src.Client().Transport)},
		Observer:    Observer(m, id),
	}
	if sfCfg.InstanceURL == "" {
		// The instance comes with the token (and may move after a refresh).
		sfCfg.InstanceURLSource = func(ctx context.Context) (string, error) {
			_, u, err := src.Token(ctx)
			return u, err
		}
	}
	osc, err := onespan.New(onespan.Config{
		BaseURL:      cfg.OneSpan.BaseURL,
		APIKey:       cfg.OneSpan.APIKey,
		ClientID:     cfg.OneSpan.ClientApp.ClientID,
		ClientSecret: cfg.OneSpan.ClientApp.Secret,
		HTTPClient:   &http.Client{Transport: tracing.Transport(nil)},
		Logger:       log,
	})
	if err != nil {
		return Tenant{}, err
	}
	return Tenant{ID: id, Config: cfg, Salesforce: salesforce.New(sfCfg), OneSpan: osc}, nil
}
