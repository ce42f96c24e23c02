{{/*
Names and labels.
*/}}
{{- define "rekor-rs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rekor-rs.fullname" -}}
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

{{- define "rekor-rs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rekor-rs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rekor-rs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rekor-rs.labels" -}}
helm.sh/chart: {{ include "rekor-rs.chart" . }}
{{ include "rekor-rs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ printf "server-%s" .Values.backend }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "rekor-rs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rekor-rs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image: "<repository>:<tag>", the tag defaulting to "<appVersion>-<backend>".
*/}}
{{- define "rekor-rs.image" -}}
{{- $tag := .Values.image.tag | default (printf "%s-%s" .Chart.AppVersion .Values.backend) }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/*
Stops the render with a clear message when required values are missing or inconsistent.
*/}}
{{- define "rekor-rs.validate" -}}
{{- if not (has .Values.backend (list "posix" "gcp" "aws")) }}
{{- fail (printf "backend must be posix, gcp or aws (got %q)" .Values.backend) }}
{{- end }}
{{- if not .Values.server.hostname }}
{{- fail "server.hostname is required: the log's public host name (checkpoint origin), without scheme or port" }}
{{- end }}
{{- if or (contains "://" .Values.server.hostname) (contains ":" .Values.server.hostname) (contains "/" .Values.server.hostname) }}
{{- fail "server.hostname must be a bare host name (no scheme, port or path)" }}
{{- end }}
{{- if ne .Values.backend "posix" }}
{{- if not .Values.signer.existingSecret }}
{{- fail (printf "signer.existingSecret is required for backend %s: every frontend must sign with the same key" .Values.backend) }}
{{- end }}
{{- end }}
{{- if eq .Values.backend "gcp" }}
{{- if not .Values.gcp.bucket }}{{ fail "gcp.bucket is required for backend gcp" }}{{ end }}
{{- if not (regexMatch "^projects/[^/]+/instances/[^/]+/databases/[^/]+$" .Values.gcp.spanner) }}
{{- fail "gcp.spanner must be projects/P/instances/I/databases/D" }}
{{- end }}
{{- end }}
{{- if eq .Values.backend "aws" }}
{{- if not .Values.aws.bucket }}{{ fail "aws.bucket is required for backend aws" }}{{ end }}
{{- if not .Values.aws.mysqlDsnSecret.name }}{{ fail "aws.mysqlDsnSecret.name is required for backend aws" }}{{ end }}
{{- end }}
{{- end }}

{{/*
--checkpoint-interval: the value if set; 1s for gcp (GCS allows about one write a second to the
checkpoint object, and the binary refuses less); otherwise the binary's default.
*/}}
{{- define "rekor-rs.checkpointInterval" -}}
{{- if .Values.server.checkpointInterval }}
{{- .Values.server.checkpointInterval }}
{{- else if eq .Values.backend "gcp" }}
{{- "1s" }}
{{- end }}
{{- end }}

