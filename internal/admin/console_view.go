package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/replay"
)

// viewFuncs are the page templates' helpers: formatting only.
var viewFuncs = template.FuncMap{
	"time":        fmtTime,
	"timeptr":     func(t *time.Time) string { return fmtTimePtr(t) },
	"tenantHref":  tenantHref,
	"connectHref": connectHref,
	"eventHref": func(tenant, key string) string {
		return consolePrefix + "/events/" + url.PathEscape(tenant) + "/" + url.PathEscape(key)
	},
	"packageHref": func(tenant, pkg string) string {
		return consolePrefix + "/packages?" + url.Values{"tenant": {tenant}, "package": {pkg}}.Encode()
	},
	"short":      shortKey,
	"stateLabel": stateLabel,
	"stateClass": stateClass,
	"connected":  func(state string) bool { return state == auth.StateConnected },
	"ratio": func(r *float64) string {
		if r == nil {
			return "—"
		}
		return fmt.Sprintf("%.0f%%", *r*100)
	},
	"age": func(s *int64) string {
		if s == nil {
			return "—"
		}
		return (time.Duration(*s) * time.Second).String()
	},
	"join":    strings.Join,
	"pretty":  prettyJSON,
	"outcome": outcomeLabel,
	"counts":  sortedCounts,
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
	"sub": func(a, b int) int { return a - b },
	"dl": func(csrf, tenant string, list []replay.DeadLetter) dlView {
		return dlView{CSRF: csrf, Tenant: tenant, List: list}
	},
	"fields": func(tenants, events []string, f filterForm) fieldsView {
		return fieldsView{Tenants: tenants, Events: events, Filter: f}
	},
}

// dlView feeds the dead-letter table partial.
type dlView struct {
	CSRF, Tenant string
	List         []replay.DeadLetter
}

// fieldsView feeds the filter fields partial.
type fieldsView struct {
	Tenants, Events []string
	Filter          filterForm
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return fmtTime(*t)
}

func stateLabel(state string) string {
	switch state {
	case auth.StateConnected:
		return "Connected"
	case auth.StateNeedsReconnect:
		return "Needs reconnecting"
	case auth.StateDisconnected:
		return "Disconnected"
	case StateNeverConnected:
		return "Never connected"
	}
	return state
}

func stateClass(state string) string {
	if state == auth.StateConnected {
		return "good"
	}
	return "bad"
}

func outcomeLabel(o string) string {
	switch o {
	case "delivered":
		return "Delivered"
	case "retried":
		return "Retrying"
	case "dead_lettered":
		return "Dead-lettered"
	case "paused":
		return "Paused (tenant not connected)"
	case "waiting":
		return "Not attempted yet"
	}
	return o
}

// countItem is one outcome and how many events have it.
type countItem struct {
	Outcome string
	N       int
}

func sortedCounts(m map[string]int) []countItem {
	out := make([]countItem, 0, len(m))
	for k, v := range m {
		out = append(out, countItem{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Outcome < out[j].Outcome })
	return out
}

func prettyJSON(b json.RawMessage) string {
	if len(b) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if json.Indent(&buf, b, "", "  ") != nil {
		return string(b)
	}
	return buf.String()
}
