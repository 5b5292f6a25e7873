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

{{/* "true" when lwsws is a Gateway API or an Ingress controller, else "". */}}
{{- define "lwsws.controllerMode" -}}
{{- if or .Values.gatewayAPI.enabled .Values.ingress.enabled -}}true{{- end -}}
{{- end -}}

{{/* "true" in Kubernetes mode: asked for, or implied by a controller. */}}
{{- define "lwsws.kubernetesMode" -}}
{{- if or .Values.kubernetes.enabled (include "lwsws.controllerMode" .) -}}true{{- end -}}
{{- end -}}

{{/* A prefix for the release's cluster-scoped objects: two releases of one name in two
namespaces must not share them. */}}
{{- define "lwsws.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "lwsws.fullname" .) -}}
{{- end -}}

{{/* The listeners in force (JSON list): `listeners` in controller mode, else none. Fails on a
name, Service port or container port used twice. */}}
{{- define "lwsws.listeners" -}}
{{- if include "lwsws.controllerMode" . -}}
{{- $seen := dict -}}
{{- range .Values.listeners -}}
{{- range $what, $key := dict "name" .name "port" (toString .port) "containerPort" (toString .containerPort) -}}
{{- $id := printf "%s=%s" $what $key -}}
{{- if hasKey $seen $id -}}
{{- fail (printf "listeners: %s %s is used twice" $what $key) -}}
{{- end -}}
{{- $_ := set $seen $id true -}}
{{- end -}}
{{- if eq (int .containerPort) (int $.Values.adminPort) -}}
{{- fail (printf "listeners[%s]: containerPort %v is the adminPort" .name .containerPort) -}}
{{- end -}}
{{- if and $.Values.hostNetwork .hostPort (ne (int .hostPort) (int .containerPort)) -}}
{{- fail (printf "listeners[%s]: with hostNetwork the pod's ports are the node's: hostPort must be containerPort (%v) or unset" .name .containerPort) -}}
{{- end -}}
{{- end -}}
{{- toJson .Values.listeners -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/* The entries of `ports` in force (JSON list): in controller mode a listener takes the place
of the entry of the same name; any other clash of a Service port or container port with a
listener fails. */}}
{{- define "lwsws.vhostPorts" -}}
{{- $listeners := include "lwsws.listeners" . | fromJsonArray -}}
{{- $names := dict -}}
{{- $servicePorts := dict -}}
{{- $containerPorts := dict -}}
{{- range $listeners -}}
{{- $_ := set $names .name true -}}
{{- $_ := set $servicePorts (toString .port) .name -}}
{{- $_ := set $containerPorts (toString .containerPort) .name -}}
{{- end -}}
{{- $kept := list -}}
{{- range .Values.ports -}}
{{- if not (hasKey $names .name) -}}
{{- if and .servicePort (hasKey $servicePorts (toString .servicePort)) -}}
{{- fail (printf "ports[%s]: servicePort %v is also the port of listeners[%s]" .name .servicePort (get $servicePorts (toString .servicePort))) -}}
{{- end -}}
{{- if hasKey $containerPorts (toString .containerPort) -}}
{{- fail (printf "ports[%s]: containerPort %v is also the containerPort of listeners[%s]" .name .containerPort (get $containerPorts (toString .containerPort))) -}}
{{- end -}}
{{- $kept = append $kept . -}}
{{- end -}}
{{- end -}}
{{- toJson $kept -}}
{{- end -}}

{{/* The namespaces watched, sorted (JSON list); empty means all. */}}
{{- define "lwsws.watchNamespaces" -}}
{{- toJson (sortAlpha .Values.watchNamespaces) -}}
{{- end -}}

{{/* NAMESPACE/NAME of the Service whose addresses go into Gateway and Ingress status, or "". */}}
{{- define "lwsws.publishService" -}}
{{- if and .Values.publishService .Values.publishAddresses -}}
{{- fail "publishService and publishAddresses: set one of the two" -}}
{{- end -}}
{{- if .Values.publishAddresses -}}
{{- else if contains "/" .Values.publishService -}}
{{- .Values.publishService -}}
{{- else if .Values.publishService -}}
{{- printf "%s/%s" .Release.Namespace .Values.publishService -}}
{{- else if .Values.service.enabled -}}
{{- printf "%s/%s" .Release.Namespace (include "lwsws.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The --listener-port-map value: PORT=CONTAINERPORT for each listener, comma-separated. */}}
{{- define "lwsws.listenerPortMap" -}}
{{- $pairs := list -}}
{{- range include "lwsws.listeners" . | fromJsonArray -}}
{{- $pairs = append $pairs (printf "%v=%v" .port .containerPort) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* The controllers' rules on cluster-scoped kinds (a YAML list). */}}
{{- define "lwsws.controllerClusterRules" -}}
{{- if .Values.gatewayAPI.enabled }}
# Which GatewayClasses name our controllerName; their Accepted condition.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses/status"]
  verbs: ["update", "patch"]
{{- end }}
{{- if .Values.ingress.enabled }}
# Which IngressClasses name our controller.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingressclasses"]
  verbs: ["get", "list", "watch"]
{{- end }}
# Namespaces, read-only: their labels are what a Gateway listener's allowedRoutes selector
# matches.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end -}}

{{/* The controllers' rules on namespaced kinds (a YAML list), for a ClusterRole or a Role. */}}
{{- define "lwsws.controllerNamespacedRules" -}}
{{- if .Values.gatewayAPI.enabled }}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways", "httproutes", "referencegrants"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways/status", "httproutes/status"]
  verbs: ["update", "patch"]
{{- end }}
{{- if .Values.ingress.enabled }}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["update", "patch"]
{{- end }}
# Backends: a Service's ports, and its ready endpoints from its EndpointSlices.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
# Certificates. lwsws lists and watches only Secrets of type kubernetes.io/tls (a field selector
# on type) and keeps only those a Gateway listener or an Ingress refers to. RBAC cannot narrow
# this further: resourceNames would have to name, at install time, Secrets nobody has
# referred to yet.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
{{- end -}}

{{/*
The pod's terminationGracePeriodSeconds: lwsws's shutdown delay and grace period and a margin
for the process to exit, unless set; a value set too short for them is refused.
*/}}
{{- define "lwsws.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.shutdown.delaySeconds .Values.shutdown.graceSeconds -}}
{{- $set := .Values.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $set -}}
{{- add $needed 5 -}}
{{- else if lt (int $set) (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds %v is shorter than shutdown.delaySeconds + shutdown.graceSeconds (%v): kubelet would kill lwsws mid-drain" $set $needed) -}}
{{- else -}}
{{- $set -}}
{{- end -}}
{{- end -}}
