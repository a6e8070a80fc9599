package admin

import (
	"net/http"
	"regexp"

	"github.com/labstack/echo/v4"
)

// errorBody is every JSON error: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}

// denyJSON is the Denier of the JSON API.
func denyJSON(c echo.Context, status int, message string) error {
	return c.JSON(status, errorBody{Error: message})
}

func jsonError(c echo.Context, status int, message string) error {
	return c.JSON(status, errorBody{Error: message})
}

// tenantID is the shape config validation allows (ARCHITECTURE §4).
var tenantID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// unknownTenant answers a request naming a tenant that is not configured; a
// name that cannot be a tenant id is not echoed back.
func unknownTenant(c echo.Context, tenant string) error {
	if !tenantID.MatchString(tenant) {
		return jsonError(c, http.StatusNotFound, "tenant not configured")
	}
	return jsonError(c, http.StatusNotFound, "tenant "+tenant+": not configured")
}
