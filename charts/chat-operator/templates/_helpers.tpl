{{/* Chart name, overridable. */}}
{{- define "chat-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, suffixed with the chart name unless it already has it. */}}
{{- define "chat-operator.fullname" -}}
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

{{/* Labels that select the operator's pods; never change them after an install. */}}
{{- define "chat-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chat-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "chat-operator.labels" -}}
{{ include "chat-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: scalable-chat
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "chat-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chat-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "chat-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator does in the namespaces it watches, and nothing more. Each verb is there for
one call in operator/src; operator/src/rbac.rs lists them with the reason, and
operator/tests/chart.rs fails when this list and that one differ or when a built object's kind
is not covered. No wildcards.
*/}}
{{- define "chat-operator.rules" -}}
# Watched by the controller; patched to add and remove the finalizer of deletionPolicy Delete.
- apiGroups: [chat.scalablechat.dev]
  resources: [chatdeployments]
  verbs: [list, watch, patch]
# Status is written with server-side apply.
- apiGroups: [chat.scalablechat.dev]
  resources: [chatdeployments/status]
  verbs: [patch]
# Owner references with blockOwnerDeletion need this where the
# OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift, hardened clusters).
- apiGroups: [chat.scalablechat.dev]
  resources: [chatdeployments/finalizers]
  verbs: [update]
# Read, and created when absent; the generated ones are watched (by label), so a deleted
# password is noticed at once. Updated only to rotate the generated JWT key (when asked to, by
# annotation); deleted only under deletionPolicy Delete (generated passwords).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, delete]
# The dependencies' data: grown in place when storage.size grows, deleted only under
# deletionPolicy Delete.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, patch, delete]
# Listed to compare with what is wanted, then server-side applied (create when absent, patch
# after) only when it differs; always desired, so never deleted.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
# Watched (a deleted or edited object is put back at once), server-side applied, and pruned
# when no longer desired.
- apiGroups: [""]
  resources: [services]
  verbs: [get, create, patch, list, watch, delete]
# Watched and listed for rollout status (ordered upgrades).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch, list, watch]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, create, patch, list, watch, delete]
# The migration Job of an upgrade; deleted once it succeeded, or to retry after a failure.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, patch, list, watch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch, list, watch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, create, patch, list, watch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, networkpolicies]
  verbs: [get, create, patch, list, watch, delete]
# Events on the ChatDeployment (a repeated event is patched as a series).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* Leader election, in the release namespace only. */}}
{{- define "chat-operator.leaderElectionRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end }}