{{/*
The container arguments (after the image's entrypoint, the server binary).
*/}}
{{- define "rekor-rs.args" -}}
{{- $s := .Values.server -}}
- serve
- --hostname={{ $s.hostname }}
- --http-address=0.0.0.0
- --http-port={{ $s.httpPort }}
- --grpc-address=0.0.0.0
- --grpc-port={{ $s.grpcPort }}
- --http-metrics-port={{ $s.metricsPort }}
{{- with $s.serverTimeout }}
- --server-timeout={{ . }}
{{- end }}
{{- with $s.maxRequestBodySize }}
- --max-request-body-size={{ int64 . }}
{{- end }}
{{- with $s.logLevel }}
- --log-level={{ . }}
{{- end }}
{{- if $s.logJson }}
- --log-json
{{- end }}
{{- if $s.readOnly }}
- --read-only
{{- end }}
{{- with $s.batchMaxSize }}
- --batch-max-size={{ int64 . }}
{{- end }}
{{- with $s.batchMaxAge }}
- --batch-max-age={{ . }}
{{- end }}
{{- with (include "rekor-rs.checkpointInterval" .) }}
- --checkpoint-interval={{ . }}
{{- end }}
{{- with $s.pushbackMaxOutstanding }}
- --pushback-max-outstanding={{ int64 . }}
{{- end }}
{{- with $s.tlogTimeout }}
- --tlog-timeout={{ . }}
{{- end }}
{{- if not (kindIs "invalid" $s.persistentAntispam) }}
- --persistent-antispam={{ $s.persistentAntispam }}
{{- end }}
{{- with $s.clientSigningAlgorithms }}
- --client-signing-algorithms={{ join "," . }}
{{- end }}
{{- if $s.tls.http.secretName }}
- --http-tls-cert-file=/etc/rekor/tls/http/tls.crt
- --http-tls-key-file=/etc/rekor/tls/http/tls.key
{{- end }}
{{- if $s.tls.grpc.secretName }}
- --grpc-tls-cert-file=/etc/rekor/tls/grpc/tls.crt
- --grpc-tls-key-file=/etc/rekor/tls/grpc/tls.key
{{- end }}
{{- if .Values.signer.existingSecret }}
- --signer-filepath=/etc/rekor/signer/signer.pem
{{- end }}
{{- if eq .Values.backend "posix" }}
- --storage-dir={{ .Values.posix.storageDir }}
{{- else if eq .Values.backend "gcp" }}
- --gcp-bucket={{ .Values.gcp.bucket }}
- --gcp-spanner={{ .Values.gcp.spanner }}
{{- else if eq .Values.backend "aws" }}
- --aws-bucket={{ .Values.aws.bucket }}
{{- /* --aws-mysql-dsn is read from REKOR_AWS_MYSQL_DSN (see rekor-rs.env): as an argument the
     password would show in the process list. */}}
{{- end }}
{{- range $s.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Environment: secrets that become flags (REKOR_SIGNER_PASSWORD is --signer-password and
REKOR_AWS_MYSQL_DSN is --aws-mysql-dsn: the binaries read these variables themselves), cloud SDK
settings, extra variables.
*/}}
{{- define "rekor-rs.env" -}}
{{- if .Values.signer.password.secretName }}
- name: REKOR_SIGNER_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.signer.password.secretName }}
      key: {{ .Values.signer.password.key }}
{{- end }}
{{- if eq .Values.backend "gcp" }}
{{- if .Values.gcp.credentialsSecret.name }}
- name: GOOGLE_APPLICATION_CREDENTIALS
  value: /etc/rekor/gcp/{{ .Values.gcp.credentialsSecret.key }}
{{- end }}
{{- end }}
{{- if eq .Values.backend "aws" }}
- name: REKOR_AWS_MYSQL_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.aws.mysqlDsnSecret.name }}
      key: {{ .Values.aws.mysqlDsnSecret.key }}
{{- with .Values.aws.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.aws.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.aws.credentialsSecret.name }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.aws.credentialsSecret.name }}
      key: {{ .Values.aws.credentialsSecret.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.aws.credentialsSecret.name }}
      key: {{ .Values.aws.credentialsSecret.secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod template shared by the StatefulSet (posix) and the Deployment (gcp, aws).
*/}}
{{- define "rekor-rs.podTemplate" -}}
{{- $s := .Values.server -}}
{{- $probeScheme := ternary "HTTPS" "HTTP" (not (empty $s.tls.http.secretName)) -}}
metadata:
  labels:
    {{- include "rekor-rs.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: {{ printf "server-%s" .Values.backend }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if .Values.metrics.podAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $s.metricsPort | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "rekor-rs.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: rekor-server
      image: {{ include "rekor-rs.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "rekor-rs.args" . | nindent 8 }}
      {{- with (include "rekor-rs.env" .) }}
      env:
        {{- . | trim | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ $s.httpPort }}
          protocol: TCP
        - name: grpc
          containerPort: {{ $s.grpcPort }}
          protocol: TCP
        - name: metrics
          containerPort: {{ $s.metricsPort }}
          protocol: TCP
      startupProbe:
        httpGet:
          path: /api/v2/checkpoint
          port: http
          scheme: {{ $probeScheme }}
        periodSeconds: {{ .Values.probes.startup.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.startup.failureThreshold }}
      readinessProbe:
        httpGet:
          path: /api/v2/checkpoint
          port: http
          scheme: {{ $probeScheme }}
        periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
      livenessProbe:
        {{- if and (eq .Values.probes.liveness.type "grpc") (not $s.tls.grpc.secretName) }}
        grpc:
          port: {{ $s.grpcPort }}
        {{- else }}
        tcpSocket:
          port: http
        {{- end }}
        periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if eq .Values.backend "posix" }}
        - name: data
          mountPath: /var/lib/rekor
        {{- end }}
        {{- if .Values.signer.existingSecret }}
        - name: signer
          mountPath: /etc/rekor/signer
          readOnly: true
        {{- end }}
        {{- if $s.tls.http.secretName }}
        - name: tls-http
          mountPath: /etc/rekor/tls/http
          readOnly: true
        {{- end }}
        {{- if $s.tls.grpc.secretName }}
        - name: tls-grpc
          mountPath: /etc/rekor/tls/grpc
          readOnly: true
        {{- end }}
        {{- if and (eq .Values.backend "gcp") .Values.gcp.credentialsSecret.name }}
        - name: gcp-credentials
          mountPath: /etc/rekor/gcp
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if .Values.signer.existingSecret }}
    - name: signer
      secret:
        secretName: {{ .Values.signer.existingSecret }}
        defaultMode: 288
        items:
          - key: {{ .Values.signer.key }}
            path: signer.pem
    {{- end }}
    {{- if $s.tls.http.secretName }}
    - name: tls-http
      secret:
        secretName: {{ $s.tls.http.secretName }}
        defaultMode: 288
    {{- end }}
    {{- if $s.tls.grpc.secretName }}
    - name: tls-grpc
      secret:
        secretName: {{ $s.tls.grpc.secretName }}
        defaultMode: 288
    {{- end }}
    {{- if and (eq .Values.backend "gcp") .Values.gcp.credentialsSecret.name }}
    - name: gcp-credentials
      secret:
        secretName: {{ .Values.gcp.credentialsSecret.name }}
        defaultMode: 288
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
