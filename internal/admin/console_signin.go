package admin

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// loginData is the sign-in page.
type loginData struct {
	Next    string
	Problem string
}

// loginForm shows the sign-in form with a fresh double-submit token.
func (cs *console) loginForm(c echo.Context) error {
	if ck, err := c.Cookie(SessionCookie); err == nil && ck.Value != "" {
		if _, err := cs.sessions.lookup(cs.ctx(c), ck.Value); err == nil {
			return c.Redirect(http.StatusSeeOther, safeNext(c.QueryParam("next")))
		}
	}
	return cs.loginPage(c, http.StatusOK, c.QueryParam("next"), "")
}

func (cs *console) loginPage(c echo.Context, status int, next, problem string) error {
	token, err := randomToken()
	if err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: loginCookie, Value: token, Path: consolePrefix + "/login", HttpOnly: true,
		Secure: cs.sessions.secureRequest(c), SameSite: http.SameSiteStrictMode, MaxAge: int((30 * time.Minute).Seconds())})
	v := cs.view(c, "Sign in", "", loginData{Next: safeNext(next), Problem: problem})
	v.CSRF = token
	return cs.render(c, status, "login", v)
}

// login trades an admin token for a session. Wrong tokens count towards the
// address's failure limit, like the API's.
func (cs *console) login(c echo.Context) error {
	next := c.FormValue("next")
	if blocked, retry := cs.a.auth.blocked(c); blocked {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retry))
		return cs.loginPage(c, http.StatusTooManyRequests, next, "Too many failed attempts from this address. Wait a minute, then try again.")
	}
	ck, err := c.Cookie(loginCookie)
	if err != nil || !sameToken(c.FormValue("csrf"), ck.Value) {
		cs.a.log.Warn("admin page request refused", "reason", "csrf", "path", c.Path(), "remote", c.RealIP())
		return cs.loginPage(c, http.StatusForbidden, next, "The sign-in form expired or was not sent from this page. Try again.")
	}
	if !cs.a.auth.bearer.Match(c.FormValue("token")) {
		return cs.a.auth.Refuse(c, func(c echo.Context, status int, _ string) error {
			c.Response().Header().Del(echo.HeaderWWWAuthenticate)
			return cs.loginPage(c, status, next, "That admin token is not valid.")
		}, "page")
	}
	if old, err := c.Cookie(SessionCookie); err == nil {
		_ = cs.sessions.end(cs.ctx(c), old.Value) // a sign-in never keeps an earlier session id
	}
	se, err := cs.sessions.create(cs.ctx(c))
	if err != nil {
		cs.a.log.Error("admin session not created", "error", err)
		return cs.unavailable(c)
	}
	cs.sessions.setCookie(c, se.ID)
	c.SetCookie(&http.Cookie{Name: loginCookie, Value: "", Path: consolePrefix + "/login", HttpOnly: true,
		Secure: cs.sessions.secureRequest(c), SameSite: http.SameSiteStrictMode, MaxAge: -1})
	cs.a.log.Info("admin signed in to the web page", "remote", c.RealIP())
	return c.Redirect(http.StatusSeeOther, safeNext(next))
}

func (cs *console) logout(c echo.Context) error {
	se, _ := c.Get(sessionKeyCtx).(session)
	if err := cs.sessions.end(cs.ctx(c), se.ID); err != nil {
		cs.a.log.Warn("admin session not deleted", "error", err)
	}
	cs.sessions.clearCookie(c)
	return c.Redirect(http.StatusSeeOther, consolePrefix+"/login")
}
