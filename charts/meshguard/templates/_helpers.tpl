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

{{/*
What the agent and the uninstall hook's teardown pods share: the node's
settings (env), where they run, and the host paths they touch. The
teardown must find exactly what the agent made, and run wherever it ran.
*/}}
{{- define "meshguard.wireguardSocketDir" -}}/var/run/wireguard{{- end -}}

{{- define "meshguard.nodeEnv" -}}
- name: MESHGUARD_INTERFACE
  value: {{ .Values.mesh.interface | quote }}
- name: MESHGUARD_MESH_CIDR
  value: {{ .Values.mesh.cidr | quote }}
- name: MESHGUARD_WIREGUARD
  value: {{ ternary "uapi" "kernel" (eq .Values.agent.wireguard "userspace") | quote }}
- name: MESHGUARD_UAPI_SOCKET
  value: {{ printf "%s/%s.sock" (include "meshguard.wireguardSocketDir" .) .Values.mesh.interface | quote }}
- name: MESHGUARD_AGENT_LOCK
  value: {{ printf "%s/%s.lock" .Values.agent.stateDir .Values.mesh.interface | quote }}
- name: MESHGUARD_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- end -}}

{{- define "meshguard.nodePlacement" -}}
{{- with .Values.agent.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.agent.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.agent.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "meshguard.nodeMounts" -}}
- name: state
  mountPath: {{ .Values.agent.stateDir }}
- name: xtables-lock
  mountPath: /run/xtables.lock
{{- if ne .Values.agent.backend "iptables" }}
- name: bpffs
  mountPath: /sys/fs/bpf
{{- end }}
{{- end -}}

{{- define "meshguard.nodeVolumes" -}}
# The node's WireGuard private key and the agent's lock, kept across pod
# restarts.
- name: state
  hostPath:
    path: {{ .Values.agent.stateDir }}
    type: DirectoryOrCreate
# Shared with kube-proxy and other iptables writers on the node.
- name: xtables-lock
  hostPath:
    path: /run/xtables.lock
    type: FileOrCreate
{{- if ne .Values.agent.backend "iptables" }}
# The node's BPF filesystem (systemd mounts it): the programs' links and
# maps are pinned there, so they enforce across agent restarts.
- name: bpffs
  hostPath:
    path: /sys/fs/bpf
    type: Directory
{{- end }}
{{- end -}}
