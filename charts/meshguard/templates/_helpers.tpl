{{/*
Names: "<release>" when the release name already says meshguard, else
"<release>-meshguard"; the operator and the agent add their suffix.
*/}}
{{- define "meshguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meshguard.operator" -}}{{ include "meshguard.fullname" . }}-operator{{- end -}}
{{- define "meshguard.agent" -}}{{ include "meshguard.fullname" . }}-agent{{- end -}}

{{/* Labels on every object; selectors use the stable subset below. */}}
{{- define "meshguard.labels" -}}
app.kubernetes.io/name: meshguard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: meshguard
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "meshguard.selector" -}}
app.kubernetes.io/name: meshguard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshguard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Audit-mode agents need every member listed as an audit peer. */}}
{{- define "meshguard.auditPeers" -}}
{{ or .Values.operator.auditPeers (eq .Values.agent.enforcement "audit") }}
{{- end -}}
