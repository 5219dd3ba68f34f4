{{/* The chart name (nameOverride wins). */}}
{{- define "ditto-triton.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else <release>-<chart>, or <release> when it
already contains the chart name. Truncated so that "<fullname>-replicas" stays a valid DNS label.
*/}}
{{- define "ditto-triton.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ditto-triton.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "ditto-triton.labels" -}}
helm.sh/chart: {{ include "ditto-triton.chart" . }}
{{ include "ditto-triton.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ditto-triton
{{- end }}

{{/* The release's selector labels; add app.kubernetes.io/component to pick Triton or Envoy pods. */}}
{{- define "ditto-triton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ditto-triton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector of the Triton replicas. */}}
{{- define "ditto-triton.tritonSelectorLabels" -}}
{{ include "ditto-triton.selectorLabels" . }}
app.kubernetes.io/component: triton
{{- end }}

{{/* Selector of the Envoy proxies. */}}
{{- define "ditto-triton.envoySelectorLabels" -}}
{{ include "ditto-triton.selectorLabels" . }}
app.kubernetes.io/component: envoy
{{- end }}

{{/* The image's fixed ports (deploy/Dockerfile, ditto-container). */}}
{{- define "ditto-triton.httpPort" -}}8000{{- end }}
{{- define "ditto-triton.grpcPort" -}}8001{{- end }}
{{- define "ditto-triton.metricsPort" -}}8002{{- end }}
{{- define "ditto-triton.healthPort" -}}8003{{- end }}

{{/* Cross-field checks JSON schema cannot express. */}}
{{- define "ditto-triton.validate" -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.targetSessionsPerReplica) (int .Values.sessions.maxPerReplica)) }}
{{- fail (printf "autoscaling.targetSessionsPerReplica (%v) must not exceed sessions.maxPerReplica (%v): replicas would refuse sessions before the autoscaler adds any" .Values.autoscaling.targetSessionsPerReplica .Values.sessions.maxPerReplica) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%v) must not exceed autoscaling.maxReplicas (%v)" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- $runners := dict "tensorrt" (list "torch" "plugin") "onnxruntime" (list "torch" "onnxruntime") }}
{{- with .Values.ditto.warpRunner }}
{{- if not (has . (get $runners $.Values.ditto.flavor | default (list))) }}
{{- fail (printf "ditto.warpRunner %q does not apply to ditto.flavor %q (tensorrt: torch | plugin; onnxruntime: torch | onnxruntime; torch: leave it empty)" . $.Values.ditto.flavor) }}
{{- end }}
{{- end }}
{{- end }}
