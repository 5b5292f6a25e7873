{{/* The chart name, or nameOverride. */}}
{{- define "lwsws.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of every object of the release: fullnameOverride, else release-chart. */}}
{{- define "lwsws.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lwsws.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lwsws.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lwsws.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lwsws.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "lwsws.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lwsws.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap mounted at /etc/lwsws: the user's, or the one built from values. */}}
{{- define "lwsws.configMapName" -}}
{{- default (include "lwsws.fullname" .) .Values.config.existingConfigMap -}}
{{- end -}}

{{/* The ConfigMap keys that become conf.d/<key>, sorted. */}}
{{- define "lwsws.confDKeys" -}}
{{- if .Values.config.existingConfigMap -}}
{{- toJson (sortAlpha .Values.config.existingConfigMapConfD) -}}
{{- else -}}
{{- toJson (keys .Values.config.confD | sortAlpha) -}}
{{- end -}}
{{- end -}}

{{- define "lwsws.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
