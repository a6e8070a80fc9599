package auth

import "github.com/countersign/countersign/internal/config"

// AppFromConfig maps a tenant's salesforce config block to its connected app.
func AppFromConfig(sf config.Salesforce, publicURL string) SalesforceApp {
	return SalesforceApp{
		LoginURL:              sf.LoginURL,
		ClientID:              sf.ClientID,
		ClientSecret:          sf.ClientSecret,
		RedirectURL:           CallbackURL(publicURL),
		SessionTTL:            sf.SessionTTL.D(),
		BootstrapRefreshToken: sf.RefreshToken,
		InstanceURL:           sf.InstanceURL,
	}
}
