//go:build chartcheck

// Package helm checks the rendered countersign chart offline: every document decodes strictly
// into its Kubernetes (or Prometheus Operator) type, and the settings users rely on are there.
// scripts/chart-check.sh (make chart-check) renders the chart and runs this with
// CHART_RENDERED_DIR set.
package helm

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/countersign/countersign/internal/config"
)

const (
	release    = "countersign" // the release name chart-check.sh renders with
	configPath = "/etc/countersign/config.yaml"
	rulesFile  = "countersign/files/rules.yaml"
	readmeFile = "countersign/README.md"
)

// manifest is one rendered chart, decoded.
type manifest struct {
	name            string
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	ingresses       map[string]*networkingv1.Ingress
	pdbs            map[string]*policyv1.PodDisruptionBudget
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	serviceAccounts map[string]*corev1.ServiceAccount
	serviceMonitors map[string]*monv1.ServiceMonitor
	rules           map[string]*monv1.PrometheusRule
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// load reads <CHART_RENDERED_DIR>/<name>.yaml. Every document must be of a known kind and
// decode without unknown fields: a misspelt or mis-indented key fails here, as it would be
// dropped or refused by the API server.
func load(t *testing.T, name string) *manifest {
	t.Helper()
	dir := os.Getenv("CHART_RENDERED_DIR")
	if dir == "" {
		t.Fatal("CHART_RENDERED_DIR is not set: run `make chart-check` (scripts/chart-check.sh), which renders the chart and runs this test")
	}
	path := filepath.Join(dir, name+".yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run `make chart-check` to render the chart", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		t.Fatalf("%s is empty: run `make chart-check` to render the chart", path)
	}
	m := &manifest{
		name:            name,
		deployments:     map[string]*appsv1.Deployment{},
		services:        map[string]*corev1.Service{},
		configMaps:      map[string]*corev1.ConfigMap{},
		ingresses:       map[string]*networkingv1.Ingress{},
		pdbs:            map[string]*policyv1.PodDisruptionBudget{},
		hpas:            map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		serviceMonitors: map[string]*monv1.ServiceMonitor{},
		rules:           map[string]*monv1.PrometheusRule{},
	}
	docs := 0
	for i, doc := range docSeparator.Split(string(raw), -1) {
		if isBlank(doc) {
			continue
		}
		docs++
		var tm metav1.TypeMeta
		err := sigsyaml.Unmarshal([]byte(doc), &tm)
		if err != nil {
			t.Errorf("%s doc %d: %v", name, i, err)
			continue
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		var obj metav1.Object
		switch gvk {
		case "apps/v1/Deployment":
			obj, err = decodeInto(doc, m.deployments, &appsv1.Deployment{})
		case "v1/Service":
			obj, err = decodeInto(doc, m.services, &corev1.Service{})
		case "v1/ConfigMap":
			obj, err = decodeInto(doc, m.configMaps, &corev1.ConfigMap{})
		case "networking.k8s.io/v1/Ingress":
			obj, err = decodeInto(doc, m.ingresses, &networkingv1.Ingress{})
		case "policy/v1/PodDisruptionBudget":
			obj, err = decodeInto(doc, m.pdbs, &policyv1.PodDisruptionBudget{})
		case "autoscaling/v2/HorizontalPodAutoscaler":
			obj, err = decodeInto(doc, m.hpas, &autoscalingv2.HorizontalPodAutoscaler{})
		case "v1/ServiceAccount":
			obj, err = decodeInto(doc, m.serviceAccounts, &corev1.ServiceAccount{})
		case "monitoring.coreos.com/v1/ServiceMonitor":
			obj, err = decodeInto(doc, m.serviceMonitors, &monv1.ServiceMonitor{})
		case "monitoring.coreos.com/v1/PrometheusRule":
			obj, err = decodeInto(doc, m.rules, &monv1.PrometheusRule{})
		default:
			// Secrets in particular: the chart must never carry one.
			t.Errorf("%s doc %d: unexpected kind %s", name, i, gvk)
			continue
		}
		if err != nil {
			t.Errorf("%s doc %d (%s): %v", name, i, gvk, err)
			continue
		}
		if obj.GetNamespace() != "" {
			t.Errorf("%s %s/%s: metadata.namespace is set; helm sets it at install", name, tm.Kind, obj.GetName())
		}
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if obj.GetLabels()[l] == "" {
				t.Errorf("%s %s/%s: no %s label", name, tm.Kind, obj.GetName(), l)
			}
		}
	}
	if docs == 0 {
		t.Fatalf("%s: no documents", path)
	}
	return m
}

// decodeInto decodes doc strictly (unknown fields are errors) and files it under its name.
func decodeInto[T metav1.Object](doc string, into map[string]T, obj T) (metav1.Object, error) {
	if err := sigsyaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		return nil, err
	}
	if obj.GetName() == "" {
		return nil, fmt.Errorf("no metadata.name")
	}
	if _, dup := into[obj.GetName()]; dup {
		return nil, fmt.Errorf("%s is rendered twice", obj.GetName())
	}
	into[obj.GetName()] = obj
	return obj, nil
}

