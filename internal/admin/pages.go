package admin

import (
	"bytes"
	"embed"
	"html/template"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/logging"
)

//go:embed templates/*.html
var templateFS embed.FS

var resultPage = template.Must(template.ParseFS(templateFS, "templates/result.html"))

// page is one plain result page: a heading, a few sentences, what to do next.
type page struct {
	OK         bool
	Title      string
	Paragraphs []string
	Next       string
	Command    string
	Detail     string
}

func renderPage(c echo.Context, status int, p page) error {
	var buf bytes.Buffer
	if err := resultPage.Execute(&buf, p); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	return c.HTMLBlob(status, buf.Bytes())
}

// denyPage is the Denier of browser routes.
func denyPage(c echo.Context, status int, _ string) error {
	p := page{Title: "This connect link cannot be used",
		Paragraphs: []string{"The link is not valid: it was already used, it expired (links last 10 minutes), or it is for another tenant."},
		Next:       "Ask for a new link with", Command: "listener connect --tenant <tenant>"}
	if status == 429 {
		p = page{Title: "Too many failed attempts", Paragraphs: []string{"This address failed too often. Wait a minute, then use a new link."}}
	}
	return renderPage(c, status, p)
}

// scrub removes anything that looks like a credential from a text shown on a
// page or stored as an outcome.
func scrub(s string) string { return (*logging.Secrets)(nil).Scrub(s) }

func pageConnected(tenant, instance string) page {
	p := page{OK: true, Title: "Tenant " + tenant + " is connected to Salesforce",
		Paragraphs: []string{"Countersign stored the connection and will deliver this tenant's events to Salesforce."},
		Next:       "You can close this window. To check the connection later, run", Command: "listener tokens status"}
	if instance != "" {
		p.Paragraphs = append(p.Paragraphs, "Salesforce instance: "+instance)
	}
	return p
}

func pageDenied(tenant string) page {
	return page{Title: "Salesforce access was not granted for tenant " + tenant,
		Paragraphs: []string{"Salesforce reports that access was denied, so nothing was stored and the tenant's connection did not change."},
		Next:       "To try again, run", Command: "listener connect --tenant " + tenant}
}

func pageRefused(tenant string, err error) page {
	return page{Title: "Salesforce refused the connection for tenant " + tenant,
		Paragraphs: []string{"Nothing was stored. Check the connected app's callback URL, OAuth scopes (api, refresh_token) and that the user may use the app."},
		Next:       "Then run", Command: "listener connect --tenant " + tenant, Detail: scrub(err.Error())}
}

func pageTokenError(tenant string, err error) page {
	return page{Title: "The connection for tenant " + tenant + " could not be completed",
		Paragraphs: []string{"Salesforce sent the browser back, but exchanging the authorization for tokens failed. Nothing was stored."},
		Next:       "Check the client id and secret in the configuration, then run", Command: "listener connect --tenant " + tenant,
		Detail: scrub(err.Error())}
}

func pageBadState(err error) page {
	return page{Title: "This sign-in answer cannot be used",
		Paragraphs: []string{"It does not match a connection in progress: it was already used, it is older than 10 minutes, or it was not started here. Nothing was stored."},
		Next:       "Start the connection again with", Command: "listener connect --tenant <tenant>", Detail: scrub(err.Error())}
}

func pageUnknownTenant() page {
	return page{Title: "Unknown tenant", Paragraphs: []string{"No tenant of this name is configured for Salesforce."}}
}

func pageUnavailable(tenant string) page {
	p := page{Title: "The connection could not be started",
		Paragraphs: []string{"Countersign could not reach its store (NATS). Nothing was changed; try again in a moment."}}
	if tenant != "" && tenantID.MatchString(tenant) {
		p.Command = "listener connect --tenant " + tenant
		p.Next = "Then run"
	}
	return p
}
