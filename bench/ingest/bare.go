package main

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// runBare serves the baseline: a bare echo v4 router whose callback route
// only answers 200 (net/http discards the small body). /healthz lets the
// harness wait for it.
func runBare(addr string) error {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/v1/callbacks/:tenant", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	e.GET("/healthz", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	return e.Start(addr)
}
