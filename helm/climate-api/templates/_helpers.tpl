{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "climate-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "climate-api.fullname" -}}
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

{{/* "<fullname>-<component>", e.g. climate-api-worker. Call with (list $ "worker"). */}}
{{- define "climate-api.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "climate-api.fullname" $root | trunc 50 | trimSuffix "-") (index . 1) -}}
{{- end -}}

{{- define "climate-api.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "climate-api.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------------------------ */}}

{{- define "climate-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "climate-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "climate-api.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "climate-api.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: climate-api
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component's objects: (list $ "api"). */}}
{{- define "climate-api.componentLabels" -}}
{{ include "climate-api.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "climate-api.componentSelectorLabels" -}}
{{ include "climate-api.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Image --------------------------------------------------------------------------------- */}}

{{- define "climate-api.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Configuration --------------------------------------------------------------------------- */}}

{{- define "climate-api.configDir" -}}/etc/climate-api{{- end -}}
{{- define "climate-api.templatesDir" -}}/etc/climate-api/templates{{- end -}}

{{/*
The product's configuration file: .Values.config plus the keys the chart owns. '$' is doubled
because the product substitutes dollar-brace variables in the file; values are meant literally.
*/}}
{{- define "climate-api.configFile" -}}
{{- $c := deepCopy .Values.config -}}
{{- if not $c.base_url }}{{- $_ := unset $c "base_url" -}}{{- end -}}
{{- if not $c.default_extent }}{{- $_ := unset $c "default_extent" -}}{{- end -}}
{{- $_ := set $c "data_dir" .Values.storage.dataDir -}}
{{- if .Values.customTemplates -}}
{{- $_ := set $c "templates_dir" (include "climate-api.templatesDir" .) -}}
{{- end -}}
{{- $_ := set $c "server" (dict "bind" (printf "0.0.0.0:%d" (int .Values.api.port))) -}}
{{- $worker := deepCopy (default dict $c.worker) -}}
{{- $_ := set $worker "metrics_bind" (printf "0.0.0.0:%d" (int .Values.worker.metricsPort)) -}}
{{- $_ := set $c "worker" $worker -}}
{{- $scheduler := deepCopy (default dict $c.scheduler) -}}
{{- $_ := set $scheduler "metrics_bind" (printf "0.0.0.0:%d" (int .Values.scheduler.metricsPort)) -}}
{{- $_ := set $c "scheduler" $scheduler -}}
# Rendered by the climate-api Helm chart from .Values.config; edit the values, not this file.
{{ toYaml $c | replace "$" "$$" }}
{{- end -}}

{{/* The drain time workers are given on SIGTERM, from the product configuration. */}}
{{- define "climate-api.workerShutdownGrace" -}}
{{- $w := default dict .Values.config.worker -}}
{{- if hasKey $w "shutdown_grace_seconds" -}}{{- int $w.shutdown_grace_seconds -}}{{- else -}}25{{- end -}}
{{- end -}}

{{/* Secrets ------------------------------------------------------------------------------- */}}

{{- define "climate-api.defaultSecret" -}}
{{- default (printf "%s-credentials" (include "climate-api.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* secretKeyRef of one credential: (list $ .Values.secrets.database "key"). */}}
{{- define "climate-api.secretKeyRef" -}}
{{- $root := index . 0 -}}
{{- $entry := index . 1 -}}
secretKeyRef:
  name: {{ default (include "climate-api.defaultSecret" $root) $entry.existingSecret | quote }}
  key: {{ index $entry (index . 2) | quote }}
{{- end -}}

{{/* Environment ------------------------------------------------------------------------------ */}}

{{/*
Environment of a Climate API container: (list $ "climate-worker" "full"|"database" [extraEnv]).
"database" (the migrations Job) gets only what `climate-api migrate` needs; the optional fourth
item is the component's own extraEnv, added after the global one.
*/}}
{{- define "climate-api.env" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- $scope := index . 2 -}}
{{- $s := $root.Values.secrets -}}
- name: CLIMATE_API_CONFIG
  value: {{ printf "%s/climate-api.yaml" (include "climate-api.configDir" $root) | quote }}
- name: CLIMATE_API_LOG_FORMAT
  value: json
# The image sets this too; it wins over the file's server.bind, so keep both equal.
- name: CLIMATE_API__SERVER__BIND
  value: {{ printf "0.0.0.0:%d" (int $root.Values.api.port) | quote }}
- name: CLIMATE_API__DATABASE__URL
  valueFrom:
    {{- include "climate-api.secretKeyRef" (list $root $s.database "key") | nindent 4 }}
{{- if eq $scope "full" }}
- name: CLIMATE_API__QUEUE__URL
  valueFrom:
    {{- include "climate-api.secretKeyRef" (list $root $s.amqp "key") | nindent 4 }}
- name: CLIMATE_API__CACHE__URL
  valueFrom:
    {{- include "climate-api.secretKeyRef" (list $root $s.redis "key") | nindent 4 }}
{{- if $s.s3.enabled }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    {{- include "climate-api.secretKeyRef" (list $root $s.s3 "accessKeyIdKey") | nindent 4 }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    {{- include "climate-api.secretKeyRef" (list $root $s.s3 "secretAccessKeyKey") | nindent 4 }}
{{- end }}
{{- with $root.Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $root.Values.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- if $root.Values.s3.allowHttp }}
- name: AWS_ALLOW_HTTP
  value: "true"
{{- end }}
{{- range $id, $p := $s.providers }}
{{- if $p.apiKeyKey }}
- name: {{ printf "CLIMATE_API__PROVIDERS__%s__API_KEY" (upper $id) }}
  valueFrom:
    {{- include "climate-api.secretKeyRef" (list $root $p "apiKeyKey") | nindent 4 }}
{{- end }}
{{- if $p.netrcKey }}
- name: {{ printf "CLIMATE_API__PROVIDERS__%s__NETRC" (upper $id) }}
  value: {{ printf "%s/secrets/%s/netrc" (include "climate-api.configDir" $root) $id | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if $root.Values.otel.enabled }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "otel.endpoint is required when otel.enabled is true" $root.Values.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_SERVICE_NAME
  value: {{ $service | quote }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.namespace.name=%s,k8s.pod.name=$(K8S_POD_NAME)%s" $root.Release.Namespace (ternary (printf ",%s" $root.Values.otel.resourceAttributes) "" (ne $root.Values.otel.resourceAttributes "")) | quote }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- if gt (len .) 3 }}
{{- with index . 3 }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes --------------------------------------------------------------------------------- */}}

{{/* (list $ "full"|"database"); "database" mounts the migrations Job's own config. */}}
{{- define "climate-api.volumes" -}}
{{- $root := index . 0 -}}
{{- $scope := index . 1 -}}
- name: config
  configMap:
    name: {{ ternary (include "climate-api.componentName" (list $root "migrations-config")) (include "climate-api.componentName" (list $root "config")) (eq $scope "database") }}
{{- if and $root.Values.customTemplates (eq $scope "full") }}
- name: templates
  configMap:
    name: {{ include "climate-api.componentName" (list $root "templates") }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $root.Values.storage.tmpSizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ $root.Values.storage.dataSizeLimit }}
{{- if eq $scope "full" }}
{{- range $id, $p := $root.Values.secrets.providers }}
{{- if $p.netrcKey }}
- name: {{ printf "netrc-%s" ($id | replace "_" "-") | trunc 63 | trimSuffix "-" }}
  secret:
    secretName: {{ default (include "climate-api.defaultSecret" $root) $p.existingSecret | quote }}
    defaultMode: 0400
    items:
      - key: {{ $p.netrcKey | quote }}
        path: netrc
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "climate-api.volumeMounts" -}}
{{- $root := index . 0 -}}
{{- $scope := index . 1 -}}
- name: config
  mountPath: {{ printf "%s/climate-api.yaml" (include "climate-api.configDir" $root) }}
  subPath: climate-api.yaml
  readOnly: true
{{- if and $root.Values.customTemplates (eq $scope "full") }}
- name: templates
  mountPath: {{ include "climate-api.templatesDir" $root }}
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: {{ $root.Values.storage.dataDir }}
{{- if eq $scope "full" }}
{{- range $id, $p := $root.Values.secrets.providers }}
{{- if $p.netrcKey }}
- name: {{ printf "netrc-%s" ($id | replace "_" "-") | trunc 63 | trimSuffix "-" }}
  mountPath: {{ printf "%s/secrets/%s" (include "climate-api.configDir" $root) $id }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by the Deployments: (list $ .Values.api). */}}
{{- define "climate-api.podScheduling" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
{{- with $c.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "climate-api.podCommon" -}}
serviceAccountName: {{ include "climate-api.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Pod template annotations: roll the pods when the configuration changes. */}}
{{- define "climate-api.podAnnotations" -}}
{{- $root := index . 0 -}}
checksum/config: {{ include "climate-api.configFile" $root | sha256sum }}
checksum/templates: {{ toYaml $root.Values.customTemplates | sha256sum }}
{{- with index . 1 }}
{{ toYaml . }}
{{- end }}
{{- end -}}
