// Package deploy holds checks on the deployment artefacts that need no cluster and no helm:
// the Grafana dashboard and the alert rules must only use metrics and labels that the
// listener really exports (ARCHITECTURE §9, internal/metrics).
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/countersign/countersign/internal/metrics"
)

const (
	dashboardPath  = "grafana/countersign.json"
	chartRulesPath = "helm/countersign/files/rules.yaml"
	plainRulesPath = "prometheus/countersign-rules.yaml"
)

// family is what a query may rely on for one exported metric name.
type family struct {
	typ    dto.MetricType
	labels map[string]bool
}

// exportedFamilies builds the metrics the way the listener does and returns them by name.
func exportedFamilies(t *testing.T) map[string]family {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.InitTenant("t", []string{"PACKAGE_COMPLETE"})
	// InitTenant cannot pre-create this one: operation and status are open sets.
	m.SalesforceRequests.WithLabelValues("t", "upsert", "200")

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	fams := map[string]family{}
	for _, mf := range mfs {
		f := family{typ: mf.GetType(), labels: map[string]bool{}}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				f.labels[lp.GetName()] = true
			}
		}
		fams[mf.GetName()] = f
	}
	// A collector that InitTenant leaves empty is not gathered; then the checks below
	// would call its metric unknown. Fail here with the reason instead.
	collectors := 0
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if _, ok := v.Field(i).Interface().(prometheus.Collector); ok {
			collectors++
		}
	}
	if collectors != len(fams) {
		t.Fatalf("metrics.Metrics has %d collectors but only %d families were gathered (%v): "+
			"create a series of the new one in exportedFamilies", collectors, len(fams), sortedKeys(fams))
	}
	return fams
}

// targetLabels are added by Prometheus at scrape time (job, instance) or by the
// ServiceMonitor's relabelling (namespace, pod, ...), so queries may use them on any metric.
var targetLabels = map[string]bool{
	"job": true, "instance": true, "namespace": true, "pod": true, "service": true, "container": true, "endpoint": true,
}

// lookup resolves a series name to its family and the labels a selector may use on it.
func lookup(fams map[string]family, name string) (family, map[string]bool, bool) {
	if f, ok := fams[name]; ok {
		return f, union(f.labels, targetLabels), true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if !found {
			continue
		}
		f, ok := fams[base]
		if !ok || f.typ != dto.MetricType_HISTOGRAM {
			continue
		}
		if suffix == "_bucket" {
			return f, union(f.labels, targetLabels, map[string]bool{"le": true}), true
		}
		return f, union(f.labels, targetLabels), true
	}
	return family{}, nil, false
}

// checkExpr parses a PromQL expression and reports every metric or label it uses that the
// listener does not export, including the labels of by/without/on/ignoring/group_x clauses.
func checkExpr(t *testing.T, fams map[string]family, where, expr string) parser.Expr {
	t.Helper()
	e, problems := exprProblems(fams, expr)
	for _, p := range problems {
		t.Errorf("%s: %s\n%s", where, p, expr)
	}
	return e
}

func exprProblems(fams map[string]family, expr string) (parser.Expr, []string) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, []string{"PromQL does not parse: " + err.Error()}
	}
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	selectors := 0
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			selectors++
			_, labels, ok := lookup(fams, n.Name)
			if !ok {
				report("metric %q is not exported by internal/metrics", n.Name)
				return nil
			}
			for _, lm := range n.LabelMatchers {
				if lm.Name != model.MetricNameLabel && !labels[lm.Name] {
					report("metric %s has no label %q", n.Name, lm.Name)
				}
			}
		case *parser.AggregateExpr:
			groupingProblems(fams, n.Expr, n.Grouping, report)
		case *parser.BinaryExpr:
			if vm := n.VectorMatching; vm != nil {
				for _, side := range []parser.Node{n.LHS, n.RHS} {
					groupingProblems(fams, side, vm.MatchingLabels, report)
					groupingProblems(fams, side, vm.Include, report)
				}
			}
		}
		return nil
	})
	if selectors == 0 {
		report("expression selects no metric")
	}
	return e, problems
}

