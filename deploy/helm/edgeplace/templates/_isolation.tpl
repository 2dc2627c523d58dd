{{/*
Tenant isolation without the extender (edgeplace.k8s.isolation, docs/KUBERNETES.md "Isolation"):
CEL shared by the MutatingAdmissionPolicy and the ValidatingAdmissionPolicy. A pod's tenant is its
namespace's edgeplace.io/tenant label; the rules come from the parameter ConfigMap that
`edgeplace apply-isolation` (and the planner) keep: tenant.<t>.dedicated, tenant.<t>.never-with,
node.<node> (the tenant a node is dedicated to).
*/}}

{{/* The MutatingAdmissionPolicy API version: v1 from Kubernetes 1.36, else none unless set. */}}
{{- define "edgeplace.mutatingPolicyVersion" -}}
{{- $want := .Values.isolation.mutatingAdmissionPolicy -}}
{{- if eq $want "auto" -}}
{{- if semverCompare ">=1.36.0-0" .Capabilities.KubeVersion.Version -}}v1{{- end -}}
{{- else if ne $want "off" -}}{{ $want }}{{- end -}}
{{- end -}}

{{- define "edgeplace.isolationVariables" -}}
- name: tenant
  expression: "namespaceObject.metadata.labels['edgeplace.io/tenant']"
- name: data
  expression: "has(params.data) ? params.data : {}"
- name: dedicated
  expression: "('tenant.' + variables.tenant + '.dedicated') in variables.data"
- name: neverWith
  expression: >-
    ('tenant.' + variables.tenant + '.never-with') in variables.data
    ? variables.data['tenant.' + variables.tenant + '.never-with'].split(',') : []
{{- end -}}

{{/* Bind to pods in namespaces that belong to a tenant; the parameters are required (fail closed). */}}
{{- define "edgeplace.isolationBinding" -}}
paramRef:
  name: edgeplace-isolation
  namespace: {{ .Release.Namespace }}
  parameterNotFoundAction: Deny
matchResources:
  namespaceSelector:
    matchExpressions:
    - {key: edgeplace.io/tenant, operator: Exists}
{{- end -}}
