{{- define "raftelect.fullname" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "raftelect.labels" -}}
app.kubernetes.io/name: raftelect
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "raftelect.selector" -}}
app.kubernetes.io/name: raftelect
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "raftelect.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The raftelect container's probes, ports and mounts, shared by both layouts. */}}
{{- define "raftelect.node" -}}
ports:
  - name: peer
    containerPort: 7000
    protocol: TCP
  # Datagram heartbeats and their acknowledgements: UDP on the peer port's
  # number (docs/transport.md, "Datagram heartbeats").
  - name: peer-udp
    containerPort: 7000
    protocol: UDP
  - name: http
    containerPort: 9090
    protocol: TCP
# Alive while the process serves; ready while it knows a leader.
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
volumeMounts:
  - name: config
    mountPath: /etc/raftelect/config
    readOnly: true
  - name: tls
    mountPath: /etc/raftelect/tls
    readOnly: true
  - name: data
    mountPath: /var/lib/raftelect
{{- end -}}
