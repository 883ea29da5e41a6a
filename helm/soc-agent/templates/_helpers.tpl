{{- define "soc-agent.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "soc-agent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "soc-agent.labels" -}}
app.kubernetes.io/name: {{ include "soc-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "soc-agent.selector" -}}
app.kubernetes.io/name: {{ include "soc-agent.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "soc-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "soc-agent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "soc-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The pod spec shared by the worker and the API; `component` and `spec` vary.
Optional: `ports`, `probes` ({startup, liveness, readiness} paths), `probePort`
(the named port the probes use; default "http") and `env` (extra variables). */}}
{{- define "soc-agent.pod" -}}
serviceAccountName: {{ include "soc-agent.serviceAccountName" .root }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .component }}
    image: {{ include "soc-agent.image" .root }}
    imagePullPolicy: {{ .root.Values.image.pullPolicy }}
    args:
      {{- toYaml .spec.args | nindent 6 }}
    env:
      - name: SOC_AGENT_CONFIG
        value: /etc/soc-agent/config.yaml
      - name: SOC_AGENT_STORE
        value: /var/lib/soc-agent/soc-agent.db
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
      {{- range .root.Values.secretEnv }}
      - name: {{ .name }}
        valueFrom:
          secretKeyRef:
            name: {{ .secretKeyRef.name }}
            key: {{ .secretKeyRef.key }}
      {{- end }}
    securityContext:
      {{- toYaml .root.Values.securityContext | nindent 6 }}
    resources:
      {{- toYaml .spec.resources | nindent 6 }}
    volumeMounts:
      - {name: config, mountPath: /etc/soc-agent, readOnly: true}
      - {name: data, mountPath: /var/lib/soc-agent}
      - {name: tmp, mountPath: /tmp}
      {{- range $i, $s := .root.Values.secretFiles }}
      - {name: {{ printf "secret-files-%d" $i }}, mountPath: {{ printf "/run/secrets/%s" $s.secretName }}, readOnly: true}
      {{- end }}
    {{- if .ports }}
    ports:
      {{- toYaml .ports | nindent 6 }}
    {{- end }}
    {{- if .probes }}
    {{- $port := .probePort | default "http" }}
    {{- with .probes.startup }}
    startupProbe:
      httpGet: {path: {{ . }}, port: {{ $port }}}
      periodSeconds: 2
      failureThreshold: 60
    {{- end }}
    livenessProbe:
      httpGet: {path: {{ .probes.liveness }}, port: {{ $port }}}
      periodSeconds: 10
    readinessProbe:
      httpGet: {path: {{ .probes.readiness }}, port: {{ $port }}}
      periodSeconds: 5
    {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "soc-agent.fullname" .root }}
  - name: data
    emptyDir: {}
  - name: tmp
    emptyDir: {}
  {{- range $i, $s := .root.Values.secretFiles }}
  - name: {{ printf "secret-files-%d" $i }}
    secret:
      secretName: {{ $s.secretName }}
      defaultMode: 0440
  {{- end }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pods share state only through Elasticsearch: with SQLite each pod has its own
store, so a second pod would act on alerts and proposals the others cannot see.
*/}}
{{- define "soc-agent.checkSharedState" -}}
{{- $backend := default "sqlite" .Values.config.store_backend -}}
{{- $pods := 0 -}}
{{- if .Values.worker.enabled }}{{ $pods = add $pods .Values.worker.replicas }}{{ end -}}
{{- if .Values.api.enabled }}{{ $pods = add $pods .Values.api.replicas }}{{ end -}}
{{- if and (gt (int $pods) 1) (ne $backend "elasticsearch") -}}
{{- fail (printf "%d pods need config.store_backend: elasticsearch (with %s each pod keeps its own store)" (int $pods) $backend) -}}
{{- end -}}
{{- /* Every pod seals the one shared audit chain with the same key: it must come from a Secret. */ -}}
{{- if eq $backend "elasticsearch" -}}
{{- $keyed := false -}}
{{- range .Values.secretEnv }}{{ if eq .name "SOC_AGENT_AUDIT_KEY" }}{{ $keyed = true }}{{ end }}{{ end -}}
{{- if not $keyed -}}
{{- fail "config.store_backend elasticsearch needs the audit chain's HMAC key: add SOC_AGENT_AUDIT_KEY to secretEnv (a secretKeyRef)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