func isBlank(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

func listener(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == "listener" {
			return c
		}
	}
	t.Fatalf("deployment %s: no listener container", d.Name)
	return nil
}

// roles returns the value of --roles in the listener's args.
func roles(t *testing.T, d *appsv1.Deployment) string {
	t.Helper()
	args := listener(t, d).Args
	i := slices.Index(args, "--roles")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("deployment %s: args %q have no --roles value", d.Name, args)
	}
	return args[i+1]
}

func deploymentRoles(t *testing.T, m *manifest) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, d := range m.deployments {
		out[name] = roles(t, d)
	}
	return out
}

func selects(sel map[string]string, d *appsv1.Deployment) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels))
}

func TestRenderedChartsDecodeStrictly(t *testing.T) {
	for _, name := range []string{"default", "split"} {
		t.Run(name, func(t *testing.T) {
			m := load(t, name)
			if len(m.deployments) == 0 || len(m.services) == 0 || len(m.configMaps) != 1 {
				t.Errorf("want deployments, services and one configmap; got %d, %d, %d",
					len(m.deployments), len(m.services), len(m.configMaps))
			}
			if len(m.serviceMonitors) != 1 || len(m.rules) != 1 {
				t.Errorf("want one ServiceMonitor and one PrometheusRule (rendered with --api-versions monitoring.coreos.com/v1); got %d, %d",
					len(m.serviceMonitors), len(m.rules))
			}
		})
	}
}