// groupingProblems reports grouping labels that a metric under node does not carry.
func groupingProblems(fams map[string]family, node parser.Node, grouping []string, report func(string, ...any)) {
	if len(grouping) == 0 {
		return
	}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	for _, l := range grouping {
		for _, name := range names {
			if _, labels, ok := lookup(fams, name); ok && !labels[l] {
				report("groups by %q but metric %s has no such label", l, name)
			}
		}
	}
}

// keepsLabel says whether the result of e still carries label l, following the PromQL rules
// for the operators the rules use, so an annotation's {{ $labels.tenant }} is never empty.
func keepsLabel(fams map[string]family, e parser.Expr, l string) bool {
	switch n := e.(type) {
	case *parser.ParenExpr:
		return keepsLabel(fams, n.Expr, l)
	case *parser.VectorSelector:
		_, labels, ok := lookup(fams, n.Name)
		return ok && labels[l]
	case *parser.MatrixSelector:
		return keepsLabel(fams, n.VectorSelector, l)
	case *parser.AggregateExpr:
		if n.Without {
			return !slices.Contains(n.Grouping, l) && keepsLabel(fams, n.Expr, l)
		}
		return slices.Contains(n.Grouping, l)
	case *parser.Call:
		for _, a := range n.Args {
			if a.Type() == parser.ValueTypeVector || a.Type() == parser.ValueTypeMatrix {
				return keepsLabel(fams, a, l)
			}
		}
		return false
	case *parser.BinaryExpr:
		if n.LHS.Type() == parser.ValueTypeScalar {
			return keepsLabel(fams, n.RHS, l)
		}
		if n.VectorMatching != nil && n.VectorMatching.Card == parser.CardOneToMany {
			return keepsLabel(fams, n.RHS, l)
		}
		return keepsLabel(fams, n.LHS, l)
	}
	return false
}

// grafanaVars are the dashboard variables a query may use, with a value that keeps the
// query valid PromQL once substituted.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"${__rate_interval}", "5m",
	"$__interval", "1m",
	"${__interval}", "1m",
	"$__range", "1h",
	"${__range}", "1h",
	"${tenant:regex}", ".*",
	"${tenant}", ".*",
	"$tenant", ".*",
)

