{{/* Name of everything this release creates: the release name, or release-chart. */}}
{{- define "edgeplace.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "edgeplace.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "edgeplace.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: extender-planner
{{- end -}}

{{/* The extender's URL inside the cluster. */}}
{{- define "edgeplace.url" -}}
http://{{ include "edgeplace.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.service.port }}
{{- end -}}

{{/* The extender stanza shared by both scheduler configurations. */}}
{{- define "edgeplace.extenderStanza" -}}
- urlPrefix: {{ include "edgeplace.url" . }}
  filterVerb: filter
  prioritizeVerb: prioritize
  preemptVerb: preempt
  weight: {{ .Values.schedulerExtender.weight }}
  nodeCacheCapable: true
  ignorable: true
  httpTimeout: {{ .Values.schedulerExtender.httpTimeout }}
  enableHTTPS: false
{{- end -}}