func TestDeploymentsRunHardenedAndProbed(t *testing.T) {
	for _, name := range []string{"default", "split"} {
		t.Run(name, func(t *testing.T) {
			m := load(t, name)
			for dn, d := range m.deployments {
				pod := d.Spec.Template.Spec
				c := listener(t, d)

				args := strings.Join(c.Args, " ")
				if !strings.HasPrefix(args, "serve --config "+configPath+" --roles ") {
					t.Errorf("%s: args %q, want serve --config %s --roles ...", dn, args, configPath)
				}
				if !selects(d.Spec.Selector.MatchLabels, d) {
					t.Errorf("%s: selector %v does not match its pod labels %v", dn, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
				}
				for other, od := range m.deployments {
					if other != dn && selects(d.Spec.Selector.MatchLabels, od) {
						t.Errorf("%s: selector also matches the pods of %s", dn, other)
					}
				}
				if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
					t.Errorf("%s: rolling update may drop below the wanted replicas", dn)
				}

				ports := map[string]int32{}
				for _, p := range c.Ports {
					ports[p.Name] = p.ContainerPort
				}
				if ports["http"] != 8080 || ports["metrics"] != 9090 {
					t.Errorf("%s: container ports %v, want http 8080 and metrics 9090", dn, ports)
				}
				checkProbe(t, dn+" liveness", c.LivenessProbe, "/healthz")
				checkProbe(t, dn+" readiness", c.ReadinessProbe, "/readyz")

				psc := pod.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
					t.Errorf("%s: pod securityContext.runAsNonRoot is not true", dn)
				}
				if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: pod seccompProfile is not RuntimeDefault", dn)
				}
				sc := c.SecurityContext
				switch {
				case sc == nil:
					t.Errorf("%s: no container securityContext", dn)
				case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
					t.Errorf("%s: readOnlyRootFilesystem is not true", dn)
				case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
					t.Errorf("%s: allowPrivilegeEscalation is not false", dn)
				case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
					t.Errorf("%s: capabilities %+v, want drop [ALL] and nothing added", dn, sc.Capabilities)
				}
				if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
					t.Errorf("%s: the service account token is mounted; the listener never calls the API server", dn)
				}
				if _, ok := m.serviceAccounts[pod.ServiceAccountName]; !ok {
					t.Errorf("%s: service account %q is not in the chart", dn, pod.ServiceAccountName)
				}

				mounts := map[string]string{}
				for _, vm := range c.VolumeMounts {
					mounts[vm.MountPath] = vm.Name
				}
				volumes := map[string]corev1.Volume{}
				for _, v := range pod.Volumes {
					volumes[v.Name] = v
				}
				if v, ok := volumes[mounts["/tmp"]]; !ok || v.EmptyDir == nil {
					t.Errorf("%s: /tmp is not an emptyDir (the root filesystem is read-only)", dn)
				}
				if v, ok := volumes[mounts[filepath.Dir(configPath)]]; !ok || v.ConfigMap == nil {
					t.Errorf("%s: %s is not mounted from a ConfigMap", dn, filepath.Dir(configPath))
				} else if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("%s: mounts ConfigMap %q, which the chart does not render", dn, v.ConfigMap.Name)
				}

				if sum := d.Spec.Template.Annotations["checksum/config"]; !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sum) {
					t.Errorf("%s: checksum/config annotation %q is not a sha256: pods would not roll on config changes", dn, sum)
				}
				secretFrom := false
				for _, ef := range c.EnvFrom {
					if ef.SecretRef != nil && ef.SecretRef.Name != "" {
						secretFrom = true
					}
				}
				if !secretFrom {
					t.Errorf("%s: no envFrom secretRef: the config's ${VAR} secrets would be empty", dn)
				}
				for _, e := range c.Env {
					if e.Value != "" && secretLooking.MatchString(e.Name) {
						t.Errorf("%s: env %s has a literal value; secrets come from the existing Secret", dn, e.Name)
					}
				}
			}
		})
	}
}

var secretLooking = regexp.MustCompile(`(?i)(secret|token|key|password)`)

func checkProbe(t *testing.T, what string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no httpGet probe", what)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
		t.Errorf("%s: probe %s on port %s, want %s on http", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

func TestConfigMapHoldsAValidListenerConfig(t *testing.T) {
	topLevel := []string{"admin", "metrics", "nats", "queue", "reconcile", "secrets", "server", "tenants", "worker"} // ARCHITECTURE §8
	for _, name := range []string{"default", "split"} {
		t.Run(name, func(t *testing.T) {
			m := load(t, name)
			cm, ok := m.configMaps[release]
			if !ok {
				t.Fatalf("no ConfigMap %q", release)
			}
			raw := cm.Data[filepath.Base(configPath)]
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
				t.Fatalf("config.yaml is not YAML: %v\n%s", err, raw)
			}
			var keys []string
			for k := range doc {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if !slices.Equal(keys, topLevel) {
				t.Errorf("config top-level keys %v, want %v", keys, topLevel)
			}

			// The listener's own loader, with every ${VAR} resolved the way the Secret would.
			referenced := map[string]bool{}
			lookup := func(v string) (string, bool) {
				referenced[v] = true
				if strings.HasSuffix(v, "SECRET_KEY") {
					return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)), true
				}
				return "placeholder-" + strings.ToLower(v), true
			}
			cfg, err := config.Parse([]byte(raw), lookup)
			if err != nil {
				t.Fatalf("the listener refuses the rendered config: %v\n%s", err, raw)
			}
			if cfg.NATS.URL == "" || cfg.NATS.Replicas != 3 {
				t.Errorf("nats: url %q replicas %d, want an external URL and 3 replicas", cfg.NATS.URL, cfg.NATS.Replicas)
			}
			if n, _ := doc["nats"].(map[string]any); n["store_dir"] != nil || n["listen"] != nil {
				t.Errorf("nats: %v: store_dir/listen belong to the embedded server, unused with nats.url", n)
			}
			if cfg.Server.Addr != ":8080" || cfg.Metrics.Addr != ":9090" {
				t.Errorf("server.addr %q metrics.addr %q, want :8080 and :9090 (the container ports)", cfg.Server.Addr, cfg.Metrics.Addr)
			}
			for _, v := range []string{"LISTENER_SECRET_KEY", "LISTENER_ADMIN_TOKEN"} {
				if !referenced[v] {
					t.Errorf("config does not take %s from the environment", v)
				}
			}
			if name == "default" {
				checkReadmeSecretExample(t, referenced)
			}
		})
	}
}

