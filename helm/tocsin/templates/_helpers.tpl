{{/* Names ----------------------------------------------------------------------------------- */}}

{{- define "tocsin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tocsin.fullname" -}}
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

{{/* Name of a component's objects: (dict "root" $ "component" "ingest") */}}
{{- define "tocsin.componentName" -}}
{{- printf "%s-%s" (include "tocsin.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tocsin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tocsin.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tocsin.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Labels ---------------------------------------------------------------------------------- */}}

{{- define "tocsin.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: tocsin
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- end -}}

{{/* (dict "root" $ "component" "worker" "pool" "acme"); pool is optional */}}
{{- define "tocsin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tocsin.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .pool }}
tocsin.io/worker-pool: {{ .pool }}
{{- end }}
{{- end -}}

{{- define "tocsin.labels" -}}
{{ include "tocsin.commonLabels" .root }}
{{ include "tocsin.selectorLabels" . }}
{{- end -}}

{{/* Shutdown -------------------------------------------------------------------------------- */}}

{{/* TOCSIN_SHUTDOWN__GRACE value, from shutdown.graceSeconds */}}
{{- define "tocsin.shutdownGrace" -}}
{{- printf "%ds" (int .Values.shutdown.graceSeconds) -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds from the same number: (dict "root" $ "steps" 4 "preStop" 0).
shutdown.grace bounds each sequential drain step of a service, so the pod must outlive all of
them: preStop + steps * grace + extraSeconds.
*/}}
{{- define "tocsin.terminationGracePeriodSeconds" -}}
{{- $grace := int .root.Values.shutdown.graceSeconds -}}
{{- add (int (default 0 .preStop)) (mul (int .steps) $grace) (int .root.Values.shutdown.extraSeconds) -}}
{{- end -}}

{{/* Environment ----------------------------------------------------------------------------- */}}

{{/* Map of extra settings -> TOCSIN_<SECTION>__<FIELD>: (dict "section" "ingest" "config" map) */}}
{{- define "tocsin.sectionEnv" -}}
{{- $section := .section -}}
{{- range $field, $value := .config }}
- name: {{ printf "TOCSIN_%s__%s" $section $field | upper }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Every command: [postgres], [telemetry], [shutdown]. (dict "root" $ "maxConnections" n) */}}
{{- define "tocsin.env.base" -}}
{{- $v := .root.Values -}}
- name: TOCSIN_POSTGRES__URL
  valueFrom:
    secretKeyRef:
      name: {{ required "postgres.existingSecret is required: a Secret holding the database URL" $v.postgres.existingSecret | quote }}
      key: {{ $v.postgres.urlKey | quote }}
{{- if .maxConnections }}
- name: TOCSIN_POSTGRES__MAX_CONNECTIONS
  value: {{ .maxConnections | int | toString | quote }}
{{- end }}
- name: TOCSIN_TELEMETRY__LOG_FORMAT
  value: {{ $v.telemetry.logFormat | quote }}
- name: TOCSIN_TELEMETRY__FILTER
  value: {{ $v.telemetry.filter | quote }}
{{- if $v.telemetry.listen.enabled }}
- name: TOCSIN_TELEMETRY__LISTEN
  value: {{ printf "0.0.0.0:%d" (int $v.telemetry.listen.port) | quote }}
{{- end }}
{{- if $v.telemetry.traces.endpoint }}
- name: TOCSIN_TELEMETRY__TRACES__ENDPOINT
  value: {{ $v.telemetry.traces.endpoint | quote }}
- name: TOCSIN_TELEMETRY__TRACES__SAMPLE_RATIO
  value: {{ $v.telemetry.traces.sampleRatio | toString | quote }}
{{- end }}
- name: TOCSIN_SHUTDOWN__GRACE
  value: {{ include "tocsin.shutdownGrace" .root | quote }}
{{- end -}}

{{/* [nats]: URL (from the Secret when given) and the stream settings. Takes $ */}}
{{- define "tocsin.env.nats" -}}
{{- if .Values.nats.existingSecret }}
- name: TOCSIN_NATS__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.nats.existingSecret | quote }}
      key: {{ .Values.nats.urlKey | quote }}
{{- else }}
- name: TOCSIN_NATS__URL
  value: {{ .Values.nats.url | quote }}
{{- end }}
{{- include "tocsin.sectionEnv" (dict "section" "nats" "config" .Values.nats.config) }}
{{- end -}}

{{/* Pods ------------------------------------------------------------------------------------ */}}

{{- define "tocsin.podSpecCommon" -}}
serviceAccountName: {{ include "tocsin.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "tocsin.containerCommon" -}}
image: {{ include "tocsin.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* (dict "probes" .probes "port" "http") */}}
{{- define "tocsin.probes" -}}
{{- with .probes.liveness }}
livenessProbe:
  httpGet:
    path: {{ .path }}
    port: {{ $.port }}
  periodSeconds: {{ .periodSeconds }}
  timeoutSeconds: {{ .timeoutSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
{{- with .probes.readiness }}
readinessProbe:
  httpGet:
    path: {{ .path }}
    port: {{ $.port }}
  periodSeconds: {{ .periodSeconds }}
  timeoutSeconds: {{ .timeoutSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
{{- end -}}

{{- define "tocsin.metricsPort" -}}
{{- if .Values.telemetry.listen.enabled }}
- name: metrics
  containerPort: {{ .Values.telemetry.listen.port }}
  protocol: TCP
{{- end }}
{{- end -}}

{{- define "tocsin.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Network policy egress rules ------------------------------------------------------------- */}}

{{- define "tocsin.egress.dns" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}

{{- define "tocsin.egress.postgres" -}}
- to:
    {{- toYaml .Values.postgres.networkPolicy.to | nindent 4 }}
  ports:
    - {port: {{ .Values.postgres.networkPolicy.port }}, protocol: TCP}
{{- end -}}

{{- define "tocsin.egress.nats" -}}
- to:
    {{- toYaml .Values.nats.networkPolicy.to | nindent 4 }}
  ports:
    - {port: {{ .Values.nats.networkPolicy.port }}, protocol: TCP}
{{- end -}}

{{/* To the trace collector, when traces are exported and its peers are given. */}}
{{- define "tocsin.egress.otlp" -}}
{{- if and .Values.telemetry.traces.endpoint .Values.telemetry.traces.networkPolicy.to }}
- to:
    {{- toYaml .Values.telemetry.traces.networkPolicy.to | nindent 4 }}
  ports:
    - {port: {{ .Values.telemetry.traces.networkPolicy.port }}, protocol: TCP}
{{- end }}
{{- end -}}

{{- define "tocsin.ingress.metrics" -}}
{{- if .Values.telemetry.listen.enabled }}
- from:
    {{- toYaml .Values.networkPolicy.metricsFrom | nindent 4 }}
  ports:
    - {port: {{ .Values.telemetry.listen.port }}, protocol: TCP}
{{- end }}
{{- end -}}

{{/* Worker pools ---------------------------------------------------------------------------- */}}

{{/* Subject filter of a pool: filterSubject, else tocsin.runs.<tenant>.>, else tocsin.runs.> */}}
{{- define "tocsin.poolFilterSubject" -}}
{{- if .pool.filterSubject -}}
{{- .pool.filterSubject -}}
{{- else if .pool.tenant -}}
{{- printf "tocsin.runs.%s.>" .pool.tenant -}}
{{- else -}}
tocsin.runs.>
{{- end -}}
{{- end -}}

{{/* Durable consumer of a pool: consumer, else workers-<tenant>, else workers-<name> for a
     filtered pool, else the worker's default "workers". */}}
{{- define "tocsin.poolConsumer" -}}
{{- if .pool.consumer -}}
{{- .pool.consumer -}}
{{- else if .pool.tenant -}}
{{- printf "workers-%s" .pool.tenant -}}
{{- else if .pool.filterSubject -}}
{{- printf "workers-%s" .pool.name -}}
{{- else -}}
workers
{{- end -}}
{{- end -}}

{{/*
"true" when two NATS subject filters can match a common subject: (list "a.*.c" "a.>").
Tokens are compared left to right; `*` matches any one token, `>` one or more to the end.
*/}}
{{- define "tocsin.subjectsOverlap" -}}
{{- $a := splitList "." (index . 0) -}}
{{- $b := splitList "." (index . 1) -}}
{{- $overlap := false -}}
{{- $done := false -}}
{{- range $i := until (int (max (len $a) (len $b))) -}}
{{- if not $done -}}
{{- if or (ge $i (len $a)) (ge $i (len $b)) -}}
{{- $done = true -}}
{{- else -}}
{{- $ta := index $a $i -}}
{{- $tb := index $b $i -}}
{{- if or (eq $ta ">") (eq $tb ">") -}}
{{- $overlap = true -}}
{{- $done = true -}}
{{- else if and (ne $ta $tb) (ne $ta "*") (ne $tb "*") -}}
{{- $done = true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (not $done) (eq (len $a) (len $b)) -}}
{{- $overlap = true -}}
{{- end -}}
{{- if $overlap }}true{{ end -}}
{{- end -}}
