package admin

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/history"
)

// consolePrefix is the operator web page's root (ARCHITECTURE §5).
const consolePrefix = "/admin"

// loginCookie carries the sign-in form's CSRF token (double submit: there
// is no session yet to tie it to).
const loginCookie = "cs_admin_login"

// sessionKeyCtx holds the request's session in the echo context.
const sessionKeyCtx = "admin.session"

//go:embed templates/console/*.html
var consoleFS embed.FS

//go:embed assets/htmx.min.js assets/htmx.LICENSE assets/admin.css
var assetFS embed.FS

// contentSecurityPolicy allows only this origin's script and style (htmx and
// admin.css): no inline script, no CDN, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// console is the operator web page: server-rendered html/template pages,
// plain links and forms (htmx only boosts them), a session cookie and a
// synchronizer CSRF token on every form.
type console struct {
	a        *Admin
	sessions *sessions
	pages    map[string]*template.Template
}

func newConsole(a *Admin) *console {
	o := a.o
	idle, maxAge := o.SessionIdle, o.SessionMaxAge
	if maxAge <= 0 {
		maxAge = 12 * time.Hour
	}
	if idle <= 0 {
		idle = 2 * time.Hour
	}
	idle = min(idle, maxAge)
	secure := strings.HasPrefix(strings.ToLower(o.Config.Server.PublicURL), "https://")
	cs := &console{a: a, pages: map[string]*template.Template{},
		sessions: &sessions{js: o.Queue.JetStream(), replicas: o.Config.NATS.Replicas, idle: idle, maxAge: maxAge, now: o.Now, secure: secure}}
	names, err := fs.Glob(consoleFS, "templates/console/*.html")
	if err != nil {
		panic(err)
	}
	for _, name := range names {
		base := path.Base(name)
		if base == "layout.html" {
			continue
		}
		cs.pages[strings.TrimSuffix(base, ".html")] = template.Must(template.New(base).Funcs(viewFuncs).
			ParseFS(consoleFS, "templates/console/layout.html", name))
	}
	return cs
}

func (cs *console) register(g *echo.Group) {
	g.GET("/assets/:name", cs.asset)
	pages := g.Group("", pageHeaders)
	pages.GET("/login", cs.loginForm)
	pages.POST("/login", cs.login)
	signed := pages.Group("", cs.requireSession)
	signed.GET("", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, consolePrefix+"/") })
	signed.GET("/", cs.overview)
	signed.POST("/logout", cs.logout)
	signed.GET("/tenants/:tenant", cs.tenant)
	signed.GET("/tenants/:tenant/disconnect", cs.disconnectForm)
	signed.POST("/tenants/:tenant/disconnect", cs.disconnect)
	signed.POST("/tenants/:tenant/reconcile", cs.reconcile)
	signed.GET("/events", cs.events)
	signed.GET("/events/:tenant/:key", cs.event)
	signed.GET("/packages", cs.pkg)
	signed.GET("/deadletters", cs.deadLetters)
	signed.GET("/replay", cs.replayForm)
	signed.POST("/replay/preview", cs.replayPreview)
	signed.POST("/replay", cs.replay)
	signed.POST("/purge/preview", cs.purgePreview)
	signed.POST("/purge", cs.purge)
}

// pageHeaders keep pages out of caches, frames and referrers, and allow
// only this origin's script.
func pageHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		return next(c)
	}
}

func (cs *console) asset(c echo.Context) error {
	name := c.Param("name")
	types := map[string]string{"htmx.min.js": "text/javascript; charset=utf-8", "admin.css": "text/css; charset=utf-8",
		"htmx.LICENSE": "text/plain; charset=utf-8"}
	ct, ok := types[name]
	if !ok {
		return c.String(http.StatusNotFound, "not found")
	}
	b, err := assetFS.ReadFile("assets/" + name)
	if err != nil {
		return c.String(http.StatusNotFound, "not found")
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("X-Content-Type-Options", "nosniff")
	return c.Blob(http.StatusOK, ct, b)
}

// requireSession lets a request through with a live session; a GET without
// one goes to the sign-in page, a POST without one or without the session's
// CSRF token is refused with 403.
func (cs *console) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var se session
		err := errNoSession
		if ck, cerr := c.Cookie(SessionCookie); cerr == nil && ck.Value != "" {
			se, err = cs.sessions.lookup(c.Request().Context(), ck.Value)
		}
		post := c.Request().Method != http.MethodGet && c.Request().Method != http.MethodHead
		switch {
		case errors.Is(err, errNoSession) && post:
			cs.a.log.Warn("admin page request refused", "reason", "no session", "path", c.Path(), "remote", c.RealIP())
			return cs.message(c, http.StatusForbidden, message{Title: "Sign in again",
				Paragraphs: []string{"This action needs a signed-in session, and this browser has none (it ended or was never started). Nothing was changed."},
				Links:      []link{{"Sign in", consolePrefix + "/login"}}})
		case errors.Is(err, errNoSession):
			q := url.Values{}
			if next := c.Request().URL.RequestURI(); next != consolePrefix+"/" {
				q.Set("next", next)
			}
			u := consolePrefix + "/login"
			if len(q) > 0 {
				u += "?" + q.Encode()
			}
			return c.Redirect(http.StatusSeeOther, u)
		case err != nil:
			cs.a.log.Error("admin session check failed", "error", err)
			return cs.unavailable(c)
		}
		if post {
			token := c.FormValue("csrf")
			if token == "" {
				token = c.Request().Header.Get("X-CSRF-Token")
			}
			if !sameToken(token, se.CSRF) {
				cs.a.log.Warn("admin page request refused", "reason", "csrf", "path", c.Path(), "remote", c.RealIP())
				return cs.message(c, http.StatusForbidden, message{Title: "This form has expired",
					Paragraphs: []string{"The form was not sent from this session's page (its security token is missing or wrong). Nothing was changed."},
					Links:      []link{{"Back to the tenants", consolePrefix + "/"}}})
			}
		}
		c.Set(sessionKeyCtx, se)
		c.Set(PrincipalKey, "session")
		return next(c)
	}
}