type dashboard struct {
	SchemaVersion int `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row keeps its panels here
}

func flatten(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

const datasourceRef = `{"type":"prometheus","uid":"${datasource}"}`

func compactJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if len(raw) == 0 {
		return ""
	}
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compact %s: %v", raw, err)
	}
	return b.String()
}

var labelValues = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

func TestDashboardQueriesUseExportedMetricsAndLabels(t *testing.T) {
	fams := exportedFamilies(t)
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want a current Grafana schema (>= 36)", d.SchemaVersion)
	}

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || string(v.Query) != `"prometheus"` {
				t.Errorf("datasource variable: type %q query %s, want a prometheus datasource variable", v.Type, v.Query)
			}
		case "tenant":
			if got := compactJSON(t, v.Datasource); got != datasourceRef {
				t.Errorf("tenant variable datasource %s, want %s", got, datasourceRef)
			}
			var query string
			if err := json.Unmarshal(v.Query, &query); err != nil || query != v.Definition {
				t.Errorf("tenant variable: query %s, want the string %q (its definition)", v.Query, v.Definition)
			}
			m := labelValues.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("tenant variable: definition %q is not label_values(metric, label)", v.Definition)
				continue
			}
			if f, ok := fams[m[1]]; !ok || !f.labels[m[2]] {
				t.Errorf("tenant variable: %s has no label %q", m[1], m[2])
			}
		default:
			t.Errorf("unexpected dashboard variable %q: add it to grafanaVars", v.Name)
		}
	}
	if !vars["datasource"] || !vars["tenant"] {
		t.Errorf("variables %v: want datasource and tenant", sortedKeys(vars))
	}

	ids := map[int]string{}
	queries := 0
	for _, p := range flatten(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if got := compactJSON(t, p.Datasource); got != datasourceRef {
			t.Errorf("panel %q: datasource %s, want %s", p.Title, got, datasourceRef)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			where := p.Title
			if ds := compactJSON(t, tg.Datasource); ds != "" && ds != datasourceRef {
				t.Errorf("panel %q target %d: datasource %s, want %s", p.Title, i, ds, datasourceRef)
			}
			expr := grafanaVars.Replace(tg.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("panel %q: unknown variable in %q", where, tg.Expr)
				continue
			}
			checkExpr(t, fams, where, expr)
			queries++
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries found in %s", queries, dashboardPath)
	}
}

func TestAlertRulesParseAndUseExportedMetricsAndLabels(t *testing.T) {
	fams := exportedFamilies(t)
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile(chartRulesPath, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("rules: %v", err)
	}
	if groups == nil {
		t.FailNow()
	}

	wantAlerts := map[string]string{ // alert -> a metric it must watch (the five alerts)
		"CountersignTenantDisconnected":     "countersign_tenant_connected",
		"CountersignDeadLettersGrowing":     "countersign_events_processed_total",
		"CountersignQueueLagRising":         "countersign_queue_pending_messages",
		"CountersignIngestUnavailable":      "countersign_callbacks_received_total",
		"CountersignSalesforceAPIUsageHigh": "countersign_salesforce_api_usage_ratio",
	}
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			where := g.Name + "/" + name
			e := checkExpr(t, fams, where, r.Expr)
			if r.Record != "" {
				continue
			}
			seen[r.Alert] = true
			if metric, ok := wantAlerts[r.Alert]; ok && !strings.Contains(r.Expr, metric) {
				t.Errorf("%s: expression does not use %s: %s", where, metric, r.Expr)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity label %q, want critical, warning or info", where, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description"} {
				if !strings.Contains(r.Annotations[a], "$labels.tenant") {
					t.Errorf("%s: annotation %s does not name the tenant ({{ $labels.tenant }})", where, a)
				}
			}
			if e != nil && !keepsLabel(fams, e, "tenant") {
				t.Errorf("%s: the expression's result has no tenant label, so {{ $labels.tenant }} is empty: %s", where, r.Expr)
			}
		}
	}
	for a := range wantAlerts {
		if !seen[a] {
			t.Errorf("alert %s missing from %s", a, chartRulesPath)
		}
	}
}

func TestPlainRuleFileIsTheChartRuleFile(t *testing.T) {
	chart, err := os.ReadFile(chartRulesPath)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := os.ReadFile(plainRulesPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chart, plain) {
		t.Errorf("%s differs from %s: it must stay a symlink to (or a copy of) the chart's rules", plainRulesPath, chartRulesPath)
	}
}

// TestCheckerCatchesUnknownNames guards the checker itself: a typo in a metric or a label
// must fail, or the tests above prove nothing.
func TestCheckerCatchesUnknownNames(t *testing.T) {
	fams := exportedFamilies(t)
	for _, expr := range []string{
		`rate(countersign_callbacks_recieved_total[5m])`,
		`countersign_tenant_connected{org="x"}`,
		`sum by (status) (countersign_queue_pending_messages)`,
		`countersign_queue_pending_messages_bucket`,
		`histogram_quantile(0.9, sum by (le) (rate(countersign_callback_ingest_seconds_bucket{outcome="accepted"}[5m])))`,
	} {
		if _, problems := exprProblems(fams, expr); len(problems) == 0 {
			t.Errorf("checker accepted %s", expr)
		}
	}
	if e := checkExpr(t, fams, "ok", `max by (tenant) (countersign_tenant_connected) == 0`); !keepsLabel(fams, e, "tenant") {
		t.Error("keepsLabel: max by (tenant) lost the tenant")
	}
	e, _ := parser.NewParser(parser.Options{}).ParseExpr(`sum(countersign_tenant_connected) == 0`)
	if keepsLabel(fams, e, "tenant") {
		t.Error("keepsLabel: sum without by kept the tenant")
	}
}

func union(sets ...map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, s := range sets {
		for k := range s {
			out[k] = true
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
