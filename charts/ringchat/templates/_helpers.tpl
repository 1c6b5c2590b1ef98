{{/* Chart name, overridable. */}}
{{- define "ringchat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name when it contains the chart name, else "<release>-<chart>". */}}
{{- define "ringchat.fullname" -}}
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

{{/* Name of the operator's objects (Deployment, Services, RBAC). */}}
{{- define "ringchat.operatorName" -}}
{{- printf "%s-operator" (include "ringchat.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ringchat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels common to every object. */}}
{{- define "ringchat.labels" -}}
helm.sh/chart: {{ include "ringchat.chart" . }}
app.kubernetes.io/part-of: ringchat
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Selector labels of the operator pods. */}}
{{- define "ringchat.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ringchat.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "ringchat.operatorLabels" -}}
{{ include "ringchat.labels" . }}
app.kubernetes.io/name: {{ include "ringchat.name" . }}-operator
app.kubernetes.io/component: operator
{{- end -}}

{{- define "ringchat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ringchat.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ringchat.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The ChatCluster's name, which is also its client Service's name. */}}
{{- define "ringchat.clusterName" -}}
{{- default .Release.Name .Values.cluster.name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "ringchat.clusterImage" -}}
{{- default (printf "ringchat/chatd:%s" .Chart.AppVersion) .Values.cluster.image -}}
{{- end -}}

{{- define "ringchat.testImage" -}}
{{- printf "%s:%s" .Values.tests.image.repository (default .Chart.AppVersion .Values.tests.image.tag) -}}
{{- end -}}

{{/* A resources value ({requests: {cpu, memory}, limits: {cpu, memory}})
without its empty entries, as YAML; empty when nothing is left. Missing maps
are fine (a release upgraded with --reuse-values from a chart without them). */}}
{{- define "ringchat.resources" -}}
{{- $out := dict -}}
{{- range $kind := list "requests" "limits" -}}
{{- $m := dict -}}
{{- range $k, $v := (get ($ | default dict) $kind | default dict) -}}
{{- if $v }}{{ $_ := set $m $k $v }}{{ end -}}
{{- end -}}
{{- if $m }}{{ $_ := set $out $kind $m }}{{ end -}}
{{- end -}}
{{- if $out }}{{ toYaml $out }}{{ end -}}
{{- end -}}

{{/* Whether a value is set: not null and not "" (0 is set). */}}
{{- define "ringchat.isSet" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") }}true{{ end -}}
{{- end -}}

{{/* The ConfigMap that carries the optional ChatCluster's manifest. */}}
{{- define "ringchat.clusterConfigMap" -}}
{{ include "ringchat.fullname" . }}-chatcluster
{{- end }}
