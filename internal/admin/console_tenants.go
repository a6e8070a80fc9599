package admin

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/reconcile"
	"github.com/countersign/countersign/internal/replay"
)

// overviewData is the first page: every tenant, its connection and queues.
type overviewData struct {
	Tenants        []Tenant
	NeedsReconnect []Tenant
	Pending        uint64
	DeadLetters    uint64
}

func (cs *console) overview(c echo.Context) error {
	var d overviewData
	for _, id := range cs.a.tenants {
		t, err := cs.a.tenantView(cs.ctx(c), id)
		if err != nil {
			return cs.fail(c, err)
		}
		d.Tenants = append(d.Tenants, t)
		if t.State != auth.StateConnected {
			d.NeedsReconnect = append(d.NeedsReconnect, t)
		}
		d.Pending += t.PendingMessages
		d.DeadLetters += t.DeadLetters
	}
	return cs.render(c, http.StatusOK, "overview", cs.view(c, "Tenants and queues", "tenants", d))
}

// tenantData is one tenant's page.
type tenantData struct {
	Tenant      Tenant
	DeadLetters []replay.DeadLetter
	MoreDead    bool
	Lookback    string
	CanRecon    bool
}

func (cs *console) tenant(c echo.Context) error {
	id, ok, err := cs.tenantParam(c, c.Param("tenant"))
	if !ok {
		return err
	}
	t, err := cs.a.tenantView(cs.ctx(c), id)
	if err != nil {
		return cs.fail(c, err)
	}
	d := tenantData{Tenant: t, Lookback: shortDuration(cs.a.o.Config.Reconcile.Lookback.D()), CanRecon: cs.a.o.Reconciler != nil}
	if cs.a.o.Replayer != nil && t.DeadLetters > 0 {
		page, err := cs.a.deadLetters(cs.ctx(c), id, EventQuery{Limit: 10})
		if err != nil {
			return cs.fail(c, err)
		}
		d.DeadLetters, d.MoreDead = page.DeadLetters, page.Next != ""
	}
	return cs.render(c, http.StatusOK, "tenant", cs.view(c, "Tenant "+id, "tenants", d))
}

func (cs *console) disconnectForm(c echo.Context) error {
	id, ok, err := cs.tenantParam(c, c.Param("tenant"))
	if !ok {
		return err
	}
	return cs.render(c, http.StatusOK, "disconnect", cs.view(c, "Disconnect tenant "+id, "tenants", id))
}

func (cs *console) disconnect(c echo.Context) error {
	id, ok, err := cs.tenantParam(c, c.Param("tenant"))
	if !ok {
		return err
	}
	derr := cs.a.source(id).Disconnect(cs.ctx(c))
	t, err := cs.a.tenantView(cs.ctx(c), id)
	if err != nil {
		return cs.fail(c, err)
	}
	if derr != nil && (t.State != auth.StateDisconnected || t.Grant.Stored) {
		return cs.fail(c, derr)
	}
	cs.a.log.Info("salesforce tenant disconnected by operator", "tenant", id, "via", "page", "revoke_failed", derr != nil)
	m := message{OK: true, Title: "Tenant " + id + " is disconnected",
		Paragraphs: []string{"Its stored Salesforce tokens were deleted. Its events wait in the queue until it is connected again."},
		Links:      []link{{"Tenant " + id, tenantHref(id)}, {"Tenants", consolePrefix + "/"}}}
	if derr != nil {
		m.Paragraphs = append(m.Paragraphs, "Revoking the grant at Salesforce failed: revoke the app's access in Salesforce Setup (Connected Apps OAuth Usage).")
		m.Detail = scrub(derr.Error())
	}
	return cs.message(c, http.StatusOK, m)
}

// reconcileData is the answer page of an on-demand reconciliation.
type reconcileData struct {
	Tenant string
	Since  string
	Result reconcile.Result
}

func (cs *console) reconcile(c echo.Context) error {
	id, ok, err := cs.tenantParam(c, c.Param("tenant"))
	if !ok {
		return err
	}
	if ok, err := cs.wired(c, cs.a.o.Reconciler != nil); !ok {
		return err
	}
	since, err := cs.a.lookback(c.FormValue("since"))
	if err != nil {
		return cs.fail(c, err)
	}
	_ = http.NewResponseController(c.Response()).SetWriteDeadline(cs.a.now().Add(longOperation))
	res, err := cs.a.reconcile(cs.ctx(c), id, since)
	if err != nil {
		cs.a.log.Warn("reconciliation from the page failed", "tenant", id, "error", err)
		return cs.message(c, http.StatusBadGateway, message{Title: "Reconciliation of tenant " + id + " failed",
			Paragraphs: []string{"OneSpan could not be asked which packages changed, or the store did not answer. Nothing more was stored than the detail says."},
			Detail:     scrub(err.Error()), Links: []link{{"Tenant " + id, tenantHref(id)}}})
	}
	return cs.render(c, http.StatusOK, "reconciled", cs.view(c, "Tenant "+id+" reconciled", "tenants",
		reconcileData{Tenant: id, Since: shortDuration(since), Result: res}))
}

func tenantHref(id string) string { return consolePrefix + "/tenants/" + url.PathEscape(id) }

func connectHref(id string) string {
	return fmt.Sprintf("%s?%s", startPath, url.Values{"tenant": {id}}.Encode())
}

// shortDuration writes whole days and hours as an operator types them (7d,
// 48h).
func shortDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "48h"
	case d%(24*time.Hour) == 0 && d >= 72*time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}
