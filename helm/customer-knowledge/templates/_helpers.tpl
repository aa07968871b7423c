{{/*
Names, labels and the pieces shared by the Deployment and the migration Job.
*/}}

{{- define "ck.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-based, truncated to the 63 characters a DNS label allows. */}}
{{- define "ck.fullname" -}}
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

{{- define "ck.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ck.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ck.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ck.labels" -}}
helm.sh/chart: {{ include "ck.chart" . }}
{{ include "ck.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: customer-knowledge
{{- end }}

{{/* Selects the server pods only (not the migration Job's). */}}
{{- define "ck.serverSelectorLabels" -}}
{{ include "ck.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "ck.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ck.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ck.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the JWT public keys Secret is mounted. */}}
{{- define "ck.jwtKeysDir" -}}/etc/customer-knowledge/jwt{{- end }}

{{/* Where the gRPC TLS files are mounted (server pods only). */}}
{{- define "ck.tlsDir" -}}/etc/customer-knowledge/tls{{- end }}

{{/* grpcurl's connection flags for the NOTES: plaintext, TLS or mutual TLS. */}}
{{- define "ck.grpcurlFlags" -}}
{{- if .Values.server.tls.enabled -}}
-cacert ca.crt -servername {{ include "ck.fullname" . }}.{{ .Release.Namespace }}.svc
{{- if and .Values.server.tls.clientCa.existingSecret (not .Values.server.tls.clientCa.optional) }} -cert client.crt -key client.key{{ end }}
{{- else -}}
-plaintext
{{- end }}
{{- end }}

{{/* True (non-empty) when more than one server pod can run at once. */}}
{{- define "ck.multiReplica" -}}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.maxReplicas) 1 }}true{{ end }}
{{- else if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/*
Rules between values that values.schema.json cannot express (arithmetic and
comparisons); the schema carries all the others. Included by the templates
that depend on them, so `helm install` and `helm template` stop here.
*/}}
{{- define "ck.validate" -}}
{{- $v := .Values }}
{{- $needed := add $v.server.shutdownGraceSecs $v.lifecycle.preStopSleepSeconds }}
{{- if le (int $v.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than server.shutdownGraceSecs + lifecycle.preStopSleepSeconds (%d)" (int $v.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}

{{/*
Non-secret settings as environment variables: the ConfigMap's data, and the
migration Job's env (a pre-install hook runs before the ConfigMap exists).
*/}}
{{- define "ck.configEnv" -}}
CK__SERVER__GRPC_ADDR: "0.0.0.0:50051"
CK__SERVER__ADMIN_ADDR: "0.0.0.0:9464"
CK__SERVER__SHUTDOWN_GRACE_SECS: {{ .Values.server.shutdownGraceSecs | int64 | quote }}
CK__SERVER__MAX_MESSAGE_BYTES: {{ .Values.server.maxMessageBytes | int64 | quote }}
CK__SERVER__REQUEST_TIMEOUT_SECS: {{ .Values.server.requestTimeoutSecs | int64 | quote }}
CK__SERVER__CONCURRENCY_LIMIT_PER_CONNECTION: {{ .Values.server.concurrencyLimitPerConnection | int64 | quote }}
CK__SERVER__MAX_CONCURRENT_CALLS: {{ .Values.server.maxConcurrentCalls | int64 | quote }}
CK__DATABASE__MIGRATE: {{ not .Values.database.migrationJob.enabled | quote }}
CK__DATABASE__MAX_CONNECTIONS: {{ .Values.database.maxConnections | int64 | quote }}
CK__DATABASE__ACQUIRE_TIMEOUT_MS: {{ .Values.database.acquireTimeoutMs | int64 | quote }}
CK__DATABASE__STATEMENT_TIMEOUT_MS: {{ .Values.database.statementTimeoutMs | int64 | quote }}
CK__DATABASE__HEALTH_CHECK_INTERVAL_MS: {{ .Values.database.healthCheckIntervalMs | int64 | quote }}
CK__DATABASE__READ_YOUR_WRITES_WAIT_MS: {{ .Values.database.readYourWritesWaitMs | int64 | quote }}
CK__AUTH__MODE: {{ .Values.auth.mode | quote }}
CK__AUTH__TRUSTED_HEADERS_ALLOW_NON_LOOPBACK: {{ .Values.auth.trustedHeadersAllowNonLoopback | quote }}
{{- if eq .Values.auth.mode "jwt" }}
CK__AUTH__JWT__ISSUER: {{ .Values.auth.jwt.issuer | quote }}
CK__AUTH__JWT__AUDIENCE: {{ .Values.auth.jwt.audience | quote }}
CK__AUTH__JWT__LEEWAY_SECS: {{ .Values.auth.jwt.leewaySecs | int64 | quote }}
{{- if .Values.auth.jwt.publicKeys.existingSecret }}
CK__AUTH__JWT__PUBLIC_KEYS_FILE: {{ printf "%s/%s" (include "ck.jwtKeysDir" .) .Values.auth.jwt.publicKeys.key | quote }}
{{- end }}
{{- end }}
{{- if .Values.server.tls.enabled }}
CK__SERVER__TLS__CERT_FILE: {{ printf "%s/tls.crt" (include "ck.tlsDir" .) | quote }}
CK__SERVER__TLS__KEY_FILE: {{ printf "%s/tls.key" (include "ck.tlsDir" .) | quote }}
{{- if .Values.server.tls.clientCa.existingSecret }}
CK__SERVER__TLS__CLIENT_CA_FILE: {{ printf "%s/client-ca.crt" (include "ck.tlsDir" .) | quote }}
CK__SERVER__TLS__CLIENT_AUTH_OPTIONAL: {{ .Values.server.tls.clientCa.optional | quote }}
{{- end }}
{{- end }}
CK__LOG__FORMAT: {{ .Values.log.format | quote }}
CK__LOG__LEVEL: {{ .Values.log.level | quote }}
OTEL_SERVICE_NAME: {{ .Values.otel.serviceName | default (include "ck.fullname" .) | quote }}
{{- if .Values.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .Values.otel.endpoint | quote }}
{{- end }}
OTEL_TRACES_SAMPLER: {{ .Values.otel.sampler | quote }}
{{- if .Values.otel.samplerArg }}
OTEL_TRACES_SAMPLER_ARG: {{ .Values.otel.samplerArg | quote }}
{{- end }}
{{- end }}

{{/* A secretKeyRef env entry: (list name secretName key). */}}
{{- define "ck.secretEnv" -}}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ index . 1 | quote }}
      key: {{ index . 2 | quote }}
{{- end }}

{{/*
Env entries that are not in the ConfigMap: secrets, downward API, extras.
Shared by the server container and the migration Job.
*/}}
{{- define "ck.extraEnv" -}}
{{ include "ck.secretEnv" (list "DATABASE_URL" .Values.database.existingSecret .Values.database.urlKey) }}
{{- if .Values.database.readUrlKey }}
{{ include "ck.secretEnv" (list "CK__DATABASE__READ_URL" .Values.database.existingSecret .Values.database.readUrlKey) }}
{{- end }}
{{- if and (eq .Values.auth.mode "jwt") .Values.auth.jwt.hs256Secret.existingSecret }}
{{ include "ck.secretEnv" (list "CK__AUTH__JWT__HS256_SECRET" .Values.auth.jwt.hs256Secret.existingSecret .Values.auth.jwt.hs256Secret.key) }}
{{- end }}
{{- if .Values.api.pageTokenSecret.existingSecret }}
{{ include "ck.secretEnv" (list "CK__API__PAGE_TOKEN_SECRET" .Values.api.pageTokenSecret.existingSecret .Values.api.pageTokenSecret.key) }}
{{- end }}
{{- if .Values.otel.headersSecret.existingSecret }}
{{ include "ck.secretEnv" (list "OTEL_EXPORTER_OTLP_HEADERS" .Values.otel.headersSecret.existingSecret .Values.otel.headersSecret.key) }}
{{- end }}
{{- if .Values.otel.kubernetesResourceAttributes }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.namespace.name=$(K8S_NAMESPACE_NAME),k8s.pod.name=$(K8S_POD_NAME),k8s.node.name=$(K8S_NODE_NAME)"
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level security context: the `restricted` Pod Security Standard. */}}
{{- define "ck.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context: the `restricted` Pod Security Standard. */}}
{{- define "ck.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Volumes shared by the server and the migration Job. */}}
{{- define "ck.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and (eq .Values.auth.mode "jwt") .Values.auth.jwt.publicKeys.existingSecret }}
- name: jwt-public-keys
  secret:
    secretName: {{ .Values.auth.jwt.publicKeys.existingSecret | quote }}
    defaultMode: 0444
    items:
      - key: {{ .Values.auth.jwt.publicKeys.key | quote }}
        path: {{ .Values.auth.jwt.publicKeys.key | quote }}
{{- end }}
{{- end }}

{{/*
The gRPC certificate, key and client CA as one read-only directory, for the
server pods only (`migrate` serves nothing). Projected so that the client CA
may come from another Secret; 0440 with the pod's fsGroup lets the non-root
user read the key and no one else.
*/}}
{{- define "ck.tlsVolume" -}}
{{- $tls := .Values.server.tls }}
{{- if $tls.enabled }}
- name: grpc-tls
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ $tls.existingSecret | quote }}
          items:
            - key: {{ $tls.certKey | quote }}
              path: tls.crt
            - key: {{ $tls.keyKey | quote }}
              path: tls.key
      {{- if $tls.clientCa.existingSecret }}
      - secret:
          name: {{ $tls.clientCa.existingSecret | quote }}
          items:
            - key: {{ $tls.clientCa.key | quote }}
              path: client-ca.crt
      {{- end }}
{{- end }}
{{- end }}

{{- define "ck.tlsVolumeMount" -}}
{{- if .Values.server.tls.enabled }}
- name: grpc-tls
  mountPath: {{ include "ck.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "ck.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and (eq .Values.auth.mode "jwt") .Values.auth.jwt.publicKeys.existingSecret }}
- name: jwt-public-keys
  mountPath: {{ include "ck.jwtKeysDir" . }}
  readOnly: true
{{- end }}
{{- end }}
