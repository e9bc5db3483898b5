{{/* Chart name, overridable with nameOverride. */}}
{{- define "kfadapter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name for namespaced objects; "kfadapter" for a release named kfadapter. */}}
{{- define "kfadapter.fullname" -}}
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

{{/* The Service's name: the host part of TM's KF_ADAPTER_IP (kfadapter.traininghost). */}}
{{- define "kfadapter.serviceName" -}}
{{- default (include "kfadapter.fullname" .) .Values.service.name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "kfadapter.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aiml-framework
{{- end }}

{{/* Labels that select the adapter's pods (never put them on another pod: the ReplicaSet would adopt it). */}}
{{- define "kfadapter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kfadapter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kfadapter.labels" -}}
{{ include "kfadapter.commonLabels" . }}
{{ include "kfadapter.selectorLabels" . }}
{{- end }}

{{/* The label a pod needs to pass the NetworkPolicy besides the training manager (the helm test pod has it). */}}
{{- define "kfadapter.clientLabel" -}}
{{ include "kfadapter.fullname" . }}-client
{{- end }}

{{- define "kfadapter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kfadapter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kfadapter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/* The Secret holding the static KFP bearer token: the existing one, else the chart's own. */}}
{{- define "kfadapter.tokenSecretName" -}}
{{- default (printf "%s-kfp-token" (include "kfadapter.fullname" .)) .Values.kubeflow.token.existingSecret }}
{{- end }}

{{/* "true" when the store is PostgreSQL (a URL or an existing Secret holding one), else "" (SQLite). */}}
{{- define "kfadapter.postgres" -}}
{{- if or .Values.store.url .Values.store.existingSecret }}true{{ end }}
{{- end }}

{{/* The Secret holding the store's PostgreSQL URL: the existing one, else the chart's own. */}}
{{- define "kfadapter.storeSecretName" -}}
{{- default (printf "%s-store" (include "kfadapter.fullname" .)) .Values.store.existingSecret }}
{{- end }}