// checkReadmeSecretExample keeps the README's `kubectl create secret` example in step with
// the variables the default config needs.
func checkReadmeSecretExample(t *testing.T, referenced map[string]bool) {
	t.Helper()
	readme, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	for v := range referenced {
		if !strings.Contains(string(readme), "--from-literal="+v+"=") {
			t.Errorf("%s: the Secret example lacks --from-literal=%s=...", readmeFile, v)
		}
	}
}

func TestCombinedRunsEveryRoleInOneDeployment(t *testing.T) {
	m := load(t, "default")
	got := deploymentRoles(t, m)
	want := map[string]string{release + "-all": "ingest,worker,admin"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("deployments and roles %v, want %v", got, want)
	}
	if len(m.ingresses) != 0 || len(m.hpas) != 0 {
		t.Errorf("default values render %d ingresses and %d HPAs, want none", len(m.ingresses), len(m.hpas))
	}
	checkRouting(t, m)
}

func TestSplitRunsEachRoleInItsOwnDeployment(t *testing.T) {
	m := load(t, "split")
	got := deploymentRoles(t, m)
	want := map[string]string{release + "-ingest": "ingest", release + "-worker": "worker", release + "-admin": "admin"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("deployments and roles %v, want %v", got, want)
	}
	// Different config (tenants, ingress host) must mean a different checksum, or pods would not roll.
	def := load(t, "default")
	if a, b := def.deployments[release+"-all"].Spec.Template.Annotations["checksum/config"],
		m.deployments[release+"-ingest"].Spec.Template.Annotations["checksum/config"]; a == b {
		t.Errorf("default and split configs differ but share checksum %s", a)
	}
	if len(m.ingresses) != 1 {
		t.Fatalf("split values render %d ingresses, want 1", len(m.ingresses))
	}
	checkRouting(t, m)
}

