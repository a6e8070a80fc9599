{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "countersign.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "countersign.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "countersign.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "countersign.labels" -}}
helm.sh/chart: {{ include "countersign.chart" . }}
{{ include "countersign.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: countersign
{{- end }}

{{- define "countersign.selectorLabels" -}}
app.kubernetes.io/name: {{ include "countersign.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Per role group. Call with (dict "root" $ "group" $group).
The component label tells the Deployments apart; role labels let Services pick the pods
that serve a route (a worker-only pod answers no callbacks).
*/}}
{{- define "countersign.groupFullname" -}}
{{- printf "%s-%s" (include "countersign.fullname" .root) .group.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "countersign.groupSelectorLabels" -}}
{{ include "countersign.selectorLabels" .root }}
app.kubernetes.io/component: {{ .group.name }}
{{- end }}

{{- define "countersign.groupLabels" -}}
{{ include "countersign.labels" .root }}
app.kubernetes.io/component: {{ .group.name }}
{{- end }}

{{- define "countersign.roleLabels" -}}
{{- $lines := list }}
{{- range .group.roles }}
{{- $lines = append $lines (printf "countersign.io/role-%s: \"true\"" .) }}
{{- end }}
{{- join "\n" $lines }}
{{- end }}

{{- define "countersign.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "countersign.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "countersign.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* server.public_url: explicit, else the first ingress host, else left to the listener's default. */}}
{{- define "countersign.publicURL" -}}
{{- if .Values.config.server.public_url }}
{{- .Values.config.server.public_url }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := first .Values.ingress.hosts }}
{{- $scheme := "http" }}
{{- range .Values.ingress.tls }}
{{- if has $host .hosts }}{{ $scheme = "https" }}{{ end }}
{{- end }}
{{- printf "%s://%s" $scheme $host }}
{{- end }}
{{- end }}

{{/* The listener config file (ARCHITECTURE §8). */}}
{{- define "countersign.config" -}}
{{- $server := omit .Values.config.server "public_url" }}
{{- $_ := set $server "addr" (printf ":%d" (int .Values.containerPorts.http)) }}
{{- with include "countersign.publicURL" . }}
{{- $_ := set $server "public_url" . }}
{{- end }}
{{- $tenants := dict }}
{{- range .Values.tenants }}
{{- if hasKey $tenants .id }}
{{- fail (printf "tenants: id %q appears twice" .id) }}
{{- end }}
{{- $_ := set $tenants .id (omit . "id") }}
{{- end }}
{{- $cfg := dict
  "server" $server
  "metrics" (dict "addr" (printf ":%d" (int .Values.containerPorts.metrics)))
  "nats" (dict "url" .Values.nats.url "replicas" (int .Values.nats.replicas))
  "tenants" $tenants
}}
{{- range $k, $v := omit .Values.config "server" }}
{{- $_ := set $cfg $k $v }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Every role must run in exactly one group, and group names must differ. */}}
{{- define "countersign.validateRoleGroups" -}}
{{- $seen := dict }}
{{- $names := dict }}
{{- range .Values.roleGroups }}
{{- if hasKey $names .name }}
{{- fail (printf "roleGroups: name %q appears twice" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- range .roles }}
{{- if hasKey $seen . }}
{{- fail (printf "roleGroups: role %q is in more than one group" .) }}
{{- end }}
{{- $_ := set $seen . true }}
{{- end }}
{{- end }}
{{- range list "ingest" "worker" "admin" }}
{{- if not (hasKey $seen .) }}
{{- fail (printf "roleGroups: no group runs the %q role" .) }}
{{- end }}
{{- end }}
{{- end }}
