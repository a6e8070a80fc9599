#!/usr/bin/env bash
# Offline checks of deploy/: helm lint --strict and helm template of the chart with the
# default and the split-roles values, then the Go tests that strictly decode the rendered
# objects into their Kubernetes / Prometheus Operator types (deploy/helm, build tag
# chartcheck) and check the dashboard and alert rules against internal/metrics (deploy).
# Used by `make chart-check`. Needs only the Go module proxy (helm is built with go install).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
tools=$root/.tools
helm=$tools/bin/helm
chart=deploy/helm/countersign
rendered=$tools/rendered
helm_version=v3.22.0
# helm built by go install has no version ldflags and assumes Kubernetes v1.20, below the
# chart's kubeVersion; render for a current cluster instead.
kube_version=1.34.0

# The module version recorded in the binary; helm built this way reports only "v3.22" itself.
built_version() { go version -m "$helm" 2>/dev/null | awk '$1 == "mod" && $2 == "helm.sh/helm/v3" { print $3 }'; }

if [[ ! -x $helm || $(built_version) != "$helm_version" ]]; then
	echo "chart-check: building helm $helm_version into $tools/bin (about 3-4 minutes, once)"
	mkdir -p "$tools/bin"
	GOBIN=$tools/bin go install "helm.sh/helm/v3/cmd/helm@$helm_version"
fi

# Keep helm's cache/config inside .tools: no writes to $HOME, nothing fetched.
export HELM_CACHE_HOME=$tools/helm/cache HELM_CONFIG_HOME=$tools/helm/config HELM_DATA_HOME=$tools/helm/data

mkdir -p "$rendered"
rm -f "$rendered"/*.yaml

declare -A values=(
	[default]=""
	[split]="$chart/values-split.yaml"
)
for name in default split; do
	args=(--kube-version "$kube_version")
	if [[ -n ${values[$name]} ]]; then
		args+=(-f "${values[$name]}")
	fi
	echo "chart-check: helm lint --strict ($name)"
	"$helm" lint --strict "${args[@]}" "$chart"
	echo "chart-check: helm template ($name) -> $rendered/$name.yaml"
	"$helm" template countersign "$chart" "${args[@]}" \
		--api-versions monitoring.coreos.com/v1 >"$rendered/$name.yaml"
done

echo "chart-check: go test -tags chartcheck ./deploy/..."
CHART_RENDERED_DIR=$rendered go test -count=1 -tags chartcheck ./deploy/...