// view is what every page template receives.
type view struct {
	Title    string
	Nav      string
	CSRF     string
	SignedIn bool
	Tenants  []string
	Events   []string
	Data     any
}

func (cs *console) view(c echo.Context, title, nav string, data any) view {
	v := view{Title: title, Nav: nav, Tenants: cs.a.tenants, Events: callback.Names, Data: data}
	if se, ok := c.Get(sessionKeyCtx).(session); ok {
		v.CSRF, v.SignedIn = se.CSRF, true
	}
	return v
}

func (cs *console) render(c echo.Context, status int, page string, v view) error {
	t, ok := cs.pages[page]
	if !ok {
		return fmt.Errorf("admin page %s: no template", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		cs.a.log.Error("admin page render failed", "page", page, "error", err)
		return c.String(http.StatusInternalServerError, "page could not be rendered")
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// message is a plain page: a heading, sentences, links onward.
type message struct {
	OK         bool
	Title      string
	Paragraphs []string
	Detail     string
	Links      []link
}

type link struct{ Text, Href string }

func (cs *console) message(c echo.Context, status int, m message) error {
	return cs.render(c, status, "message", cs.view(c, m.Title, "", m))
}

func (cs *console) unavailable(c echo.Context) error {
	return cs.message(c, http.StatusServiceUnavailable, message{Title: "The store is not answering",
		Paragraphs: []string{"Countersign could not reach NATS for this page. Nothing was changed; try again in a moment."},
		Links:      []link{{"Tenants", consolePrefix + "/"}}})
}

// fail answers an error of a page: a request to fix (400), something not
// found (404), else the store (503).
func (cs *console) fail(c echo.Context, err error) error {
	var bad *badRequest
	switch {
	case errors.As(err, &bad):
		return cs.message(c, http.StatusBadRequest, message{Title: "Check the form", Paragraphs: []string{bad.msg},
			Links: []link{{"Back", consolePrefix + "/"}}})
	case errors.Is(err, history.ErrNotFound):
		return cs.message(c, http.StatusNotFound, message{Title: "Not in the delivery history",
			Paragraphs: []string{"No delivery attempt of this event is recorded: it was never delivered, or its history aged out (queue.retention)."},
			Links:      []link{{"Search events", consolePrefix + "/events"}}})
	}
	cs.a.log.Error("admin page failed", "path", c.Path(), "error", err)
	return cs.unavailable(c)
}

// tenantParam returns a configured tenant named by the path or the form, or
// answers 404.
func (cs *console) tenantParam(c echo.Context, id string) (string, bool, error) {
	if cs.a.source(id) == nil {
		return "", false, cs.message(c, http.StatusNotFound, message{Title: "Unknown tenant",
			Paragraphs: []string{"No tenant of this name is configured."}, Links: []link{{"Tenants", consolePrefix + "/"}}})
	}
	return id, true, nil
}

// wired answers 503 unless ok: the process has the history, replayer or
// reconciler the page needs.
func (cs *console) wired(c echo.Context, ok bool) (bool, error) {
	if ok {
		return true, nil
	}
	return false, cs.message(c, http.StatusServiceUnavailable, message{Title: "Not available here",
		Paragraphs: []string{"This listener process does not serve delivery history, replay or reconciliation."}})
}

func (cs *console) ctx(c echo.Context) context.Context { return c.Request().Context() }

// safeNext keeps a post-sign-in redirect on the page itself.
func safeNext(next string) string {
	if !strings.HasPrefix(next, consolePrefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return consolePrefix + "/"
	}
	return next
}
