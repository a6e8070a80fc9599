package admin

import (
	"github.com/labstack/echo/v4"
)

// APIPrefix is the JSON admin API's root (ARCHITECTURE §5).
const APIPrefix = "/api/admin/v1"

// Register adds every admin route to e. Each topic registers its routes on
// the group that carries its authentication; a new topic adds one line here.
func (a *Admin) Register(e *echo.Echo) {
	api := e.Group(APIPrefix, noStore, a.auth.RequireBearer(denyJSON))
	a.registerTenants(api)
	a.registerOperations(api)

	// Browser routes: the start route authenticates by itself (bearer,
	// session or a single-use ticket); the callback is authenticated by the
	// OAuth state.
	oauth := e.Group("/oauth/salesforce", noStore)
	a.registerOAuth(oauth)

	// The operator web page: session cookie and CSRF tokens (console.go).
	a.console.register(e.Group(consolePrefix))
}

// noStore keeps admin answers (tenant states, connect links, result pages)
// out of every cache and referrer.
func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		return next(c)
	}
}