// checkRouting follows every route the way traffic does: Ingress path -> Service -> pods of a
// Deployment that runs the role serving that path; and HPAs, PDBs and the ServiceMonitor
// point at objects that exist.
func checkRouting(t *testing.T, m *manifest) {
	t.Helper()
	roleOf := map[string]string{ // ARCHITECTURE §5 route -> role that serves it
		"/v1/callbacks":     "ingest",
		"/oauth/salesforce": "admin",
		"/admin":            "admin",
		"/api/admin":        "admin",
	}
	servesRole := func(svc *corev1.Service, role string) []string {
		var names []string
		for dn, d := range m.deployments {
			if selects(svc.Spec.Selector, d) {
				if !slices.Contains(strings.Split(roles(t, d), ","), role) {
					t.Errorf("service %s selects %s, which does not run %s", svc.Name, dn, role)
				}
				names = append(names, dn)
			}
		}
		return names
	}
	if svc, ok := m.services[release]; !ok || len(servesRole(svc, "ingest")) == 0 {
		t.Errorf("service %s does not reach an ingest deployment", release)
	}
	if svc, ok := m.services[release+"-admin"]; !ok || len(servesRole(svc, "admin")) == 0 {
		t.Errorf("service %s-admin does not reach an admin deployment", release)
	}
	metricsSvc, ok := m.services[release+"-metrics"]
	if !ok {
		t.Fatalf("no %s-metrics service", release)
	}
	for dn, d := range m.deployments {
		if !selects(metricsSvc.Spec.Selector, d) {
			t.Errorf("metrics service does not scrape deployment %s", dn)
		}
	}

	for _, ing := range m.ingresses {
		paths := map[string]bool{}
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				paths[p.Path] = true
				role, known := roleOf[p.Path]
				if !known {
					t.Errorf("ingress %s: path %s is not an ARCHITECTURE §5 route", ing.Name, p.Path)
					continue
				}
				svc, ok := m.services[p.Backend.Service.Name]
				if !ok {
					t.Errorf("ingress %s: path %s goes to missing service %s", ing.Name, p.Path, p.Backend.Service.Name)
					continue
				}
				if !hasPort(svc, p.Backend.Service.Port.Name, p.Backend.Service.Port.Number) {
					t.Errorf("ingress %s: path %s: service %s has no port %+v", ing.Name, p.Path, svc.Name, p.Backend.Service.Port)
				}
				if len(servesRole(svc, role)) == 0 {
					t.Errorf("ingress %s: path %s reaches no pod running %s", ing.Name, p.Path, role)
				}
			}
		}
		for route := range roleOf {
			if !paths[route] {
				t.Errorf("ingress %s does not route %s", ing.Name, route)
			}
		}
	}

	for name, h := range m.hpas {
		d, ok := m.deployments[h.Spec.ScaleTargetRef.Name]
		if !ok || h.Spec.ScaleTargetRef.Kind != "Deployment" {
			t.Errorf("hpa %s targets missing %s %s", name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
			continue
		}
		if d.Spec.Replicas != nil {
			t.Errorf("hpa %s: deployment %s also sets replicas; every upgrade would reset the HPA's count", name, d.Name)
		}
	}
	for name, p := range m.pdbs {
		matched := 0
		for _, d := range m.deployments {
			if selects(p.Spec.Selector.MatchLabels, d) {
				matched++
			}
		}
		if matched != 1 {
			t.Errorf("pdb %s selects %d deployments, want 1", name, matched)
		}
	}
	for name, sm := range m.serviceMonitors {
		found := false
		for _, svc := range m.services {
			if labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
				if svc.Name != metricsSvc.Name {
					t.Errorf("servicemonitor %s also selects service %s", name, svc.Name)
				}
				found = true
			}
		}
		if !found {
			t.Errorf("servicemonitor %s selects no service", name)
		}
		for _, ep := range sm.Spec.Endpoints {
			if !hasPort(metricsSvc, ep.Port, 0) || ep.Path != "/metrics" {
				t.Errorf("servicemonitor %s: endpoint %s%s is not the metrics service's metrics port", name, ep.Port, ep.Path)
			}
		}
	}
}

func hasPort(svc *corev1.Service, name string, number int32) bool {
	for _, p := range svc.Spec.Ports {
		if (name != "" && p.Name == name) || (number != 0 && p.Port == number) {
			return true
		}
	}
	return false
}

func TestPrometheusRuleCarriesTheRuleFile(t *testing.T) {
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var want monv1.PrometheusRuleSpec
	if err := sigsyaml.UnmarshalStrict(raw, &want); err != nil {
		t.Fatalf("%s does not decode as a PrometheusRule spec: %v", rulesFile, err)
	}
	for _, name := range []string{"default", "split"} {
		m := load(t, name)
		pr, ok := m.rules[release]
		if !ok {
			t.Fatalf("%s: no PrometheusRule %q", name, release)
		}
		if !reflect.DeepEqual(pr.Spec, want) {
			t.Errorf("%s: PrometheusRule spec differs from %s", name, rulesFile)
		}
	}
}

// TestStrictDecodingCatchesTypos guards the checker: a misspelt field must fail.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	doc := `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  template:
    spec:
      containers:
        - name: listener
          containerPorts: [{containerPort: 8080}]
`
	var d appsv1.Deployment
	if err := sigsyaml.UnmarshalStrict([]byte(doc), &d); err == nil || !strings.Contains(err.Error(), "containerPorts") {
		t.Errorf("strict decoding accepted an unknown field: %v", err)
	}
}
