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

{{/* Selector labels of one component: include with (list . "extender") or (list . "planner"). */}}
{{- define "edgeplace.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The Service's DNS name, which the serving certificate must carry. */}}
{{- define "edgeplace.serviceHost" -}}
{{ include "edgeplace.fullname" . }}.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* The extender's URL inside the cluster. */}}
{{- define "edgeplace.url" -}}
{{ if .Values.extender.tls.enabled }}https{{ else }}http{{ end }}://{{ include "edgeplace.serviceHost" . }}:{{ .Values.service.port }}
{{- end -}}

{{/* The extender stanza of both scheduler configurations: include with (dict "root" . "certDir" DIR),
     DIR holding kube-scheduler's client certificate (tls.crt, tls.key) and the CA (ca.crt). */}}
{{/* "true" when the planner steers at admission (the steering policy exists and a planner writes its
     parameters): then kube-scheduler calls the extender only for the pods the policy marks. */}}
{{- define "edgeplace.steersAtAdmission" -}}
{{- if and .Values.steering.enabled .Values.planner.enabled (include "edgeplace.mutatingPolicyVersion" .) -}}true{{- end -}}
{{- end -}}

{{/* "true" when kube-scheduler calls the extender only for the pods the steering policy marks
     (managedResources): steering at admission with steering.extenderCalls "marked". */}}
{{- define "edgeplace.extenderForMarkedPods" -}}
{{- $calls := .Values.steering.extenderCalls -}}
{{- if not (has $calls (list "marked" "all")) -}}
{{- fail (printf "steering.extenderCalls: %q is not one of marked, all (docs/KUBERNETES.md \"Steering at admission\")" $calls) -}}
{{- end -}}
{{- if and (include "edgeplace.steersAtAdmission" .) (eq $calls "marked") -}}true{{- end -}}
{{- end -}}

{{/* The schedulers whose pods the steering policy may mark for the extender, as a CEL list: the
     one the chart wires the extender into with managedResources; none without that entry (a mark
     would then count in kube-scheduler's fit check and leave the pod Pending). */}}
{{- define "edgeplace.markedSchedulers" -}}
{{- if not (include "edgeplace.extenderForMarkedPods" .) -}}
[]
{{- else if .Values.secondScheduler.enabled -}}
{{ list .Values.secondScheduler.schedulerName | toJson }}
{{- else -}}
["default-scheduler"]
{{- end -}}
{{- end -}}

{{/* The profile's plugins for steering at admission: NodeAffinity outweighs the spreading plugins. */}}
{{- define "edgeplace.steeringPlugins" -}}
{{- if .Values.steering.enabled }}
plugins:
  score:
    enabled:
    - name: NodeAffinity
      weight: {{ .Values.steering.nodeAffinityWeight }}
{{- end }}
{{- end -}}

{{- define "edgeplace.extenderStanza" -}}
{{- $v := .root.Values -}}
- urlPrefix: {{ include "edgeplace.url" .root }}
  {{- if $v.schedulerExtender.filter }}
  filterVerb: filter
  {{- end }}
  prioritizeVerb: prioritize
  preemptVerb: preempt
  weight: {{ $v.schedulerExtender.weight }}
  nodeCacheCapable: true
  {{- if include "edgeplace.extenderForMarkedPods" .root }}
  managedResources:
  - name: edgeplace.io/unsteered
    ignoredByScheduler: true
  {{- end }}
  ignorable: true
  httpTimeout: {{ $v.schedulerExtender.httpTimeout }}
  enableHTTPS: {{ $v.extender.tls.enabled }}
  {{- if $v.extender.tls.enabled }}
  tlsConfig:
    serverName: {{ include "edgeplace.serviceHost" .root }}
    caFile: {{ .certDir }}/ca.crt
    certFile: {{ .certDir }}/tls.crt
    keyFile: {{ .certDir }}/tls.key
  {{- end }}
{{- end -}}

{{/* Pod-level settings shared by the extender and planner Deployments. */}}
{{- define "edgeplace.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "edgeplace.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}

{{- define "edgeplace.placement" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
